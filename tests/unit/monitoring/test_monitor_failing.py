"""Monitoring never stops silently: a bad value in the log costs one feature, not the check; a
check that fails raises one "monitor failing" alert, logs its cause once with the traceback,
waits for its schedule before trying again, and resolves the alert when a check succeeds.

Traffic reaches the log through `PredictionLogger`, the path the server takes, so refused
requests land in segments of their own with their inputs as sent (JSON-encoded when mixed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

import keel
from keel.monitoring import stats

from .test_monitor import register, serve, world


def refuse(ws: keel.Workspace, name: str, records: list[dict[str, Any]], error: str) -> None:
    """Log refused requests as the server does, written as one batch (one segment)."""
    log = ws.predictions.logger(flush_interval_s=3600)
    for record in records:
        log.log(name, 1, [record], error=error)
    log.close()


@pytest.fixture
def mws(ws: keel.Workspace) -> keel.Workspace:
    register(ws, "syn", world(5_000, seed=0))
    ws.monitoring.watch("syn", window_rows=1000, multivariate=False)  # its classifier is slow on a busy machine
    return ws


def failing_alerts(ws: keel.Workspace, name: str, status: str = "active") -> list[Any]:
    return [a for a in ws.monitoring.alerts.list(model=name, status=status) if a.rule == "monitor-failing"]


# -- a bad value in a logged segment -------------------------------------------------------------
def test_a_refused_string_beside_missing_values_in_a_json_column_does_not_fail_the_check(mws: keel.Workspace) -> None:
    """Reproduces the json.loads(nan) of every run: 'high', None and 2.0 in one refused segment."""
    serve(mws, "syn", world(900, seed=4))
    refuse(
        mws,
        "syn",
        [{"a": 0.1, "b": "high", "c": "x"}, {"a": 0.2, "b": None, "c": "y"}, {"a": 0.3, "b": 2.0, "c": 3}],
        "column 'b': expected a number",
    )
    result = mws.monitoring.run("syn")
    assert result.value("rows") == 903.0 and result.value("served_rows") == 900.0
    assert result.value("schema_violation_rate") == pytest.approx(3 / 903)
    assert result.value("psi", "b") is not None and result.drifted_features == ()
    assert failing_alerts(mws, "syn") == []


def test_a_nested_value_in_a_refused_request_counts_as_out_of_range_not_as_a_failure(mws: keel.Workspace) -> None:
    serve(mws, "syn", world(900, seed=4))
    refuse(mws, "syn", [{"a": [1, 2], "b": {"x": 1}, "c": ["x"]}, {"a": 0.5, "b": 5.0, "c": "x"}], "bad types")
    result = mws.monitoring.run("syn")
    assert result.value("rows") == 902.0
    assert result.value("out_of_range_rate", "a") == pytest.approx(1 / 902)
    assert result.value("unseen_category_rate", "c") == pytest.approx(1 / 902)


def test_a_feature_whose_statistics_fail_is_skipped_with_its_cause_and_the_rest_is_checked(
    mws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = stats.categorical_distances

    def broken(profile: dict[str, Any], series: Any) -> Any:
        if series.name == "c":
            raise ValueError("cannot bin this column")
        return real(profile, series)

    monkeypatch.setattr(stats, "categorical_distances", broken)
    serve(mws, "syn", world(1000, seed=2, shift_b=1.0))
    result = mws.monitoring.run("syn")
    assert result.value("psi", "a") is not None and result.value("psi", "c") is None
    assert result.drifted_features == ("b",)
    assert "c: drift: ValueError: cannot bin this column" in result.run.summary["skipped"]
    assert result.run.summary["unreadable"] == {"c": "drift: ValueError: cannot bin this column"}
    assert result.value("missing_rate", "c") == 0.0  # its quality is still measured
    assert failing_alerts(mws, "syn") == []


# -- a failing monitor ---------------------------------------------------------------------------
def orphan(ws: keel.Workspace) -> None:
    """A watched model with no training data in its lineage and no reference: every check fails."""
    frame = world(500, seed=0)
    ws.models.register("orphan", LogisticRegression().fit(frame[["a", "b"]], frame["target"]), X=frame[["a", "b"]])
    ws.monitoring.watch("orphan", schedule_s=60)


def test_a_failing_monitor_raises_one_alert_logs_once_backs_off_and_resolves_on_success(
    mws: keel.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    ws = mws
    orphan(ws)
    now = datetime.now(UTC)
    with caplog.at_level(logging.INFO, logger="keel.monitoring"):
        ws.monitoring.run_due(now)
        [alert] = failing_alerts(ws, "orphan")
        assert alert.severity.value == "critical" and "no training dataset in its lineage" in alert.title
        assert "reference=" in alert.evidence["error"] and alert.evidence["traceback"]
        assert ws.monitoring.failing("orphan") == alert and ws.monitoring.failing("syn") is None
        assert "orphan" not in ws.monitoring.due(now + timedelta(seconds=10))  # not every tick
        assert "orphan" in ws.monitoring.due(now + timedelta(seconds=61))  # its schedule
        ws.monitoring.run_due(now + timedelta(seconds=61))
        ws.monitoring.run_due(now + timedelta(seconds=122))
    [again] = failing_alerts(ws, "orphan")
    assert again.id == alert.id and again.count == 3 and again.opened_at == alert.opened_at  # failing since
    logged = [r for r in caplog.records if "orphan" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len([r for r in logged if r.exc_info]) == 1 and logged[0].levelno == logging.ERROR
    assert "no training dataset" in logged[0].getMessage()

    ref = ws.datasets.add("orphan-ref", world(2000, seed=1)[["a", "b", "target"]])
    ws.monitoring.watch("orphan", reference=ref.ref)
    result = ws.monitoring.run("orphan")
    assert failing_alerts(ws, "orphan") == [] and ws.monitoring.failing("orphan") is None
    [resolved] = failing_alerts(ws, "orphan", status="resolved")
    assert resolved.id == alert.id and f"#{result.run.id}" in str(ws.monitoring.alerts.get(alert.id).evidence)


def test_a_new_cause_is_logged_again_with_its_traceback(mws: keel.Workspace, caplog: pytest.LogCaptureFixture) -> None:
    orphan(mws)
    now = datetime.now(UTC)
    with caplog.at_level(logging.INFO, logger="keel.monitoring"):
        mws.monitoring.run_due(now)
        mws.monitoring.watch("orphan", reference="syn@1")  # now its columns are wrong in another way
        mws.monitoring._meta.monitors.save_monitor(
            "orphan", {**mws.monitoring._meta.monitors.get_monitor("orphan")[0], "thresholds": "x"}
        )  # stored before validation existed
        mws.monitoring.run_due(now + timedelta(seconds=61))
    traced = [r for r in caplog.records if r.exc_info and "orphan" in r.getMessage()]
    assert len(traced) == 2 and "thresholds" in traced[1].getMessage()
    [alert] = failing_alerts(mws, "orphan")
    assert "thresholds" in alert.evidence["error"] and alert.count == 2


def test_a_manual_check_that_fails_raises_the_alert_too_but_an_unknown_model_does_not(mws: keel.Workspace) -> None:
    orphan(mws)
    with pytest.raises(keel.InvalidInputError, match="no training dataset"):
        mws.monitoring.run("orphan")
    assert len(failing_alerts(mws, "orphan")) == 1
    with pytest.raises(keel.NotFoundError):
        mws.monitoring.run("nope")
    assert mws.monitoring.alerts.list(model="nope") == []


def test_a_stored_config_that_no_longer_validates_fails_its_own_monitor_only(mws: keel.Workspace) -> None:
    orphan(mws)
    store = mws.monitoring._meta.monitors
    store.save_monitor("orphan", {**store.get_monitor("orphan")[0], "window_rows": "x"})  # written by an older Keel
    serve(mws, "syn", world(1000, seed=1))
    results = mws.monitoring.run_due()
    assert [r.run.model for r in results] == ["syn"]
    [alert] = failing_alerts(mws, "orphan")
    assert "window_rows" in alert.evidence["error"]
    assert [name for name, _, _ in mws.monitoring.monitors()] == ["orphan", "syn"]


def test_a_disabled_monitor_failing_rule_stays_silent_but_the_check_still_backs_off(mws: keel.Workspace) -> None:
    orphan(mws)
    mws.monitoring.alerts.ensure_default_rules("orphan", output_kind="classification")
    mws.monitoring.alerts.disable_rule("orphan", "monitor-failing")
    now = datetime.now(UTC)
    mws.monitoring.run_due(now)
    assert failing_alerts(mws, "orphan") == []
    assert "orphan" not in mws.monitoring.due(now + timedelta(seconds=10))
