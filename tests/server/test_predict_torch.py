"""A registered torch Sequential served at /predict: labels and class probabilities, loaded untrusted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import keel


@pytest.fixture
def torch_ws(served_ws: keel.Workspace) -> keel.Workspace:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.Softmax(dim=1))
    net.eval()
    net.classes = ["stay", "churn"]
    X = pd.DataFrame({"age": [25, 40, 60, 33], "income": [3.0, 1.5, 4.5, 2.2]})
    mv = served_ws.models.register("churn-net", net, X=X)
    assert mv.flavor == "torch"
    served_ws.models.set_alias("churn-net", "champion", version=mv.version, reason="first net")
    return served_ws


def test_torch_predictions_carry_labels_and_probabilities(torch_ws: keel.Workspace, app: Any) -> None:
    from fastapi.testclient import TestClient

    rows = [{"age": 25, "income": 3.0}, {"age": 70, "income": 0.5}]
    expected = torch_ws.models.load("churn-net").predictions_frame(rows)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.post("/api/v1/models/churn-net/predict", json={"records": rows})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
    assert [p["prediction"] for p in predictions] == expected["prediction"].tolist()
    got = np.array([[p["probabilities"]["stay"], p["probabilities"]["churn"]] for p in predictions])
    np.testing.assert_allclose(got, expected[["proba_stay", "proba_churn"]].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
