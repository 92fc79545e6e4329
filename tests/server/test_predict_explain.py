"""`/predict?explain=true`: attributions and reason codes with each prediction."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel

pytest.importorskip("shap")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def test_explained_predictions_add_up_and_carry_reason_codes(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    rows = records(cancer, 3)
    plain = client.post("/api/v1/models/tumor/predict", json={"records": rows}).json()
    assert all("explanation" not in p for p in plain["predictions"])

    answer = client.post("/api/v1/models/tumor/predict?explain=true&top=2", json={"records": rows}).json()
    X = pd.DataFrame(rows)
    logistic = served_ws.models.load("tumor@1").model
    for i, p in enumerate(answer["predictions"]):
        e = p["explanation"]
        assert (
            set(e["attributions"]) == set(X.columns) and e["space"] == "log-odds" and e["method"].startswith("linear")
        )
        total = e["base_value"] + sum(e["attributions"].values())
        assert total == pytest.approx(float(logistic.decision_function(X.iloc[[i]])[0]), abs=1e-6)
        assert 1 <= len(e["reasons"]) <= 2 and f"pushed toward {p['prediction']}" in e["reasons"][0]["text"]
        assert p["prediction"] == plain["predictions"][i]["prediction"]  # explaining changes nothing else

    tree = client.post("/api/v1/models/tumor/predict?version=2&explain=true", json={"records": rows}).json()
    proba = served_ws.models.load("tumor@2").predict_proba(X)[:, 1]
    for i, p in enumerate(tree["predictions"]):
        e = p["explanation"]
        assert e["space"] == "probability" and e["method"].startswith("tree")
        assert e["base_value"] + sum(e["attributions"].values()) == pytest.approx(proba[i], abs=1e-6)
    assert np.isclose(sum(tree["predictions"][0]["probabilities"].values()), 1.0)


def test_explain_needs_a_known_model_and_sane_parameters(client: Any, cancer: pd.DataFrame, records: Any) -> None:
    assert (
        client.post("/api/v1/models/nope/predict?explain=true", json={"records": records(cancer, 1)}).status_code == 404
    )
    assert (
        client.post("/api/v1/models/tumor/predict?explain=true&top=0", json={"records": records(cancer, 1)}).status_code
        == 422
    )
