"""A registered policy tree served at /predict: the recommended action, its expected gain, the rule
with ?explain=true, and the prediction log."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import keel
from keel.causal import PolicyTree
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TREE = {
    "format": "keel.policy_tree/1",
    "features": ["age", "income"],
    "actions": ["call", "discount", "none"],
    "baseline": "none",
    "nodes": [
        {"feature": "age", "threshold": 34.5, "left": 1, "right": 2},
        {"action": "discount", "expected_outcomes": [0.2, 1.0, 0.1], "n": 40},
        {"feature": "income", "threshold": 20000.0, "left": 3, "right": 4},
        {"action": "none", "expected_outcomes": [0.1, 0.0, 0.3], "n": 25},
        {"action": "call", "expected_outcomes": [0.9, 0.4, 0.25], "n": 35},
    ],
}
ROWS = [
    {"age": 25, "income": 30000.0},  # young: discount, gain 1.0 - 0.1
    {"age": 50, "income": 10000.0},  # older, low income: no one, gain 0
    {"age": 60, "income": 45000.0},  # older, higher income: call, gain 0.9 - 0.25
]


@pytest.fixture
def policy_ws(served_ws: keel.Workspace) -> keel.Workspace:
    X = pd.DataFrame({"age": [25, 40, 60, 33], "income": [30000.0, 15000.0, 45000.0, 22000.0]})
    mv = served_ws.models.register("offers", PolicyTree.from_dict(TREE), X=X, description="which offer for whom")
    assert mv.flavor == "policy" and mv.signature is not None
    served_ws.models.set_alias("offers", "champion", version=mv.version, reason="first policy")
    return served_ws


def test_policy_predictions_carry_actions_and_expected_gain(policy_ws: keel.Workspace, app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.post("/api/v1/models/offers/predict", json={"records": ROWS})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["prediction"] for p in predictions] == ["discount", "none", "call"]
        assert [p["expected_gain"] for p in predictions] == pytest.approx([0.9, 0.0, 0.65])
        assert all("explanation" not in p and "probabilities" not in p for p in predictions)

        explained = client.post("/api/v1/models/offers/predict?explain=true", json={"records": ROWS}).json()
        rules = [p["explanation"]["rule"] for p in explained["predictions"]]
        assert rules == [
            "age <= 34.5 -> discount",
            "age > 34.5 and income <= 20000 -> none",
            "age > 34.5 and income > 20000 -> call",
        ]
        first = explained["predictions"][0]["explanation"]
        assert first["action"] == "discount"
        assert first["expected_outcomes"] == {"call": 0.2, "discount": 1.0, "none": 0.1}
        assert explained["predictions"][2]["expected_gain"] == pytest.approx(0.65)

        refused = client.post("/api/v1/models/offers/predict", json={"records": [{"age": 30}]})
        assert refused.status_code == 422 and "income" in refused.text
    # the TestClient's exit is the server's shutdown: the buffer is written then
    assert state_of(app).predlog.pending == 0
    log = policy_ws.predictions.window("offers")
    assert len(log) == 7  # two answered requests of three rows, and the refused one
    answered = log[log["__error"].isna()]
    assert sorted(answered["__prediction"].tolist()) == sorted(["discount", "none", "call"] * 2)
    assert log["__error"].notna().sum() == 1


def test_the_policy_flavour_describes_and_predicts_in_python(policy_ws: keel.Workspace) -> None:
    loaded = policy_ws.models.load("offers")
    described = loaded.describe()
    assert described["flavor"] == "policy" and described["baseline"] == "none" and described["depth"] == 2
    assert len(described["rules"]) == 3
    frame = loaded.predictions_frame(ROWS)
    assert frame["prediction"].tolist() == ["discount", "none", "call"]
    assert frame["expected_gain"].tolist() == pytest.approx([0.9, 0.0, 0.65])
    assert loaded.explain_rows(ROWS)[1]["rule"] == "age > 34.5 and income <= 20000 -> none"  # type: ignore[index]
