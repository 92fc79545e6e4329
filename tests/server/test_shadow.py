"""Shadow mode: a challenger that passed its offline gate scores live champion traffic silently;
once enough of those requests have true labels, both are judged on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

import keel
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::sklearn.exceptions.ConvergenceWarning")


def frame() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True).frame
    data.columns = [c.replace(" ", "_") for c in data.columns]
    return data


def project(estimator: dict[str, Any], **gate: Any) -> keel.Project:
    return keel.Project.from_dict(
        {
            "model": "tumor",
            "data": {"dataset": "cancer", "target": "target", "split": {"seed": 0}},
            "estimator": estimator,
            "evaluation": {"metrics": ["roc_auc", "accuracy"]},
            "gate": gate,
        }
    )


WEAK = {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.0001, "max_iter": 3000}}
STRONG = {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 60, "random_state": 0}}


def test_a_shadow_challenger_scores_live_traffic_silently_then_is_judged_on_it(ws: keel.Workspace) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app
    from keel.workspace.tick import tick

    data = frame()
    ws.datasets.add("cancer", data)
    ws.retraining.train(project(WEAK))
    offline = ws.retraining.train(project(STRONG, shadow_rows=150))
    assert offline.outcome == "shadowing" and ws.models.get("tumor@champion").version == 1
    assert ws.retraining.shadows() == {"tumor": 2}

    X = data.drop(columns="target")
    app = create_app(ws)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.post(
            "/api/v1/models/tumor/predict", json={"records": X.head(200).to_dict(orient="records")}
        ).json()
        assert answer["version"] == 1  # the champion answers; the challenger only listens
        ids = [p["id"] for p in answer["predictions"]]
        state_of(app).predlog.flush()
        shadow = ws.predictions.window("tumor.shadow")
        assert len(shadow) == 200 and set(shadow["__version"]) == {2} and sorted(shadow["__id"]) == sorted(ids)
        expected = ws.models.load("tumor@2").predict_proba(X.head(200))[:, 1]
        np.testing.assert_allclose(shadow.set_index("__id").loc[ids, "__proba_1"], expected)
        assert client.get("/api/v1/models/tumor/predict").status_code in (404, 405)  # nothing else changed

        assert tick(ws)["shadow_decisions"] == []  # no labels yet
        labels = [{"id": i, "label": int(y)} for i, y in zip(ids, data["target"].head(200), strict=True)]
        assert client.post("/api/v1/models/tumor/feedback", json={"feedback": labels}).status_code == 200
        [decision] = tick(ws)["shadow_decisions"]
    assert (decision.trigger, decision.version, decision.champion_version) == ("shadow", 2, 1)
    assert decision.evidence["data"]["live_labelled_rows"] == 200
    m = decision.evidence["metrics"]
    better = m["challenger"]["roc_auc"] >= m["champion"]["roc_auc"]
    assert decision.outcome == ("promoted" if better else "rejected")
    assert ws.models.get("tumor@champion").version == (2 if better else 1)
    assert ws.retraining.shadows() == {}  # judged: shadow mode is over
