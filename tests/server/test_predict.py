from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_predict_answers_with_champion_and_matches_local_model(
    records: Any, client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    r = client.post("/api/v1/models/tumor/predict", json={"records": records(cancer, 5)})
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == 1
    local = served_ws.models.load("tumor@1").predict_proba(cancer.drop(columns="target").head(5))
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in body["predictions"]])
    np.testing.assert_allclose(got, local, rtol=1e-12)
    ids = {p["id"] for p in body["predictions"]}
    assert len(ids) == 5


def test_predict_version_and_alias_parameters_choose_the_model(
    records: Any, client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    served_ws.models.set_alias("tumor", "challenger", version=2)
    assert client.post("/api/v1/models/tumor/predict?version=2", json=records(cancer, 1)).json()["version"] == 2
    assert client.post("/api/v1/models/tumor/predict?alias=challenger", json=records(cancer, 1)).json()["version"] == 2
    r = client.post("/api/v1/models/tumor/predict?alias=nope", json=records(cancer, 1))
    assert r.status_code == 404 and "nope" in r.json()["error"]["detail"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("mean_radius"), "missing"),
        (lambda r: r.update(bogus=1.0), "extra"),
        (lambda r: r.update(mean_texture="high"), "mistyped"),
    ],
)
def test_predict_rejects_bad_columns_with_422_naming_the_column(
    records: Any, client: Any, cancer: pd.DataFrame, mutate: Any, field: str
) -> None:
    rows = records(cancer, 2)
    for row in rows:
        mutate(row)
    r = client.post("/api/v1/models/tumor/predict", json=rows)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err[field], err
    named = {"missing": "mean_radius", "extra": "bogus", "mistyped": "mean_texture"}[field]
    assert named in err["detail"]


def test_predict_rejects_malformed_bodies(client: Any) -> None:
    assert (
        client.post(
            "/api/v1/models/tumor/predict", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert client.post("/api/v1/models/tumor/predict", json=[]).status_code == 422
    assert client.post("/api/v1/models/tumor/predict", json=[1, 2]).status_code == 422


def test_alias_move_is_served_by_the_next_request_without_restart(
    records: Any, client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    rows = records(cancer, 1)
    assert client.post("/api/v1/models/tumor/predict", json=rows).json()["version"] == 1
    served_ws.models.set_alias("tumor", "champion", version=2)
    assert client.post("/api/v1/models/tumor/predict", json=rows).json()["version"] == 2


def test_requests_in_flight_during_alias_moves_all_succeed(
    records: Any, client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    rows = records(cancer, 1)
    failures: list[int] = []
    versions: set[int] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.post("/api/v1/models/tumor/predict", json=rows)
            if r.status_code != 200:
                failures.append(r.status_code)
            else:
                versions.add(r.json()["version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for v in (2, 1, 2, 1, 2):
        served_ws.models.set_alias("tumor", "champion", version=v)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert versions == {1, 2}


def test_model_cache_is_bounded(records: Any, served_ws: keel.Workspace, cancer: pd.DataFrame) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    app = create_app(served_ws, max_models=1)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for v in (1, 2, 1):
            assert c.post(f"/api/v1/models/tumor/predict?version={v}", json=records(cancer, 1)).status_code == 200
        assert len(state_of(app).cache) == 1
        assert state_of(app).cache.keys() == [("tumor", 1)]
        metrics = c.get("/metrics").text
    assert 'keel_model_loads_total{model="tumor",version="1"} 2.0' in metrics
    assert "keel_model_cache_size 1.0" in metrics


def test_batch_scoring_streams_a_csv_and_a_parquet_file(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    X = cancer.drop(columns="target")
    r = client.post(
        "/api/v1/models/tumor/predict/batch", content=X.to_csv(index=False), headers={"content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    scored = pd.read_csv(io.StringIO(r.text))
    assert len(scored) == len(X)
    np.testing.assert_allclose(scored["proba_1"], served_ws.models.load("tumor@1").predict_proba(X)[:, 1], rtol=1e-9)
    buf = io.BytesIO()
    X.to_parquet(buf)
    r2 = client.post("/api/v1/models/tumor/predict/batch?format=parquet&version=2", content=buf.getvalue())
    assert r2.status_code == 200 and r2.headers["x-keel-model"] == "tumor@2"
    assert len(pd.read_csv(io.StringIO(r2.text))) == len(X)


def test_batch_scoring_rejects_wrong_columns_and_unknown_format(client: Any, cancer: pd.DataFrame) -> None:
    bad = cancer.drop(columns=["target", "worst_area"]).to_csv(index=False)
    r = client.post("/api/v1/models/tumor/predict/batch", content=bad, headers={"content-type": "text/csv"})
    assert r.status_code == 422 and "worst_area" in r.json()["error"]["detail"]
    r = client.post("/api/v1/models/tumor/predict/batch", content=b"x", headers={"content-type": "image/png"})
    assert r.status_code == 415


def test_upload_limit_gives_413_and_stores_nothing(served_ws: keel.Workspace, cancer: pd.DataFrame) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(served_ws, max_upload_bytes=1000), base_url="http://127.0.0.1") as c:
        r = c.post("/api/v1/datasets/big", content=cancer.to_csv(index=False), headers={"content-type": "text/csv"})
        assert r.status_code == 413
    assert [d.name for d in served_ws.datasets.list()] == ["cancer"]
