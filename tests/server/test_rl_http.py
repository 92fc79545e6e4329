"""Digital twins over HTTP: fit, list, show, baselines and results; bad input is a 4xx naming the field,
and nothing is stored then; readers cannot write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel.entities import Role

JSON = {"content-type": "application/json"}


@pytest.fixture
def rl_ws(ws: keel.Workspace) -> keel.Workspace:
    units = np.random.default_rng(3).poisson(10, size=150)
    ws.datasets.add("sales", pd.DataFrame({"week": np.arange(150), "units": units}))
    return ws


@pytest.fixture
def client(rl_ws: keel.Workspace) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(rl_ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def test_fit_list_show_baselines_and_results(client: Any) -> None:
    body = {
        "name": "shop",
        "dataset": "sales@1",
        "demand_column": "units",
        "time_column": "week",
        "costs": {"penalty": 4},
    }
    made = client.post("/api/v1/rl/twins", json=body, headers=JSON)
    assert made.status_code == 201, made.text
    twin = made.json()
    assert twin["ref"] == "shop@1" and twin["dataset"] == "sales@1" and twin["spec"]["system"]["costs"]["penalty"] == 4
    assert twin["spec"]["fit"]["family"] in ("poisson", "negbin", "empirical")
    assert [t["ref"] for t in client.get("/api/v1/rl/twins").json()] == ["shop@1"]
    shown = client.get("/api/v1/rl/twins/shop?version=1").json()
    assert shown["twin"]["ref"] == "shop@1" and shown["baselines"] is None and len(shown["versions"]) == 1

    solved = client.post("/api/v1/rl/twins/shop/baselines", json={"periods": 200, "copies": 32}, headers=JSON)
    assert solved.status_code == 201, solved.text
    result = solved.json()
    assert result["baselines"]["payload"]["best"] in result["baselines"]["payload"]["classic"]
    assert result["optimum"]["payload"]["cost"] > 0
    kinds = [r["kind"] for r in client.get("/api/v1/rl/twins/shop/results").json()]
    assert kinds == ["baselines", "optimum"]
    assert [r["kind"] for r in client.get("/api/v1/rl/twins/shop/results?kind=optimum").json()] == ["optimum"]
    assert client.get("/api/v1/rl/twins/shop").json()["baselines"]["kind"] == "baselines"


def test_bad_input_is_a_4xx_naming_the_field_and_stores_nothing(client: Any) -> None:
    base = {"name": "shop", "dataset": "sales@1", "demand_column": "units"}
    negative = client.post("/api/v1/rl/twins", json={**base, "costs": {"holding": -1}}, headers=JSON)
    assert negative.status_code == 422 and "holding" in negative.text
    long = client.post("/api/v1/rl/twins", json={**base, "lead_time": 200}, headers=JSON)
    assert long.status_code == 400 and "not shorter than the demand history" in long.text
    missing = client.post("/api/v1/rl/twins", json={**base, "demand_column": "sold"}, headers=JSON)
    assert missing.status_code == 400 and "no column 'sold'" in missing.text
    assert client.post("/api/v1/rl/twins", json={**base, "dataset": "nothing@1"}, headers=JSON).status_code == 404
    assert client.get("/api/v1/rl/twins/shop").status_code == 404
    assert client.get("/api/v1/rl/twins").json() == []


def test_writing_needs_a_writer(client: Any, rl_ws: keel.Workspace) -> None:
    reader = {"Authorization": f"Bearer {rl_ws.tokens.create('r', Role.READER)[0]}", **JSON}
    body = {"name": "shop", "dataset": "sales@1", "demand_column": "units"}
    assert client.post("/api/v1/rl/twins", json=body, headers=reader).status_code == 403
    assert client.get("/api/v1/rl/twins", headers=reader).status_code == 200


def test_a_trained_policy_is_served_and_logged_and_training_can_queue(client: Any, rl_ws: keel.Workspace) -> None:
    body = {"name": "shop", "dataset": "sales@1", "demand_column": "units"}
    assert client.post("/api/v1/rl/twins", json=body, headers=JSON).status_code == 201
    train = {"register_as": "shop-policy", "steps": 1024, "n_envs": 2}
    trained = client.post("/api/v1/rl/twins/shop/train", json=train, headers=JSON)
    assert trained.status_code == 201, trained.text
    assert trained.json()["payload"]["model"] == "shop-policy@1"
    rl_ws.models.set_alias("shop-policy", "champion", version=1)  # served by alias, as any model
    rows = [
        {"position": 20.0, "net_inventory": 10.0, "pipeline_1": 5.0},
        {"pipeline_1": 10.0, "position": 60.0, "net_inventory": 40.0},  # any column order: the twin's layout wins
    ]
    answer = client.post("/api/v1/models/shop-policy/predict?explain=true", json={"records": rows})
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["predictions"]
    assert first["prediction"] > 0 and second["prediction"] == 0
    assert first["explanation"]["rule"].startswith("order up to ") and "order_up_to" in first
    refused = client.post("/api/v1/models/shop-policy/predict", json={"records": [{"position": 1.0}]})
    assert refused.status_code == 422 and "net_inventory" in refused.text

    queued = client.post("/api/v1/rl/twins/shop/train?queue=true", json={"steps": 512, "n_envs": 1}, headers=JSON)
    assert queued.status_code == 202 and queued.json()["kind"] == "rl_train"
    assert queued.json()["payload"]["twin"] == "shop@1"
    assert client.post("/api/v1/rl/twins/none/train?queue=true", json={}, headers=JSON).status_code == 404


def test_each_answered_observation_is_in_the_prediction_log(rl_ws: keel.Workspace) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    twin = rl_ws.rl.twin("shop", "sales@1", demand_column="units")
    rl_ws.rl.train(twin, register_as="shop-policy", steps=512, n_envs=1, eval_copies=32)
    rl_ws.models.set_alias("shop-policy", "champion", version=1)
    rows = [{"position": p, "net_inventory": p, "pipeline_1": 0.0} for p in (10.0, 25.0, 80.0)]
    with TestClient(create_app(rl_ws, token_cache_s=0.0), base_url="http://127.0.0.1") as client:
        answer = client.post("/api/v1/models/shop-policy/predict", json={"records": rows})
        assert answer.status_code == 200, answer.text
        orders = [p["prediction"] for p in answer.json()["predictions"]]
    log = rl_ws.predictions.window("shop-policy")  # written when the server stopped
    assert sorted(log["__prediction"].tolist()) == sorted(orders) and len(log) == 3
    assert sorted(log["position"].tolist()) == [10.0, 25.0, 80.0]
