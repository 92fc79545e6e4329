"""Alert delivery to a real SMTP server (aiosmtpd) and a real HTTP receiver, both on loopback.

Retries use a fake `sleep`, so backoff costs no time; the servers are real, so payloads,
headers, status codes and refused connections are the ones the channels meet in production.
"""

from __future__ import annotations

import email
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import pytest

import keel
from keel.entities import Alert
from keel.errors import InvalidInputError
from keel.monitoring import channels
from keel.monitoring.alerts import RETRY_DELAYS_S, Alerts

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")

VALUES = [("income", "psi", 0.41), ("income", "js_distance", 0.22)]
CONTEXT: dict[str, Any] = {
    "reference": "credit@3",
    "model_version": 4,
    "features": {"income": {"reference_mean": 100.2, "current_mean": 131.7}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a real SMTP server --------------------------------------------------------------------
@dataclass
class Mailbox:
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())  # aiosmtpd's Controller cannot take port 0

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
            return "250 Message accepted for delivery"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        box.logins.append((auth_data.login, auth_data.password))
        return aiosmtpd_smtp.AuthResult(success=auth_data.password == b"s3cret", handled=False)

    controller = aiosmtpd_controller.Controller(
        Handler(), hostname="127.0.0.1", port=box.port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def alerts(ws: keel.Workspace, sleeps: list[float]) -> Alerts:
    a = Alerts(ws._meta, author="tester", sleep=sleeps.append)
    a.add_rule("credit", "drift", metric="psi", op=">=", threshold=0.2, cooldown_s=0)
    return a


def fire(alerts: Alerts) -> Alert:
    (alert,) = alerts.evaluate("credit", VALUES, context=CONTEXT)
    return alert


# -- webhooks ------------------------------------------------------------------------------
def test_json_webhook_posts_the_alert_with_its_evidence(alerts: Alerts, receiver: Any, sleeps: list[float]) -> None:
    alerts.add_channel("hook", "webhook", url=receiver.url, headers={"Authorization": "Bearer t0ken"})
    alert = fire(alerts)
    (request,) = receiver.requests
    assert request["path"] == "/hooks/T000/B000/secret"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer t0ken"
    body = request["body"]
    assert set(body) == {
        "id",
        "model",
        "rule",
        "severity",
        "status",
        "title",
        "evidence",
        "opened_at",
        "last_seen_at",
        "count",
    }
    assert (body["id"], body["model"], body["rule"]) == (alert.id, "credit", "drift")
    assert (body["severity"], body["status"]) == ("warning", "open")
    assert body["evidence"]["feature"] == "income" and body["evidence"]["statistics"]["current_mean"] == 131.7
    assert body["opened_at"] == alert.opened_at.isoformat() and body["count"] == 1
    (delivery,) = alerts.deliveries(alert.id)
    assert (delivery.channel, delivery.status, delivery.attempts, delivery.error) == ("hook", "delivered", 1, None)
    assert sleeps == []


def test_slack_webhook_posts_text_and_blocks(alerts: Alerts, receiver: Any) -> None:
    alerts.add_channel("slack", "webhook", url=receiver.url, format="slack")
    alert = fire(alerts)
    body = receiver.requests[0]["body"]
    assert set(body) == {"text", "blocks"}
    assert alert.title in body["text"] and "[warning]" in body["text"]
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds[:3] == ["header", "section", "context"]
    header = body["blocks"][0]["text"]
    assert header["type"] == "plain_text" and len(header["text"]) <= 150
    fields = " ".join(f["text"] for f in body["blocks"][1]["fields"])
    assert "credit" in fields and "`income`" in fields and "credit@3" in fields and "current_mean 131.7" in fields
    assert all(f["type"] == "mrkdwn" for f in body["blocks"][1]["fields"])
    assert f"Alert #{alert.id}" in body["blocks"][2]["elements"][0]["text"]


def test_a_failing_webhook_is_retried_with_backoff_and_recorded(
    alerts: Alerts, receiver: Any, sleeps: list[float]
) -> None:
    receiver.statuses = [500] * 10
    alerts.add_channel("hook", "webhook", url=receiver.url)
    alert = fire(alerts)  # returns despite the failure
    assert len(receiver.requests) == len(RETRY_DELAYS_S) + 1
    assert sleeps == [0.5, 1.0, 2.0]
    (delivery,) = alerts.deliveries(alert.id)
    assert (delivery.status, delivery.attempts) == ("failed", 4)
    assert delivery.error is not None and delivery.error.count("HTTP 500") == 4 and "attempt 4:" in delivery.error


def test_a_webhook_that_recovers_is_delivered_and_keeps_the_earlier_errors(
    alerts: Alerts, receiver: Any, sleeps: list[float]
) -> None:
    receiver.statuses = [503, 500]
    alerts.add_channel("hook", "webhook", url=receiver.url)
    alert = fire(alerts)
    (delivery,) = alerts.deliveries(alert.id)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert delivery.error == "attempt 1: HTTP 503 Service Unavailable; attempt 2: HTTP 500 Internal Server Error"
    assert sleeps == [0.5, 1.0]


def test_a_client_error_is_not_retried(alerts: Alerts, receiver: Any, sleeps: list[float]) -> None:
    receiver.statuses = [404]
    alerts.add_channel("hook", "webhook", url=receiver.url)
    alert = fire(alerts)
    (delivery,) = alerts.deliveries(alert.id)
    assert (delivery.status, delivery.attempts, len(receiver.requests), sleeps) == ("failed", 1, 1, [])


def test_a_dead_channel_never_stops_the_others(
    alerts: Alerts, receiver: Any, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    alerts.add_channel("dead", "webhook", url=f"http://127.0.0.1:{free_port()}/hook", timeout_s=2)  # nothing listens
    alerts.add_channel("hook", "webhook", url=receiver.url)
    alerts.add_channel("ops-log", "log")
    with caplog.at_level(logging.WARNING):
        alert = fire(alerts)
    outcome = {d.channel: (d.status, d.attempts) for d in alerts.deliveries(alert.id)}
    assert outcome == {"dead": ("failed", 4), "hook": ("delivered", 1), "ops-log": ("delivered", 1)}
    assert "cannot reach the webhook" in (alerts.deliveries(alert.id)[0].error or "")
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(receiver.requests) == 1
    warned = [r for r in caplog.records if r.name == "keel.monitoring.alerts" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "dead" in warned[0].getMessage() and "4 attempt" in warned[0].getMessage()


def test_a_channel_that_raises_unexpectedly_is_recorded_as_failed(
    alerts: Alerts, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts.add_channel("hook", "webhook", url=receiver.url)

    def broken(channel: Any, alert: Any) -> None:
        raise RuntimeError("bug in a channel")

    monkeypatch.setattr(channels, "send", broken)
    alert = fire(alerts)
    (delivery,) = alerts.deliveries(alert.id)
    assert delivery.status == "failed" and "bug in a channel" in (delivery.error or "")


# -- e-mail --------------------------------------------------------------------------------
def test_email_reaches_a_real_smtp_server(alerts: Alerts, smtp_server: Mailbox) -> None:
    alerts.add_channel(
        "mail",
        "email",
        host="127.0.0.1",
        port=smtp_server.port,
        sender="keel@example.org",
        to=["ops@example.org", "ds@example.org"],
    )
    alert = fire(alerts)
    ((recipients, message),) = smtp_server.messages
    assert recipients == ["ops@example.org", "ds@example.org"]
    assert message["Subject"] == f"[keel][warning] {alert.title}"
    assert message["From"] == "keel@example.org"
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Feature:   income" in body and "Value:     0.41" in body and "credit@3" in body
    assert '"current_mean": 131.7' in body and f"keel alerts ack {alert.id}" in body
    assert [d.status for d in alerts.deliveries(alert.id)] == ["delivered"]
    assert smtp_server.logins == []


def test_email_logs_in_with_the_password_from_the_named_variable(
    alerts: Alerts, smtp_server: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "s3cret")
    channel = alerts.add_channel(
        "mail",
        "email",
        host="127.0.0.1",
        port=smtp_server.port,
        sender="keel@example.org",
        to="ops@example.org",
        username="keel",
        password_env="ALERT_SMTP_PASSWORD",
    )
    assert "s3cret" not in json.dumps(channel.config)
    alert = fire(alerts)
    assert smtp_server.logins == [(b"keel", b"s3cret")]
    assert len(smtp_server.messages) == 1 and alerts.deliveries(alert.id)[0].status == "delivered"


def test_email_without_its_password_variable_fails_once_and_says_why(
    alerts: Alerts, smtp_server: Mailbox, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERT_SMTP_PASSWORD", raising=False)
    alerts.add_channel(
        "mail",
        "email",
        host="127.0.0.1",
        port=smtp_server.port,
        sender="keel@example.org",
        to=["ops@example.org"],
        username="keel",
        password_env="ALERT_SMTP_PASSWORD",
    )
    alert = fire(alerts)
    (delivery,) = alerts.deliveries(alert.id)
    assert (delivery.status, delivery.attempts, sleeps) == ("failed", 1, [])
    assert "ALERT_SMTP_PASSWORD" in (delivery.error or "") and smtp_server.messages == []


def test_a_wrong_smtp_password_is_not_retried(
    alerts: Alerts, smtp_server: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "wrong")
    alerts.add_channel(
        "mail",
        "email",
        host="127.0.0.1",
        port=smtp_server.port,
        sender="keel@example.org",
        to=["ops@example.org"],
        username="keel",
        password_env="ALERT_SMTP_PASSWORD",
    )
    alert = fire(alerts)
    (delivery,) = alerts.deliveries(alert.id)
    assert (delivery.status, delivery.attempts) == ("failed", 1) and "login refused" in (delivery.error or "")
    assert smtp_server.messages == []


def test_an_unreachable_smtp_server_is_retried(alerts: Alerts, sleeps: list[float]) -> None:
    alerts.add_channel(
        "mail", "email", host="127.0.0.1", port=free_port(), sender="keel@example.org", to=["ops@example.org"]
    )
    alert = fire(alerts)
    (delivery,) = alerts.deliveries(alert.id)
    assert (delivery.status, delivery.attempts, sleeps) == ("failed", 4, [0.5, 1.0, 2.0])


# -- the server log ------------------------------------------------------------------------
def test_log_channel_writes_on_keel_alerts_by_severity(alerts: Alerts, caplog: pytest.LogCaptureFixture) -> None:
    alerts.add_channel("ops-log", "log")
    alerts.add_rule("credit", "auc", metric="roc_auc_drop", op=">", threshold=0.05, severity="critical")
    with caplog.at_level(logging.INFO, logger="keel.alerts"):
        alerts.evaluate("credit", [*VALUES, ("", "roc_auc_drop", 0.1)], context=CONTEXT)
    records = {r.levelno: r.getMessage() for r in caplog.records if r.name == "keel.alerts"}
    assert set(records) == {logging.WARNING, logging.ERROR}
    assert "psi=0.41" in records[logging.WARNING] and "feature=income" in records[logging.WARNING]
    assert "roc_auc_drop" in records[logging.ERROR]


# -- channel settings ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("sms", {}, "kind"),
        ("webhook", {}, "url"),
        ("webhook", {"url": "ftp://example.org/x"}, "url"),
        ("webhook", {"url": "https://example.org/x", "format": "xml"}, "format"),
        ("webhook", {"url": "https://example.org/x", "timeout_s": 0}, "timeout_s"),
        ("webhook", {"url": "https://example.org/x", "headers": {"X": 1}}, "headers"),
        ("webhook", {"url": "https://example.org/x", "method": "PUT"}, "method"),
        ("email", {"port": 25, "sender": "a@b.c", "to": ["d@e.f"]}, "host"),
        ("email", {"host": "h", "port": 70000, "sender": "a@b.c", "to": ["d@e.f"]}, "port"),
        ("email", {"host": "h", "sender": "nobody", "to": ["d@e.f"]}, "sender"),
        ("email", {"host": "h", "sender": "a@b.c", "to": []}, "to"),
        ("email", {"host": "h", "sender": "a@b.c", "to": ["d@e.f"], "password": "x"}, "password_env"),
        (
            "email",
            {"host": "h", "sender": "a@b.c", "to": ["d@e.f"], "username": "u", "password_env": "a b"},
            "password_env",
        ),
        ("email", {"host": "h", "sender": "a@b.c", "to": ["d@e.f"], "starttls": True, "ssl": True}, "starttls"),
        ("log", {"level": "debug"}, "level"),
    ],
)
def test_add_channel_rejects_bad_settings_naming_them(
    alerts: Alerts, kind: str, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        alerts.add_channel("c", kind, **config)
    assert alerts.channels() == []


def test_channels_are_listed_with_defaults_and_removed(alerts: Alerts) -> None:
    alerts.add_channel("hook", "webhook", url="https://hooks.example.org/x")
    alerts.add_channel(
        "mail", "email", host="smtp.example.org", sender="keel@example.org", to="a@example.org, b@example.org"
    )
    hook, mail = alerts.channels()
    assert hook.config == {"url": "https://hooks.example.org/x", "format": "json", "headers": {}, "timeout_s": 5.0}
    assert (mail.config["port"], mail.config["to"], mail.config["starttls"]) == (
        25,
        ["a@example.org", "b@example.org"],
        False,
    )
    alerts.remove_channel("hook")
    assert [c.name for c in alerts.channels()] == ["mail"]
    with pytest.raises(keel.errors.NotFoundError, match="known channels: mail"):
        alerts.remove_channel("hook")
    with pytest.raises(keel.errors.ConflictError):
        alerts.add_channel("mail", "log")
