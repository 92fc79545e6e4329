"""Alert rules, evaluation, deduplication, cooldown, acknowledgement and resolution."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import keel
from keel.entities import AlertSeverity, AlertStatus
from keel.errors import ConflictError, InvalidInputError, NotFoundError
from keel.monitoring.alert_rules import DEFAULT_RULES
from keel.monitoring.alerts import Alerts, dedup_key


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def alerts(ws: keel.Workspace, clock: Clock, sleeps: list[float]) -> Alerts:
    return Alerts(ws._meta, author="tester", sleep=sleeps.append, clock=clock)


CONTEXT: dict[str, Any] = {
    "reference": "credit@3",
    "model_version": 4,
    "run_id": 17,
    "window": {"rows": 1000, "start": "2025-03-01T11:00:00+00:00", "end": "2025-03-01T12:00:00+00:00"},
    "features": {"income": {"reference_mean": 100.2, "current_mean": 131.7, "psi": 0.41}},
}


# -- rules ---------------------------------------------------------------------------------
def test_add_rule_stores_every_field_and_lists_it(alerts: Alerts) -> None:
    rule = alerts.add_rule(
        "credit",
        "income-psi",
        metric="psi",
        op=">",
        threshold=0.3,
        feature="income",
        severity="critical",
        cooldown_s=60,
        window="1000 rows",
    )
    assert rule.window == "1000 rows"
    assert rule.condition == "psi > 0.3 on 'income'"
    (stored,) = alerts.rules("credit")
    assert (stored.name, stored.metric, stored.op, stored.threshold, stored.feature) == (
        "income-psi",
        "psi",
        ">",
        0.3,
        "income",
    )
    assert (stored.severity, stored.cooldown_s, stored.enabled) == (AlertSeverity.CRITICAL, 60, True)
    assert alerts.rules("other") == []


def test_rule_window_label_is_stored(alerts: Alerts) -> None:
    alerts.add_rule("credit", "r", metric="psi", op=">", threshold=0.3, window="1h")
    assert alerts.rules("credit")[0].window == "1h"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metric": "pis"}, "metric"),
        ({"op": "=>"}, "op"),
        ({"threshold": math.nan}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": "0.2"}, "threshold"),
        ({"severity": "urgent"}, "severity"),
        ({"cooldown_s": -1}, "cooldown_s"),
        ({"cooldown_s": 1.5}, "cooldown_s"),
        ({"window": ""}, "window"),
        ({"metric": "roc_auc_drop", "feature": "income"}, "feature"),
        ({"feature": ""}, "feature"),
    ],
)
def test_add_rule_rejects_bad_values_naming_the_field(alerts: Alerts, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"metric": "psi", "op": ">", "threshold": 0.2, **kwargs}
    with pytest.raises(InvalidInputError, match=field):
        alerts.add_rule("credit", "r", **args)
    assert alerts.rules("credit") == []


def test_add_rule_rejects_bad_names_and_duplicates(alerts: Alerts) -> None:
    with pytest.raises(InvalidInputError, match="rule name"):
        alerts.add_rule("credit", "bad name", metric="psi", op=">", threshold=0.2)
    alerts.add_rule("credit", "r", metric="psi", op=">", threshold=0.2)
    with pytest.raises(ConflictError, match="already has an alert rule 'r'"):
        alerts.add_rule("credit", "r", metric="psi", op=">", threshold=0.5)
    alerts.add_rule("other", "r", metric="psi", op=">", threshold=0.5)  # names are per model


def test_remove_rule_deletes_it_and_unknown_rule_is_not_found(alerts: Alerts) -> None:
    alerts.add_rule("credit", "r", metric="psi", op=">", threshold=0.2)
    alerts.remove_rule("credit", "r")
    assert alerts.rules("credit") == []
    with pytest.raises(NotFoundError, match="no alert rule 'r'"):
        alerts.remove_rule("credit", "r")


def test_default_rules_fit_the_model_kind_and_are_idempotent(alerts: Alerts) -> None:
    added = alerts.ensure_default_rules("clf", output_kind="classification")
    by_name = {r.name: r for r in alerts.rules("clf")}
    assert {r.name for r in added} == set(by_name)
    drift = by_name["feature-drift"]
    assert (drift.metric, drift.op, drift.threshold) == ("drift", ">=", 1.0)
    assert by_name["feature-drift"].feature is None  # any feature
    assert (by_name["auc-drop"].threshold, by_name["auc-drop"].severity) == (0.05, AlertSeverity.CRITICAL)
    assert by_name["auc-drop"].feature == ""  # model level
    assert by_name["schema-violations"].severity == AlertSeverity.CRITICAL
    assert "accuracy-drop" in by_name and "rmse-increase" not in by_name
    assert alerts.ensure_default_rules("clf", output_kind="classification") == []
    assert len(alerts.rules("clf")) == len(by_name)

    alerts.ensure_default_rules("reg", output_kind="regression")
    reg = {r.name for r in alerts.rules("reg")}
    assert "rmse-increase" in reg and "auc-drop" not in reg
    assert len(reg) == len([d for d in DEFAULT_RULES if not d.outputs or "regression" in d.outputs])


def test_a_disabled_default_stays_disabled_and_does_not_fire(alerts: Alerts) -> None:
    alerts.ensure_default_rules("clf", output_kind="classification")
    alerts.disable_rule("clf", "feature-drift")
    alerts.ensure_default_rules("clf", output_kind="classification")
    assert not next(r for r in alerts.rules("clf") if r.name == "feature-drift").enabled
    assert alerts.evaluate("clf", [("income", "drift", 1.0)], context={}) == []
    alerts.enable_rule("clf", "feature-drift")
    assert len(alerts.evaluate("clf", [("income", "drift", 1.0)], context={})) == 1


# -- evaluation ----------------------------------------------------------------------------
def test_evaluate_opens_an_alert_with_evidence(alerts: Alerts) -> None:
    alerts.add_rule("credit", "drift", metric="psi", op=">=", threshold=0.2, window="1000 rows")
    values = [("income", "psi", 0.41), ("income", "ks_pvalue", 1e-9), ("age", "psi", 0.05), ("", "rows", 1000.0)]
    (alert,) = alerts.evaluate("credit", values, context=CONTEXT)
    assert alert.status == AlertStatus.OPEN and alert.count == 1 and alert.severity == AlertSeverity.WARNING
    assert alert.feature == "income" and alert.rule == "drift" and alert.model == "credit"
    assert "income" in alert.title and "0.41" in alert.title
    ev = alert.evidence
    assert (ev["metric"], ev["feature"], ev["op"], ev["threshold"], ev["value"]) == ("psi", "income", ">=", 0.2, 0.41)
    assert ev["statistics"] == {"reference_mean": 100.2, "current_mean": 131.7, "psi": 0.41}
    assert ev["related"] == {"ks_pvalue": 1e-9}
    assert (ev["reference"], ev["model_version"], ev["run_id"], ev["window"]["rows"]) == ("credit@3", 4, 17, 1000)
    assert alerts.get(alert.id) == alert
    assert alerts.list("credit") == [alert]


def test_performance_alert_names_reference_and_current_values(alerts: Alerts) -> None:
    alerts.ensure_default_rules("credit", output_kind="classification")
    values = [("", "roc_auc", 0.78), ("", "roc_auc_drop", 0.09), ("", "labelled_rows", 400.0)]
    (alert,) = alerts.evaluate("credit", values, context=CONTEXT)
    assert alert.rule == "auc-drop" and alert.severity == AlertSeverity.CRITICAL and alert.feature is None
    assert alert.evidence["current_value"] == 0.78
    assert alert.evidence["reference_value"] == pytest.approx(0.87)
    assert alert.evidence["labelled_rows"] == 400


def test_performance_rules_wait_for_enough_labels(alerts: Alerts) -> None:
    alerts.add_rule("credit", "auc", metric="roc_auc_drop", op=">", threshold=0.05)
    assert alerts.evaluate("credit", [("", "roc_auc_drop", 0.3), ("", "labelled_rows", 12.0)], context={}) == []
    assert len(alerts.evaluate("credit", [("", "roc_auc_drop", 0.3), ("", "labelled_rows", 120.0)], context={})) == 1


def test_rule_on_one_feature_ignores_the_others(alerts: Alerts) -> None:
    alerts.add_rule("credit", "income-only", metric="psi", op=">", threshold=0.2, feature="income")
    fired = alerts.evaluate("credit", [("age", "psi", 0.9), ("income", "psi", 0.3)], context={})
    assert [a.feature for a in fired] == ["income"]


def test_any_feature_rule_opens_one_alert_per_feature_and_lists_the_others(alerts: Alerts) -> None:
    alerts.add_rule("credit", "drift", metric="psi", op=">", threshold=0.2)
    fired = alerts.evaluate("credit", [("age", "psi", 0.5), ("income", "psi", 0.3), ("home", "psi", 0.01)], context={})
    assert sorted(a.feature or "" for a in fired) == ["age", "income"]
    assert {a.dedup_key for a in fired} == {dedup_key("credit", "drift", "age"), dedup_key("credit", "drift", "income")}
    assert all(a.evidence["features_firing"] == ["age", "income"] for a in fired)


@pytest.mark.parametrize("op", [">", ">=", "<", "<="])
def test_nan_never_fires(alerts: Alerts, op: str) -> None:
    alerts.add_rule("credit", "r", metric="psi", op=op, threshold=0.2)
    alerts.add_rule("credit", "m", metric="roc_auc", op=op, threshold=0.5)
    assert alerts.evaluate("credit", [("income", "psi", math.nan), ("", "roc_auc", float("nan"))], context={}) == []
    assert alerts.list() == []


@pytest.mark.parametrize(
    ("op", "value", "fires"), [(">", 0.2, False), (">=", 0.2, True), ("<", 0.19, True), ("<=", 0.21, False)]
)
def test_comparisons_are_exact_at_the_threshold(alerts: Alerts, op: str, value: float, fires: bool) -> None:
    alerts.add_rule("credit", "r", metric="psi", op=op, threshold=0.2)
    assert len(alerts.evaluate("credit", [("x", "psi", value)], context={})) == int(fires)


def test_evidence_is_plain_json_even_from_numpy_and_infinite_values(alerts: Alerts) -> None:
    np = pytest.importorskip("numpy")
    alerts.add_rule("credit", "r", metric="psi", op=">", threshold=0.2)
    context = {
        "features": {"income": {"ks": np.float64(0.5), "nan": math.nan, "n": np.int64(3)}},
        "when": datetime(2025, 1, 1),
    }
    (alert,) = alerts.evaluate("credit", [("income", "psi", math.inf)], context=context)
    assert alert.evidence["value"] == "inf"
    assert alert.evidence["statistics"] == {"ks": 0.5, "nan": None, "n": 3}
    assert alert.evidence["when"] == "2025-01-01T00:00:00"


# -- deduplication and cooldown --------------------------------------------------------------
def test_firing_again_updates_the_open_alert_and_renotifies_only_after_the_cooldown(
    alerts: Alerts, clock: Clock
) -> None:
    alerts.add_channel("ops-log", "log")
    alerts.add_rule("credit", "drift", metric="psi", op=">", threshold=0.2, cooldown_s=600)
    (first,) = alerts.evaluate("credit", [("income", "psi", 0.3)], context=CONTEXT)
    assert len(alerts.deliveries(first.id)) == 1

    clock.advance(60)
    (second,) = alerts.evaluate("credit", [("income", "psi", 0.5)], context=CONTEXT)
    assert second.id == first.id and second.count == 2
    assert second.evidence["value"] == 0.5 and "0.5" in second.title
    assert second.last_seen_at == clock.now and second.opened_at == first.opened_at
    assert len(alerts.deliveries(first.id)) == 1  # within the cooldown: no new notification
    assert len(alerts.list()) == 1

    clock.advance(600)
    (third,) = alerts.evaluate("credit", [("income", "psi", 0.6)], context=CONTEXT)
    assert third.id == first.id and third.count == 3 and third.last_notified_at == clock.now
    assert len(alerts.deliveries(first.id)) == 2


def test_cooldown_zero_renotifies_every_time(alerts: Alerts) -> None:
    alerts.add_channel("ops-log", "log")
    alerts.add_rule("credit", "drift", metric="psi", op=">", threshold=0.2, cooldown_s=0)
    for _ in range(3):
        (alert,) = alerts.evaluate("credit", [("income", "psi", 0.3)], context={})
    assert alert.count == 3 and len(alerts.deliveries(alert.id)) == 3


def test_an_acknowledged_alert_is_updated_but_not_notified_again(alerts: Alerts, clock: Clock) -> None:
    alerts.add_channel("ops-log", "log")
    alerts.add_rule("credit", "drift", metric="psi", op=">", threshold=0.2, cooldown_s=0)
    (alert,) = alerts.evaluate("credit", [("income", "psi", 0.3)], context={})
    acked = alerts.ack(alert.id, note="looking into the March export")
    assert (acked.status, acked.acked_by, acked.acked_at) == (AlertStatus.ACKNOWLEDGED, "tester", clock.now)
    clock.advance(10)
    (again,) = alerts.evaluate("credit", [("income", "psi", 0.4)], context={})
    assert again.id == alert.id and again.count == 2 and again.status == AlertStatus.ACKNOWLEDGED
    assert again.evidence["notes"][0]["note"] == "looking into the March export"  # kept across updates
    assert len(alerts.deliveries(alert.id)) == 1


# -- acknowledge and resolve ---------------------------------------------------------------
def test_resolve_closes_the_alert_and_a_new_firing_opens_a_new_one(alerts: Alerts, clock: Clock) -> None:
    alerts.add_channel("ops-log", "log")
    alerts.add_rule("credit", "drift", metric="psi", op=">", threshold=0.2)
    (alert,) = alerts.evaluate("credit", [("income", "psi", 0.3)], context={})
    clock.advance(5)
    resolved = alerts.resolve(alert.id, by="ana", note="retrained on April data")
    assert (resolved.status, resolved.resolved_by, resolved.resolved_at) == (AlertStatus.RESOLVED, "ana", clock.now)
    assert resolved.evidence["notes"] == [
        {"status": "resolved", "by": "ana", "at": clock.now.isoformat(), "note": "retrained on April data"}
    ]
    assert alerts.list(status="active") == []

    (new,) = alerts.evaluate("credit", [("income", "psi", 0.35)], context={})  # within the old cooldown, still new
    assert new.id != alert.id and new.count == 1 and new.status == AlertStatus.OPEN
    assert len(alerts.deliveries(new.id)) == 1
    assert [a.id for a in alerts.list("credit", status="all")] == [new.id, alert.id]
    assert [a.id for a in alerts.list(status="resolved")] == [alert.id]


def test_ack_and_resolve_are_idempotent_and_a_resolved_alert_cannot_be_acked(alerts: Alerts) -> None:
    alerts.add_rule("credit", "drift", metric="psi", op=">", threshold=0.2)
    (alert,) = alerts.evaluate("credit", [("income", "psi", 0.3)], context={})
    first = alerts.ack(alert.id, by="ana")
    assert alerts.ack(alert.id, by="bob") == first
    assert alerts.list(status="acknowledged") == [first] and alerts.list(status="open") == []
    resolved = alerts.resolve(alert.id)
    assert resolved.resolved_by == "tester" and resolved.acked_by == "ana"
    assert alerts.resolve(alert.id) == resolved
    with pytest.raises(ConflictError, match="resolved"):
        alerts.ack(alert.id)


def test_unknown_alert_ids_and_statuses_are_errors(alerts: Alerts) -> None:
    with pytest.raises(NotFoundError, match="No alert #42; there are no alerts yet"):
        alerts.get(42)
    alerts.add_rule("credit", "drift", metric="psi", op=">", threshold=0.2)
    alerts.evaluate("credit", [("income", "psi", 0.3)], context={})
    for call in (alerts.ack, alerts.resolve, alerts.deliveries):
        with pytest.raises(NotFoundError, match="up to #1"):
            call(42)
    with pytest.raises(InvalidInputError, match="status"):
        alerts.list(status="closed")
