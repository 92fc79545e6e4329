"""Retraining cycles on a real workspace: train, gate, promote, approve, roll back, fail safely."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

import keel
from keel.errors import InvalidInputError, NotFoundError

from . import gate_checks

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CHECKS = gate_checks.__name__  # importable by name, as a project file would name it


def cancer() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["site"] = np.where(np.arange(len(frame)) % 3 == 0, "north", "south")  # a categorical column
    return frame


def spec(**changes: Any) -> keel.Project:
    raw: dict[str, Any] = {
        "model": "tumor",
        "data": {"dataset": "cancer", "target": "target", "split": {"test_fraction": 0.3, "seed": 0}},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 2000, "C": 0.001}},
        "evaluation": {"metrics": ["roc_auc", "accuracy", "log_loss"], "primary": "roc_auc"},
    }
    raw.update(changes)
    return keel.Project.from_dict(raw)


@pytest.fixture
def rws(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("cancer", cancer())
    return ws


def champion(ws: keel.Workspace) -> int:
    return ws.models.get("tumor@champion").version


def test_the_first_training_is_tracked_registered_with_lineage_and_promoted(rws: keel.Workspace) -> None:
    d = rws.retraining.train(spec())
    assert (d.outcome, d.version, d.champion_version, d.trigger) == ("promoted", 1, None, "manual")
    mv = rws.models.get("tumor@champion")
    assert mv.version == 1 and set(mv.aliases) == {"champion", "challenger"}
    assert mv.datasets == ("cancer@1",) and mv.run_id == d.run_id
    run = rws.runs.get(d.run_id)
    assert run.inputs == ("cancer@1",) and run.status.value == "finished"
    assert run.params["estimator.C"] == "0.001" and run.tags["keel.trigger"] == "manual"
    assert run.metrics["roc_auc"] == pytest.approx(d.evidence["metrics"]["challenger"]["roc_auc"])
    assert d.evidence["data"] == {
        "dataset": "cancer@1",
        "rows": 569,
        "train_rows": 398,
        "holdout_rows": 171,
        "split": {"test_fraction": 0.3, "seed": 0},
    }
    assert 0.9 < d.evidence["metrics"]["challenger"]["roc_auc"] <= 1.0
    model = rws.models.load("tumor@champion")  # categorical 'site' is handled by the automatic preprocessing
    assert model.predict(cancer().drop(columns="target").head(3)).shape == (3,)
    assert rws.retraining.project("tumor") == spec()  # stored for later retraining


def test_a_better_challenger_is_promoted_and_a_worse_one_rejected_on_the_same_holdout(rws: keel.Workspace) -> None:
    rws.retraining.train(spec())
    better = rws.retraining.train(
        spec(
            estimator={
                "class": "sklearn.ensemble.HistGradientBoostingClassifier",
                "params": {"max_iter": 60, "random_state": 0},
            }
        )
    )
    m = better.evidence["metrics"]
    assert better.outcome == "promoted" and champion(rws) == 2 and better.champion_version == 1
    assert m["challenger"]["roc_auc"] > m["champion"]["roc_auc"]
    worse = rws.retraining.train(spec(estimator={"class": "sklearn.dummy.DummyClassifier"}))
    assert worse.outcome == "rejected" and champion(rws) == 2
    assert rws.models.get("tumor@challenger").version == 3  # still registered and aliased, for inspection
    assert "does not improve" in worse.evidence["gate"]["reasons"][0]
    assert [d.outcome for d in rws.retraining.decisions("tumor")] == ["rejected", "promoted", "promoted"]


def test_approval_holds_a_passing_challenger_until_approved(rws: keel.Workspace) -> None:
    rws.retraining.train(spec())
    held = rws.retraining.train(
        spec(
            estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 60}},
            gate={"approval": True},
        )
    )
    assert held.outcome == "awaiting_approval" and champion(rws) == 1
    with pytest.raises(InvalidInputError, match="not awaiting approval"):
        rws.retraining.approve("tumor", 1)
    approved = rws.retraining.approve("tumor", 2, reason="looks good")
    assert (approved.outcome, approved.trigger, champion(rws)) == ("approved", "approval", 2)
    assert rws.models.alias_history("tumor", "champion")[-1].reason == "looks good"
    with pytest.raises(InvalidInputError, match="not awaiting approval"):
        rws.retraining.approve("tumor", 2)  # approved once


def test_rollback_restores_the_previous_champion(rws: keel.Workspace) -> None:
    rws.retraining.train(spec())
    with pytest.raises(InvalidInputError, match="nothing to roll back to"):
        rws.retraining.rollback("tumor")
    rws.retraining.train(
        spec(estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 60}})
    )
    d = rws.retraining.rollback("tumor", reason="pager at 3am")
    assert (d.outcome, d.version, d.champion_version, champion(rws)) == ("rolled_back", 1, 2, 1)
    assert rws.models.alias_history("tumor", "champion")[-1].reason == "pager at 3am"


def test_a_failing_training_leaves_the_champion_and_raises_an_alert(rws: keel.Workspace, receiver: Any) -> None:
    rws.retraining.train(spec())
    rws.monitoring.alerts.add_channel("oncall", "webhook", url=receiver.url)
    d = rws.retraining.train(spec(estimator={"entry_point": f"{CHECKS}:broken"}))
    assert d.outcome == "failed" and d.version is None and champion(rws) == 1
    assert "the GPU caught fire" in d.evidence["error"]
    assert rws.runs.get(d.run_id).status.value == "failed"
    [alert] = rws.monitoring.alerts.list(model="tumor")
    assert alert.rule == "retraining-failed" and alert.severity.value == "critical"
    assert "retraining failed" in alert.title and "the GPU caught fire" in alert.title
    assert receiver.requests[0]["body"]["rule"] == "retraining-failed"
    assert len(rws.models.versions("tumor")) == 1


def test_bad_params_fail_the_cycle_with_a_clear_reason(rws: keel.Workspace) -> None:
    d = rws.retraining.train(
        spec(estimator={"class": "sklearn.linear_model.LogisticRegression", "params": {"nope": 1}})
    )
    assert d.outcome == "failed" and "estimator.params" in d.evidence["error"] and "nope" in d.evidence["error"]
    with pytest.raises(NotFoundError):
        rws.models.get("tumor@champion")


def test_custom_checks_and_entry_point_recipes(rws: keel.Workspace) -> None:
    first = rws.retraining.train(
        spec(
            estimator={"entry_point": f"{CHECKS}:recipe", "params": {"max_iter": 3000}},
            gate={"checks": [f"{CHECKS}:allow"]},
        )
    )
    assert first.outcome == "promoted" and first.evidence["gate"]["checks"][f"check:{CHECKS}:allow"]["passed"]
    vetoed = rws.retraining.train(
        spec(
            estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier"}, gate={"checks": [f"{CHECKS}:veto"]}
        )
    )
    assert vetoed.outcome == "rejected" and champion(rws) == 1
    assert any("vetoed at roc_auc" in r for r in vetoed.evidence["gate"]["reasons"])


def test_retrain_uses_the_latest_dataset_version_and_production_feedback(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(retraining={"data": "reference+production"}))
    frame = cancer()
    served = frame.drop(columns="target").head(100)
    from keel.monitoring.predlog import new_prediction_ids

    ids, _ = new_prediction_ids(len(served))
    rws.predictions.write("tumor", 1, served.assign(__id=ids, __prediction=0))
    rws.monitoring.feedback("tumor", dict(zip(ids, frame["target"].head(100).tolist(), strict=True)))
    d = rws.retraining.retrain("tumor", trigger="manual")
    assert d.evidence["production_rows"] == 100 and d.evidence["production"] == "tumor-production@1"
    assert d.evidence["data"]["dataset"] == "cancer-retrain@1" and d.evidence["data"]["rows"] == 669
    # the newest 30% of the production rows are the fresh holdout; the rest joins the reference
    assert d.evidence["data"]["split"] == {"newest_production_rows": 30} and d.evidence["data"]["holdout_rows"] == 30
    assert d.evidence["data"]["train_rows"] == 569 + 70
    assert rws.datasets.get("cancer-retrain@1").num_rows == 639
    mv = rws.models.get(f"tumor@{d.version}")
    assert mv.datasets == ("cancer-retrain@1",)
    with pytest.raises(NotFoundError, match="has no project"):
        rws.retraining.retrain("nope")


def test_project_monitoring_settings_and_rules_are_applied(rws: keel.Workspace) -> None:
    rws.retraining.train(
        spec(
            monitoring={
                "window_rows": 250,
                "rules": [
                    {"name": "radius-psi", "metric": "psi", "op": ">", "threshold": 0.3, "feature": "mean_radius"}
                ],
            }
        )
    )
    assert rws.monitoring.config("tumor").window_rows == 250
    rules = {r.name: r for r in rws.monitoring.alerts.rules("tumor")}
    assert rules["radius-psi"].feature == "mean_radius" and "feature-drift" in rules


TUNING = {
    "params": {"C": {"low": 0.0005, "high": 1.0, "log": True}, "class_weight": ["balanced", None]},
    "trials": 4,
    "seed": 1,
}


def test_tuning_searches_on_a_validation_split_then_gates_the_best(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(tuning=TUNING))
    d = rws.retraining.tune("tumor")
    t = d.evidence["tuning"]
    assert (d.trigger, t["engine"], t["metric"], len(t["trials"])) == ("tune", "random search", "roc_auc", 4)
    assert t["score"] == max(trial["score"] for trial in t["trials"])
    assert t["validation_rows"] == 120  # 30% of the 398 training rows; the gate's 171 holdout rows stay unseen
    run = rws.runs.get(d.run_id)
    assert float(run.params["estimator.C"]) == pytest.approx(t["best"]["C"])
    assert d.outcome in ("promoted", "rejected") and d.evidence["gate"]["checks"]["primary"]["champion"] is not None
    again = rws.retraining.tune("tumor")
    assert again.evidence["tuning"]["trials"] == t["trials"]  # seeded: the same configurations
    rws.retraining.save(spec())
    with pytest.raises(InvalidInputError, match="has no tuning section"):
        rws.retraining.tune("tumor")
