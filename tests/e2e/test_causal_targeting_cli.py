"""`keel causal policy` and `keel causal cate` end to end: rules, value against treating everyone alike, uplift curves,
the registered policy model, and one-line errors; and POST /api/v1/causal/studies/{name}/policy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

import keel

EDGES = "x0->t,x1->t,x0->y,x1->y,t->y"


def offers(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Three actions; the best is 1 when x0 > 0, 2 when x0 <= 0 and x1 > 0.5, else 0; confounded by x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    tau1 = np.where(x[:, 0] > 0, 1.5, -1.0)
    tau2 = np.where(x[:, 0] > 0, 0.5, np.where(x[:, 1] > 0.5, 1.5, -0.5))
    logits = np.column_stack([np.zeros(n), 0.8 * x[:, 0], -0.6 * x[:, 0] + 0.5 * x[:, 1]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    mu = np.column_stack([x[:, 0], x[:, 0] + tau1, x[:, 0] + tau2])
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "t": t, "y": mu[np.arange(n), t] + rng.normal(size=n)})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policy")
    home, path = root / "ws", root / "offers.csv"
    offers().to_csv(path, index=False)
    assert keel_cli(home, "init")[0] == 0
    assert keel_json(home, "data", "add", "offers", str(path))["ref"] == "offers@1"
    keel_json(home, "causal", "study", "targeting", "offers@1", "--edges", EDGES, "-t", "t", "-y", "y")
    return home


def test_policy_prints_rules_values_and_registers_a_served_model(home: Path) -> None:
    code, out, err = keel_cli(home, "causal", "policy", "targeting", "--baseline", "0", "--register", "offer-policy")
    assert code == 0, err
    assert "policy value" in out and "everyone 0:" in out and "gain over 0:" in out
    assert "Qini coefficient" in out and "registered offer-policy@1" in out
    rules = [line[2:] for line in out.splitlines() if line.startswith("- ")]
    assert len(rules) >= 3 and {r.rsplit(" -> ", 1)[1] for r in rules} == {"0", "1", "2"}

    stored = keel_json(home, "causal", "results", "targeting", "--kind", "policy")
    payload = stored[-1]["payload"]
    assert payload["model"] == "offer-policy@1" and payload["baseline"] == 0
    assert set(payload["uplift"]) == {"1", "2"}
    assert all(curve["qini_coefficient"] > 0 for curve in payload["uplift"].values())  # better than random
    with keel.Workspace(keel.Settings(home=home)) as ws:
        model = ws.models.load("offer-policy@1")
        assert model.flavor == "policy"
        assert list(model.predict(pd.DataFrame({"x0": [1.5, -1.5, -1.5], "x1": [0.0, 2.0, -2.0]}))) == [1, 2, 0]


def test_policy_errors_are_one_line(home: Path) -> None:
    for args, code in ((("nothing",), 1), (("targeting", "--features", "x0,missing"), 1)):
        assert_one_line_error(keel_cli(home, "causal", "policy", *args), code=code, contains=args[-1].split(",")[-1])


@pytest.fixture
def client(home: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with keel.Workspace(keel.Settings(home=home)) as ws:
        with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
            yield c


def test_policy_over_http_stores_the_result_and_registers_on_request(client: Any) -> None:
    json = {"content-type": "application/json"}
    answer = client.post(
        "/api/v1/causal/studies/targeting/policy",
        json={"depth": 1, "baseline": 0, "register_as": "http-policy"},
        headers=json,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["kind"] == "policy" and body["model"]["name"] == "http-policy"
    assert len(body["payload"]["rules"]) == 2  # depth 1: two leaves
    served = client.post(
        "/api/v1/models/http-policy/predict?version=1&explain=true", json=[{"x0": 2.0, "x1": 0.0}], headers=json
    )
    assert served.status_code == 200, served.text
    prediction = served.json()["predictions"][0]
    assert "expected_gain" in prediction and " -> " in prediction["explanation"]["rule"]
    bad = client.post("/api/v1/causal/studies/targeting/policy", json={"depth": 9}, headers=json)
    assert bad.status_code == 422 and "depth" in bad.text
    assert client.post("/api/v1/causal/studies/nothing/policy", json={}, headers=json).status_code == 404


def heterogeneous(n: int = 1500, seed: int = 1) -> pd.DataFrame:
    """A binary treatment whose effect is 1 + 2 * x0 (ATE 1, positive for 69 % of units), confounded by x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-0.8 * x[:, 0]))).astype(int)
    return pd.DataFrame(
        {"x0": x[:, 0], "x1": x[:, 1], "t": t, "y": (1 + 2 * x[:, 0]) * t + x.sum(axis=1) + rng.normal(size=n)}
    )


def test_cate_chooses_a_learner_stores_it_and_targets_better_than_chance(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "het.csv"
    heterogeneous().to_csv(path, index=False)
    keel_json(home, "data", "add", "het", str(path))
    keel_json(home, "causal", "study", "uplift", "het@1", "--edges", EDGES, "-t", "t", "-y", "y")
    code, out, err = keel_cli(home, "causal", "cate", "uplift", "--learners", "T,X,DR")
    assert code == 0, err
    assert "chosen:" in out and "<- chosen" in out and "Qini coefficient" in out
    stored = keel_json(home, "causal", "results", "uplift", "--kind", "cate")[-1]["payload"]
    assert stored["learner"] in {"T", "X", "DR"} and set(stored["scores"]) >= {f"{stored['learner']}/{stored['model']}"}
    assert {key.split("/")[0] for key in stored["scores"]} == {"T", "X", "DR"}
    low, high = stored["ate_interval"]
    assert low <= 1.0 <= high  # the true ATE
    assert stored["share_positive"] == pytest.approx(0.69, abs=0.08)
    assert stored["uplift"]["1"]["qini_coefficient"] > 0
    assert sum(stored["histogram"]["counts"]) == 1500
    bad = keel_cli(home, "causal", "cate", "targeting")  # three actions: the meta-learners need two
    assert_one_line_error(bad, code=1, contains="is not binary (values [0, 1, 2])")


def test_cate_over_http_and_on_the_study_page(home: Path) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with keel.Workspace(keel.Settings(home=home)) as ws:
        ws.datasets.add("het-http", heterogeneous(n=800, seed=2))
        edges = [("x0", "t"), ("x1", "t"), ("x0", "y"), ("x1", "y"), ("t", "y")]
        ws.causal.study("who-gains", "het-http@1", graph=edges, treatment="t", outcome="y")
        with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as client:
            json = {"content-type": "application/json"}
            assert "No heterogeneous effects estimated" in client.get("/studies/who-gains").text
            made = client.post("/api/v1/causal/studies/who-gains/cate", json={"learners": ["T", "DR"]}, headers=json)
            assert made.status_code == 201, made.text
            payload = made.json()["payload"]
            assert made.json()["kind"] == "cate" and payload["learner"] in {"T", "DR"}
            page = client.get("/studies/who-gains").text
            assert f"{payload['learner']}-learner on {payload['model']}" in page and 'id="cate-scores"' in page
            assert "Qini curve" in page  # the uplift curves of targeting by the effects
            bad = client.post("/api/v1/causal/studies/who-gains/cate", json={"learners": ["Z"]}, headers=json)
            assert bad.status_code == 422 and "learners" in bad.text
