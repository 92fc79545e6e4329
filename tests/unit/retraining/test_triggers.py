"""Automatic retraining triggers: alerts, new data, a cron schedule; debounced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import keel

from .test_retraining import cancer, spec

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def rws(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("cancer", cancer())
    return ws


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def fire(ws: keel.Workspace, rule: str = "feature-drift", feature: str = "mean_radius") -> Any:
    ws.monitoring.alerts.ensure_default_rules("tumor", output_kind="classification")
    metric = {"feature-drift": "drift", "auc-drop": "roc_auc_drop"}[rule]
    value = 1.0 if metric == "drift" else 0.2
    values = [(feature if metric == "drift" else "", metric, value), ("", "labelled_rows", 500.0)]
    return ws.monitoring.alerts.evaluate("tumor", values, context={})


def test_only_manual_projects_are_never_due(rws: keel.Workspace) -> None:
    rws.retraining.train(spec())
    fire(rws)
    assert rws.retraining.due(later(10_000)) == []


def test_a_burst_of_alerts_starts_one_retraining_and_promotion_resolves_them(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(retraining={"triggers": ["alert"], "debounce_s": 600}))
    fire(rws)
    fire(rws, feature="mean_texture")
    fire(rws, rule="auc-drop")
    assert rws.retraining.due(later(60)) == []  # within debounce_s of the first training
    [(name, trigger)] = rws.retraining.due(later(601))
    assert name == "tumor" and trigger.trigger == "alert" and len(trigger.detail["alerts"]) == 3
    # The same model, a better estimator: the cycle the alerts start promotes it.
    rws.retraining.save(
        spec(
            estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 60}},
            retraining={"triggers": ["alert"], "debounce_s": 600},
        )
    )
    [decision] = rws.retraining.run_due(later(601))
    assert (decision.trigger, decision.outcome, decision.version) == ("alert", "promoted", 2)
    assert decision.evidence["trigger"]["rules"] == ["auc-drop", "feature-drift"]
    assert rws.monitoring.alerts.list(model="tumor", status="active") == []  # closed by the promotion
    fire(rws)  # drift again right away: debounced, then held by the cool-down after the promotion
    assert rws.retraining.due(later(60)) == []
    assert rws.retraining.due(later(601)) == []  # past debounce_s, within cooldown_s (3600 by default)
    assert [t.trigger for _, t in rws.retraining.due(later(3601))] == ["alert"]


def test_after_a_promotion_only_alerts_seen_since_count_and_a_cool_down_holds(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(retraining={"triggers": ["alert"], "debounce_s": 0, "cooldown_s": 900}))
    rws.retraining.train(
        spec(
            estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 60}},
            retraining={"triggers": ["alert"], "debounce_s": 0, "cooldown_s": 900},
        )
    )
    assert rws.models.get("tumor@champion").version == 2  # replaced v1: the cool-down starts
    fire(rws)
    assert rws.retraining.due(later(899)) == []  # the new champion's own traffic first
    assert [t.trigger for _, t in rws.retraining.due(later(901))] == ["alert"]


def test_an_alert_raised_before_the_champion_moved_does_not_trigger(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(retraining={"triggers": ["alert"], "debounce_s": 0, "cooldown_s": 0}))
    [alert] = fire(rws)  # raised by the checks of v1
    rws.models.register("tumor", rws.models.load("tumor@1").model, X=cancer().drop(columns=["target"]).head(50))
    rws.models.set_alias("tumor", "champion", version=2, reason="by hand")  # a manual move: no decision
    assert rws.monitoring.alerts.list(model="tumor", status="active")[0].id == alert.id  # still active ...
    assert rws.retraining.due(later(1)) == []  # ... but it is about v1, not the champion serving now
    fire(rws, feature="mean_texture")  # the new champion's own check
    assert [t.trigger for _, t in rws.retraining.due(later(1))] == ["alert"]


def test_the_cool_down_is_a_validated_project_setting() -> None:
    from keel.retraining import ProjectError

    assert spec().retraining.cooldown_s == 3600.0
    with pytest.raises(ProjectError, match="cooldown_s"):
        spec(retraining={"triggers": ["alert"], "cooldown_s": -1})


def test_alerts_of_other_rules_do_not_trigger(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(retraining={"triggers": ["alert"], "alert_rules": ["auc-drop"], "debounce_s": 0}))
    fire(rws)  # feature-drift: not in alert_rules
    assert rws.retraining.due(later(1)) == []
    fire(rws, rule="auc-drop")
    assert [t.trigger for _, t in rws.retraining.due(later(1))] == ["alert"]


def test_a_new_dataset_version_triggers_once(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(retraining={"triggers": ["new_data"], "debounce_s": 0}))
    assert rws.retraining.due(later(1)) == []
    rws.datasets.add("cancer", cancer().iloc[:500])
    [(_, trigger)] = rws.retraining.due(later(1))
    assert trigger.detail == {"dataset": "cancer@2", "previous": "cancer@1"}
    [decision] = rws.retraining.run_due(later(1))
    assert decision.evidence["data"]["dataset"] == "cancer@2" and decision.trigger == "new_data"
    assert rws.retraining.due(later(2)) == []


def test_a_cron_schedule_triggers_after_each_slot(rws: keel.Workspace) -> None:
    rws.retraining.train(spec(retraining={"triggers": ["schedule"], "schedule": "*/5 * * * *", "debounce_s": 0}))
    first = rws.retraining.decisions("tumor")[0].at
    slot = first.replace(second=0, microsecond=0) + timedelta(minutes=5 - first.minute % 5)
    assert rws.retraining.due(slot - timedelta(seconds=1)) == []
    [(_, trigger)] = rws.retraining.due(slot + timedelta(seconds=1))
    assert trigger.trigger == "schedule" and trigger.detail["slot"] == slot.isoformat()
