"""The prediction log behind the server: every request logged, feedback over HTTP, recent rows."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from liveserver import live_server  # tests/ is on sys.path (pyproject: pythonpath)

import keel
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _serve(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1")


def test_every_prediction_served_is_in_the_log_after_shutdown(
    app: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    X = cancer.drop(columns="target")
    answers = []
    with _serve(app) as c:
        for n, version in ((1, None), (5, None), (3, 2), (1, 2)):
            url = "/api/v1/models/tumor/predict" + (f"?version={version}" if version else "")
            r = c.post(url, json={"records": records(cancer, n)})
            assert r.status_code == 200
            answers.append(r.json())
    # the TestClient's exit is the server's shutdown: the buffer is written then
    assert state_of(app).predlog.pending == 0 and state_of(app).predlog.logged == 10
    log = served_ws.predictions.window("tumor")
    assert len(log) == 10 and served_ws.predictions.count("tumor") == 10
    served_ids = [p["id"] for a in answers for p in a["predictions"]]
    assert sorted(log["__id"]) == sorted(served_ids)
    rows = log.set_index("__id")
    for a, n in zip(answers, (1, 5, 3, 1), strict=True):
        ids = [p["id"] for p in a["predictions"]]
        got = rows.loc[ids]
        assert (got["__version"] == a["version"]).all()
        pd.testing.assert_frame_equal(got[X.columns.tolist()].reset_index(drop=True), X.head(n).reset_index(drop=True))
        assert got["__prediction"].tolist() == [p["prediction"] for p in a["predictions"]]
        np.testing.assert_allclose(got["__proba_1"], [p["probabilities"]["1"] for p in a["predictions"]])
        assert (got["__latency_ms"] > 0).all() and got["__error"].isna().all()
        assert got["__label"].isna().all()


def test_refused_requests_are_logged_with_their_error_and_inputs_as_sent(
    client: Any, app: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    rows = records(cancer, 2)
    rows[1]["mean_texture"] = "high"
    assert client.post("/api/v1/models/tumor/predict", json=rows).status_code == 422
    assert client.post("/api/v1/models/tumor/predict", json=records(cancer, 1)).status_code == 200
    state_of(app).predlog.flush()
    log = served_ws.predictions.window("tumor")
    refused = log[log["__error"].notna()]
    assert len(refused) == 2 and "mean_texture" in refused["__error"].iloc[0]
    assert refused["mean_texture"].tolist() == [rows[0]["mean_texture"], "high"]
    assert refused["__prediction"].isna().all()
    assert log["__error"].isna().sum() == 1


def test_feedback_over_http_labels_served_predictions(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    answer = client.post("/api/v1/models/tumor/predict", json=records(cancer, 3)).json()
    ids = [p["id"] for p in answer["predictions"]]
    # sent before the server has written the predictions: it writes its buffer and finds them
    r = client.post(
        "/api/v1/models/tumor/feedback", json={"feedback": [{"id": ids[0], "label": 1}, {"id": ids[2], "label": 0}]}
    )
    assert r.status_code == 200 and r.json() == {"model": "tumor", "stored": 2}
    labelled = served_ws.predictions.window("tumor", labelled_only=True)
    assert dict(zip(labelled["__id"], labelled["__label"], strict=True)) == {ids[0]: 1, ids[2]: 0}
    # and from Python, into the same log
    assert served_ws.predictions.feedback("tumor", {ids[1]: 1}) == 1
    assert served_ws.predictions.window("tumor")["__label"].notna().sum() == 3


def test_feedback_with_unknown_ids_is_refused_with_404_naming_them_and_stores_nothing(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    ids = [p["id"] for p in client.post("/api/v1/models/tumor/predict", json=records(cancer, 1)).json()["predictions"]]
    bogus = "0" * 32
    r = client.post(
        "/api/v1/models/tumor/feedback", json={"feedback": [{"id": ids[0], "label": 1}, {"id": bogus, "label": 0}]}
    )
    assert r.status_code == 404 and bogus in r.json()["error"]["detail"]
    assert served_ws.predictions.window("tumor", labelled_only=True).empty
    other = client.post("/api/v1/models/nope/feedback", json={"feedback": [{"id": ids[0], "label": 1}]})
    assert other.status_code == 404  # the id belongs to another model
    assert client.post("/api/v1/models/tumor/feedback", json={"feedback": []}).status_code == 422
    assert (
        client.post("/api/v1/models/tumor/feedback", json={"feedback": [{"id": ids[0], "label": None}]}).status_code
        == 400
    )


def test_feedback_needs_the_predictor_role_and_recent_rows_the_reader_role(
    client: Any, tokens: dict[str, str], cancer: pd.DataFrame, records: Any
) -> None:
    def auth(role: str) -> dict[str, str]:
        return {"authorization": f"Bearer {tokens[role]}"}

    answer = client.post("/api/v1/models/tumor/predict", json=records(cancer, 1), headers=auth("predictor")).json()
    body = {"feedback": [{"id": answer["predictions"][0]["id"], "label": 1}]}
    assert client.post("/api/v1/models/tumor/feedback", json=body, headers=auth("reader")).status_code == 403
    assert client.post("/api/v1/models/tumor/feedback", json=body, headers=auth("predictor")).status_code == 200
    assert client.get("/api/v1/models/tumor/predictions", headers=auth("reader")).status_code == 200
    assert client.get("/api/v1/models/tumor/predictions").status_code == 401


def test_recent_predictions_are_newest_first_with_labels(
    client: Any, app: Any, cancer: pd.DataFrame, records: Any
) -> None:
    ids = []
    for i in range(4):
        ids += [
            p["id"]
            for p in client.post("/api/v1/models/tumor/predict", json=records(cancer.iloc[i:], 1)).json()["predictions"]
        ]
    client.post("/api/v1/models/tumor/feedback", json={"feedback": [{"id": ids[3], "label": 1}]})
    state_of(app).predlog.flush()
    body = client.get("/api/v1/models/tumor/predictions?limit=2").json()
    assert body["rows"] == 2 and [p["__id"] for p in body["predictions"]] == [ids[3], ids[2]]
    assert body["predictions"][0]["__label"] == 1 and body["predictions"][1]["__label"] is None
    assert body["predictions"][0]["__at"].endswith("+00:00")


def test_batch_scoring_is_logged_under_the_ids_of_the_scored_file(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    X = cancer.drop(columns="target").head(50)
    r = client.post(
        "/api/v1/models/tumor/predict/batch", content=X.to_csv(index=False), headers={"content-type": "text/csv"}
    )
    assert r.status_code == 200
    scored = pd.read_csv(io.StringIO(r.text))
    log = served_ws.predictions.window("tumor")
    assert log["__id"].tolist() == scored["id"].tolist()
    np.testing.assert_allclose(log["__proba_1"], scored["proba_1"])
    np.testing.assert_allclose(log["mean_radius"], X["mean_radius"])


def test_metrics_count_logged_and_dropped_predictions(
    client: Any, app: Any, cancer: pd.DataFrame, records: Any
) -> None:
    client.post("/api/v1/models/tumor/predict", json=records(cancer, 3))
    state_of(app).predlog.flush()
    text = client.get("/metrics").text
    assert "keel_predictions_logged_total 3.0" in text
    assert "keel_predictions_dropped_total 0.0" in text


def test_rows_the_store_refuses_are_counted_as_dropped_in_metrics_and_warned_about(
    client: Any, app: Any, cancer: pd.DataFrame, records: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    state_of(app).predlog.sink = type("Broken", (), {"write": staticmethod(broken)})()
    assert client.post("/api/v1/models/tumor/predict", json=records(cancer, 2)).status_code == 200
    X = cancer.drop(columns="target").head(3)  # batch scoring writes in the request's thread
    assert (
        client.post(
            "/api/v1/models/tumor/predict/batch", content=X.to_csv(index=False), headers={"content-type": "text/csv"}
        ).status_code
        == 200
    )
    with caplog.at_level(logging.WARNING, logger="keel.monitoring.predlog"):
        state_of(app).predlog.flush()
        state_of(app).predlog._warn_dropped(force=True)
    text = client.get("/metrics").text
    assert "keel_predictions_dropped_total 5.0" in text and "keel_predictions_logged_total 0.0" in text
    assert any("5 rows dropped" in r.getMessage() for r in caplog.records)


def test_a_real_server_stopped_cleanly_loses_no_prediction(
    served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    import httpx

    from keel.server import create_app

    app = create_app(served_ws)
    state_of(app).predlog.flush_interval_s = 3600  # nothing is written before the stop
    ids = []
    with live_server(app, lifespan="on", log_level="error") as live:
        with httpx.Client(base_url=live.url) as http:
            for i in range(20):
                body = http.post("/api/v1/models/tumor/predict", json=records(cancer.iloc[i:], 1)).json()
                ids += [p["id"] for p in body["predictions"]]
        assert served_ws.predictions.count("tumor") == 0
        assert live.stop(timeout=30)  # uvicorn's shutdown closes the log writer, which writes its buffer
    assert sorted(served_ws.predictions.window("tumor")["__id"]) == sorted(ids)


@pytest.mark.parametrize("wal", ["on", "off"])
def test_every_answered_prediction_survives_kill_9_of_the_server(
    served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any, wal: str
) -> None:
    """`keel serve` answers predictions, then dies with SIGKILL before writing its buffer (flushes
    every hour): with the write-ahead file every returned id is in the log once the workspace's
    next logger starts, and takes feedback; without it (KEEL_PREDLOG_WAL=off) they are lost."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(PYTHONUNBUFFERED="1", KEEL_PREDLOG_FLUSH_S="3600", KEEL_PREDLOG_WAL=wal)
    keel_bin = str(Path(sys.executable).parent / "keel")
    proc = subprocess.Popen(
        [keel_bin, "--workspace", str(served_ws.settings.home), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        deadline, url = time.monotonic() + 90, None
        while url is None and time.monotonic() < deadline and (line := proc.stdout.readline()):
            if "Dashboard: http://" in line:
                url = line.split("Dashboard: ")[1].split()[0].rstrip("/")
        assert url is not None, "keel serve did not start"
        ids: list[str] = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(40):
                r = http.post("/api/v1/models/tumor/predict", json=records(cancer.iloc[i:], 1 + i % 3))
                assert r.status_code == 200, r.text
                ids += [p["id"] for p in r.json()["predictions"]]
    finally:
        proc.kill()  # SIGKILL: no shutdown, no flush
        proc.wait(30)
    assert served_ws.predictions.count("tumor") == 0  # nothing was written before the kill
    served_ws.predictions.logger().close()  # what the next `keel serve` does first: replay the dead server's file
    logged = set(served_ws.predictions.window("tumor")["__id"])
    if wal == "off":
        assert not logged & set(ids)  # the guarantee KEEL_PREDLOG_WAL=off gives up
        return
    assert logged == set(ids) and len(ids) == 79
    assert served_ws.predictions.feedback("tumor", {i: n % 2 for n, i in enumerate(ids)}) == 79
