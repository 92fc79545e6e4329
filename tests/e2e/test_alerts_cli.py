"""`keel alerts`: list, show, ack and resolve alerts, rules and channels, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

import keel
from keel import Settings
from keel.cli.alerts import alerts_of


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A workspace where model 'credit' has its default rules and two open alerts."""
    path = tmp_path / "ws"
    ws = keel.Workspace(Settings(home=path, author="tester"))
    try:
        alerts = alerts_of(ws)
        alerts.ensure_default_rules("credit", output_kind="classification")
        context = {
            "reference": "credit@3",
            "features": {"income": {"reference_mean": 100.2, "current_mean": 131.7, "reasons": ["psi 0.41 >= 0.2"]}},
        }
        values = [("income", "drift", 1.0), ("income", "psi", 0.41), ("", "schema_violation_rate", 0.2)]
        alerts.evaluate("credit", values, context=context)
    finally:
        ws.close()
    return path


def test_list_shows_open_alerts_as_json_and_table(home: Path) -> None:
    listed = keel_json(home, "alerts", "list")
    assert [(a["rule"], a["status"], a["severity"]) for a in listed] == [
        ("schema-violations", "open", "critical"),
        ("feature-drift", "open", "warning"),
    ]
    drift = listed[1]
    assert drift["feature"] == "income" and drift["evidence"]["statistics"]["current_mean"] == 131.7
    assert keel_json(home, "alerts", "list", "--model", "other") == []
    code, out, _ = keel_cli(home, "alerts", "list")
    assert code == 0 and "income drifted (psi 0.41" in out and "critical" in out


def test_ack_then_resolve_moves_an_alert_through_its_states(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_AUTHOR", "ana")  # who acts: the workspace's author
    alert_id = str(keel_json(home, "alerts", "list", "--model", "credit")[-1]["id"])
    acked = keel_json(home, "alerts", "ack", alert_id, "--note", "on it")
    assert (acked["status"], acked["acked_by"]) == ("acknowledged", "ana")
    assert [a["id"] for a in keel_json(home, "alerts", "list", "--status", "acknowledged")] == [int(alert_id)]

    code, out, _ = keel_cli(home, "alerts", "resolve", alert_id)
    assert code == 0 and f"Alert #{alert_id} resolved by ana" in out
    assert [a["id"] for a in keel_json(home, "alerts", "list", "--status", "resolved")] == [int(alert_id)]
    assert len(keel_json(home, "alerts", "list")) == 1
    assert len(keel_json(home, "alerts", "list", "--status", "all")) == 2

    shown = keel_json(home, "alerts", "show", alert_id)
    assert shown["resolved_by"] == "ana" and shown["evidence"]["notes"][0]["note"] == "on it"
    assert shown["deliveries"] == []  # no channels configured
    assert_one_line_error(keel_cli(home, "alerts", "ack", alert_id), code=1, contains="is resolved")


def test_unknown_alert_ids_and_bad_options_are_one_line_errors(home: Path) -> None:
    for command in ("ack", "resolve", "show"):
        assert_one_line_error(keel_cli(home, "alerts", command, "999"), code=1, contains="No alert #999")
    assert_one_line_error(keel_cli(home, "alerts", "ack", "abc"), code=2, contains="valid integer")
    assert_one_line_error(
        keel_cli(home, "alerts", "list", "--status", "closed"), code=2, contains="'closed' is not one of"
    )
    assert_one_line_error(keel_cli(home.parent / "nowhere", "alerts", "list"), code=1, contains="No workspace")


def test_rules_lists_the_defaults_and_rules_can_be_added_and_removed(home: Path) -> None:
    rules = {r["name"]: r for r in keel_json(home, "alerts", "rules", "credit")}
    assert rules["feature-drift"]["condition"] == "drift >= 1 on any feature"
    assert (rules["auc-drop"]["condition"], rules["auc-drop"]["severity"]) == ("roc_auc_drop > 0.05", "critical")
    added = keel_json(
        home,
        "alerts",
        "rule-add",
        "credit",
        "income-psi",
        "--metric",
        "psi",
        "--op",
        ">",
        "--threshold",
        "0.3",
        "--feature",
        "income",
        "--severity",
        "critical",
    )
    assert (added["feature"], added["threshold"]) == ("income", 0.3)
    code, out, _ = keel_cli(home, "alerts", "rules", "credit")
    assert code == 0 and "income-psi" in out and "psi > 0.3 on 'income'" in out
    assert_one_line_error(
        keel_cli(home, "alerts", "rule-add", "credit", "x", "--metric", "pis", "--op", ">", "--threshold", "1"),
        code=1,
        contains="metric: unknown metric 'pis'",
    )
    assert keel_cli(home, "alerts", "rule-remove", "credit", "income-psi")[0] == 0
    assert_one_line_error(
        keel_cli(home, "alerts", "rule-remove", "credit", "income-psi"), code=1, contains="no alert rule"
    )
    assert keel_json(home, "alerts", "rule-disable", "credit", "feature-drift")["enabled"] is False


def test_channel_add_accepts_each_kind_and_rejects_bad_settings(home: Path) -> None:
    hook = keel_json(
        home,
        "alerts",
        "channel-add",
        "slack",
        "--kind",
        "webhook",
        "--url",
        "https://hooks.slack.com/services/T0/B0/secret",
        "--format",
        "slack",
    )
    assert hook["config"]["format"] == "slack"
    mail = keel_json(
        home,
        "alerts",
        "channel-add",
        "mail",
        "--kind",
        "email",
        "--host",
        "127.0.0.1",
        "--port",
        "2525",
        "--sender",
        "keel@example.org",
        "--to",
        "a@example.org",
        "--to",
        "b@example.org",
    )
    assert (mail["config"]["port"], mail["config"]["to"]) == (2525, ["a@example.org", "b@example.org"])
    assert keel_json(home, "alerts", "channel-add", "ops-log", "--kind", "log")["kind"] == "log"
    code, out, _ = keel_cli(home, "alerts", "channels")
    assert code == 0 and "hooks.slack.com/..." in out and "secret" not in out  # the URL's token stays hidden
    assert [c["name"] for c in keel_json(home, "alerts", "channels")] == ["slack", "mail", "ops-log"]

    assert_one_line_error(keel_cli(home, "alerts", "channel-add", "x", "--kind", "sms"), code=1, contains="kind 'sms'")
    assert_one_line_error(
        keel_cli(home, "alerts", "channel-add", "x", "--kind", "email", "--sender", "a@b.c", "--to", "d@e.f"),
        code=1,
        contains="host",
    )
    assert_one_line_error(keel_cli(home, "alerts", "channel-add", "slack", "--kind", "log"), code=1, contains="exists")
    assert keel_cli(home, "alerts", "channel-remove", "slack")[0] == 0
    assert_one_line_error(
        keel_cli(home, "alerts", "channel-remove", "slack"), code=1, contains="No alert channel named 'slack'"
    )
