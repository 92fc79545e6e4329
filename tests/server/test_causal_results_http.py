"""Study results over HTTP: refute now or as a job (202, progress, the stored result), list the
results by kind, rerun a study on a new dataset version, and a study's model lineage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel.entities import Role

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EDGES = [["x0", "t"], ["x1", "t"], ["x0", "y"], ["x1", "y"], ["t", "y"]]
JSON = {"content-type": "application/json"}


def frame(seed: int = 0, effect: float = 1.0, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "t": t, "y": effect * t + x.sum(axis=1) + rng.normal(size=n)})


@pytest.fixture
def causal_ws(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("obs", frame())
    X = frame()[["x0", "x1", "t"]]
    ws.models.register("outcome", LinearRegression().fit(X, frame()["y"]), X=X)
    return ws


@pytest.fixture
def client(causal_ws: keel.Workspace) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(causal_ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def _create(client: Any, **extra: Any) -> Any:
    body = {"name": "effect", "dataset": "obs@1", "graph": EDGES, "treatment": "t", "outcome": "y", **extra}
    return client.post("/api/v1/causal/studies", json=body, headers=JSON)


def test_a_study_names_the_model_version_it_explains(client: Any) -> None:
    made = _create(client, model="outcome")
    assert made.status_code == 201, made.text
    assert made.json()["model"] == "outcome@1"
    assert client.get("/api/v1/causal/studies/effect").json()["study"]["model"] == "outcome@1"
    assert _create(client, model="nothing@1").status_code == 404


def test_refute_now_then_as_a_job_with_progress_and_list_the_results(client: Any, causal_ws: keel.Workspace) -> None:
    assert _create(client).status_code == 201
    assert client.get("/api/v1/causal/studies/effect").json()["refutation"] is None
    now = client.post("/api/v1/causal/studies/effect/refute", json={"estimator": "regression"}, headers=JSON)
    assert now.status_code == 200, now.text
    assert now.json()["kind"] == "refutation" and now.json()["payload"]["verdict"] in ("robust", "fragile", "failed")
    shown = client.get("/api/v1/causal/studies/effect").json()["refutation"]
    assert shown["id"] == now.json()["id"]

    queued = client.post(
        "/api/v1/causal/studies/effect/refute?queue=true", json={"estimator": "regression", "seed": 2}, headers=JSON
    )
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert job["kind"] == "causal_refute" and queued.headers["Location"] == job["url"]
    causal_ws.jobs.wait(timeout=300)
    done = client.get(job["url"]).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == {"done": 4, "total": 4, "stage": "refutation checks"}
    results = client.get("/api/v1/causal/studies/effect/results?kind=refutation").json()
    assert results["study"] == "effect@1"
    assert [r["payload"]["seed"] for r in results["results"]] == [0, 2]
    assert done["result"]["result"] == results["results"][-1]["id"]
    assert client.get("/api/v1/causal/studies/effect/results?kind=sensitivity").json()["results"] == []
    assert client.get("/api/v1/causal/studies/effect/results?kind=bogus").status_code == 422
    assert client.post("/api/v1/causal/studies/nothing/refute?queue=true", json={}, headers=JSON).status_code == 404


def test_rerun_records_the_effect_change(client: Any, causal_ws: keel.Workspace) -> None:
    assert _create(client).status_code == 201
    r = client.post("/api/v1/causal/studies/effect/estimate", json={"estimators": ["regression", "aipw"]}, headers=JSON)
    assert r.status_code == 200, r.text
    causal_ws.datasets.add("obs", frame(seed=1, effect=4.0))
    rerun = client.post("/api/v1/causal/studies/effect/rerun", json={}, headers=JSON)
    assert rerun.status_code == 201, rerun.text
    body = rerun.json()
    assert body["study"]["version"] == 2
    assert body["study"]["dataset"] == "obs@2"
    change = body["effect_change"]["payload"]
    assert change["drifted"] and {r["estimator"] for r in change["estimators"]} == {"regression", "aipw"}
    compared = client.get("/api/v1/causal/studies/effect/compare?a=1&b=2")
    assert compared.status_code == 200, compared.text
    assert compared.json()["drifted"] and compared.json()["study"] == "effect@2"
    assert client.get("/api/v1/causal/studies/effect/compare?a=1").status_code == 422  # b is required
    kinds = client.get("/api/v1/causal/studies/effect/results?version=2").json()["results"]
    assert [k["kind"] for k in kinds] == ["effect_change"]
    alerts = client.get("/api/v1/alerts?model=effect").json()
    assert {a["rule"] for a in alerts} == {"causal-effect-drift"}
    assert all("effect@2: causal effect" in a["title"] for a in alerts)


def test_refute_and_rerun_need_a_writer(client: Any, causal_ws: keel.Workspace) -> None:
    assert _create(client).status_code == 201
    reader = {"Authorization": f"Bearer {causal_ws.tokens.create('r', Role.READER)[0]}", **JSON}
    assert client.post("/api/v1/causal/studies/effect/refute", json={}, headers=reader).status_code == 403
    assert client.post("/api/v1/causal/studies/effect/rerun", json={}, headers=reader).status_code == 403
    assert client.get("/api/v1/causal/studies/effect/results", headers=reader).status_code == 200
