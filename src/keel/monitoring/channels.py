"""Alert channels: check a channel's settings, and send one alert through it.

Three kinds, all from the standard library:

- ``webhook``: POST JSON to a URL; ``format='slack'`` sends a Slack incoming-webhook payload
  (``text`` plus ``blocks``), ``'json'`` the alert itself (see `json_payload`).
- ``email``: a plain-text message over SMTP (optionally STARTTLS or implicit TLS, and a login
  whose password is read at send time from the environment variable named by ``password_env``;
  the password itself is never stored).
- ``log``: a record on the ``keel.alerts`` logger (ERROR for critical alerts, else WARNING or INFO).

`send` raises `DeliveryError` when a channel refuses or cannot be reached; the caller retries.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any

from keel.entities import Alert, AlertChannel, AlertSeverity
from keel.errors import InvalidInputError

__all__ = ["KINDS", "DeliveryError", "check_config", "send", "json_payload", "slack_payload", "email_message"]

alert_logger = logging.getLogger("keel.alerts")  # the 'log' channel's records; operators route this name

KINDS = ("webhook", "email", "log")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOG_LEVELS = {
    AlertSeverity.INFO: logging.INFO,
    AlertSeverity.WARNING: logging.WARNING,
    AlertSeverity.CRITICAL: logging.ERROR,
}
_SLACK_HEADER_CHARS = 150  # Slack rejects longer plain_text headers
_SLACK_FIELD_CHARS = 1900  # and section fields over 2,000 characters


class DeliveryError(Exception):
    """A channel did not take the alert. `retryable` is False where trying again cannot help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# -- configuration -------------------------------------------------------------------------
def check_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a channel of `kind`, checked and with defaults; InvalidInputError names the field."""
    if kind not in KINDS:
        raise InvalidInputError(f"Unknown channel kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "webhook":
        return _webhook_config(config)
    if kind == "email":
        return _email_config(config)
    _only(config, set(), kind)
    return {}


def _only(config: dict[str, Any], known: set[str], kind: str) -> None:
    unknown = sorted(set(config) - known)
    if "password" in unknown:
        raise InvalidInputError(
            "Channel settings never hold a password: put it in an environment variable and pass its name as password_env"
        )
    if unknown:
        raise InvalidInputError(
            f"Unknown {kind} channel setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}"
        )


def _webhook_config(config: dict[str, Any]) -> dict[str, Any]:
    _only(config, {"url", "format", "headers", "timeout_s"}, "webhook")
    url = config.get("url")
    if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
        raise InvalidInputError(f"url: a webhook needs an http:// or https:// URL, got {url!r}")
    fmt = config.get("format", "json")
    if fmt not in ("json", "slack"):
        raise InvalidInputError(f"format: use 'json' or 'slack', got {fmt!r}")
    headers = config.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InvalidInputError(f"headers: a mapping of header names to string values, got {headers!r}")
    return {"url": url, "format": fmt, "headers": dict(headers), "timeout_s": _timeout(config.get("timeout_s", 5.0))}


def _email_config(config: dict[str, Any]) -> dict[str, Any]:
    known = {"host", "port", "sender", "to", "username", "password_env", "starttls", "ssl", "timeout_s"}
    _only(config, known, "email")
    host = config.get("host")
    if not isinstance(host, str) or not host.strip():
        raise InvalidInputError(f"host: the SMTP server's host name, got {host!r}")
    port = config.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidInputError(f"port: an SMTP port between 1 and 65535, got {port!r}")
    sender = config.get("sender")
    if not _is_address(sender):
        raise InvalidInputError(f"sender: an e-mail address, got {sender!r}")
    to = config.get("to")
    to = [t.strip() for t in to.split(",")] if isinstance(to, str) else to
    if not isinstance(to, list) or not to or not all(_is_address(t) for t in to):
        raise InvalidInputError(f"to: one or more e-mail addresses, got {config.get('to')!r}")
    username = config.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        raise InvalidInputError(f"username: a non-empty string, got {username!r}")
    password_env = config.get("password_env")
    if password_env is not None and (not isinstance(password_env, str) or not _ENV_NAME.fullmatch(password_env)):
        raise InvalidInputError(
            f"password_env: the NAME of an environment variable holding the password, got {password_env!r}"
        )
    if password_env is not None and username is None:
        raise InvalidInputError("password_env: set username too (the login the password belongs to)")
    starttls, use_ssl = config.get("starttls", False), config.get("ssl", False)
    if not isinstance(starttls, bool) or not isinstance(use_ssl, bool):
        raise InvalidInputError(f"starttls and ssl are true or false, got {starttls!r} and {use_ssl!r}")
    if starttls and use_ssl:
        raise InvalidInputError("starttls and ssl: choose one (ssl is implicit TLS, usually port 465)")
    return {
        "host": host,
        "port": port,
        "sender": sender,
        "to": to,
        "username": username,
        "password_env": password_env,
        "starttls": starttls,
        "ssl": use_ssl,
        "timeout_s": _timeout(config.get("timeout_s", 10.0)),
    }


def _is_address(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[^@\s,<>]+@[^@\s,<>]+", value) is not None


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"timeout_s: a number of seconds > 0, got {value!r}")
    return float(value)


# -- sending -------------------------------------------------------------------------------
def send(channel: AlertChannel, alert: Alert) -> None:
    """Send `alert` through `channel` once; raise DeliveryError if it was not taken."""
    if channel.kind == "webhook":
        _post(channel, alert)
    elif channel.kind == "email":
        _mail(channel, alert)
    elif channel.kind == "log":
        alert_logger.log(
            _LOG_LEVELS.get(alert.severity, logging.WARNING),
            "alert #%d [%s] %s: %s",
            alert.id,
            alert.severity.value,
            alert.title,
            _evidence_line(alert),
        )
    else:
        raise DeliveryError(f"unknown channel kind {channel.kind!r}", retryable=False)


def _post(channel: AlertChannel, alert: Alert) -> None:
    cfg = channel.config
    payload = slack_payload(alert) if cfg.get("format") == "slack" else json_payload(alert)
    headers = {"Content-Type": "application/json", "User-Agent": "keel-alerts", **cfg.get("headers", {})}
    request = urllib.request.Request(cfg["url"], data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=cfg.get("timeout_s", 5.0)) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        # 4xx means the request itself is wrong (bad token, bad payload): retrying cannot help,
        # except for 408 (timeout) and 429 (rate limited).
        retryable = exc.code >= 500 or exc.code in (408, 429)
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}", retryable=retryable) from exc
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach the webhook: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, malformed responses
        raise DeliveryError(f"webhook failed: {exc!r}") from exc


def _mail(channel: AlertChannel, alert: Alert) -> None:
    cfg = channel.config
    password = None
    if cfg.get("username"):
        # Read at send time from the variable the user named, so the secret is never stored.
        password = os.environ.get(cfg.get("password_env") or "")
        if password is None:
            raise DeliveryError(
                f"environment variable {cfg.get('password_env')!r} (the SMTP password) is not set", retryable=False
            )
    message = email_message(alert, sender=cfg["sender"], to=cfg["to"])
    smtp_class = smtplib.SMTP_SSL if cfg.get("ssl") else smtplib.SMTP
    try:
        with smtp_class(cfg["host"], cfg["port"], timeout=cfg.get("timeout_s", 10.0)) as smtp:
            if cfg.get("starttls"):
                smtp.starttls(context=ssl.create_default_context())
            if password is not None:
                smtp.login(cfg["username"], password)
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}", retryable=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP delivery failed: {exc!r}") from exc


# -- payloads ------------------------------------------------------------------------------
def json_payload(alert: Alert) -> dict[str, Any]:
    """The alert as the 'json' webhook format sends it."""
    payload = {
        "id": alert.id,
        "model": alert.model,
        "rule": alert.rule,
        "severity": alert.severity.value,
        "status": alert.status.value,
        "title": alert.title,
        "evidence": alert.evidence,
        "opened_at": alert.opened_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat(),
        "count": alert.count,
    }
    if isinstance(alert.evidence.get("url"), str):
        payload["url"] = alert.evidence["url"]
    return payload


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (the notification) and `blocks` (the message)."""
    ev = alert.evidence
    icons = {AlertSeverity.CRITICAL: ":rotating_light:", AlertSeverity.WARNING: ":warning:"}
    icon = icons.get(alert.severity, ":information_source:")
    fields = [
        f"*Model*\n{alert.model}"
        + (f" (version {ev['model_version']})" if ev.get("model_version") is not None else ""),
        f"*Severity*\n{alert.severity.value}",
        f"*Rule*\n{alert.rule}: {ev.get('metric')} {ev.get('op')} {_fmt(ev.get('threshold'))}",
        f"*Value*\n{_fmt(ev.get('value'))}" + (f" on `{ev['feature']}`" if ev.get("feature") else ""),
    ]
    if ev.get("reference"):
        fields.append(f"*Reference*\n{ev['reference']}")
    if ev.get("reference_value") is not None or ev.get("current_value") is not None:
        fields.append(f"*Reference / current*\n{_fmt(ev.get('reference_value'))} / {_fmt(ev.get('current_value'))}")
    stats = ev.get("statistics")
    if isinstance(stats, dict) and stats:
        fields.append("*Statistics*\n" + ", ".join(f"{k} {_fmt(v)}" for k, v in list(stats.items())[:8]))
    header = f"[{alert.severity.value}] {alert.title}"[:_SLACK_HEADER_CHARS]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f[:_SLACK_FIELD_CHARS]} for f in fields[:10]]},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": (
                        f"Alert #{alert.id} · {alert.status.value} · opened {alert.opened_at:%Y-%m-%d %H:%M} UTC · seen {alert.count}×"
                    ),
                }
            ],
        },
    ]
    if isinstance(ev.get("url"), str):
        button = {"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": ev["url"]}
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": f"{icon} [{alert.severity.value}] {alert.title}", "blocks": blocks}


def email_message(alert: Alert, *, sender: str, to: list[str]) -> EmailMessage:
    """A plain-text e-mail: subject '[keel][severity] title', body the alert and its evidence."""
    ev = alert.evidence
    message = EmailMessage()
    message["Subject"] = f"[keel][{alert.severity.value}] {alert.title}"
    message["From"] = sender
    message["To"] = ", ".join(to)
    lines = [
        alert.title,
        "",
        f"Alert #{alert.id} ({alert.severity.value}, {alert.status.value}) on model {alert.model}",
        f"Rule:      {alert.rule}: {ev.get('metric')} {ev.get('op')} {_fmt(ev.get('threshold'))}",
        f"Feature:   {ev.get('feature') or '(model level)'}",
        f"Value:     {_fmt(ev.get('value'))}",
    ]
    if ev.get("reference_value") is not None or ev.get("current_value") is not None:
        lines.append(f"Reference: {_fmt(ev.get('reference_value'))}   current: {_fmt(ev.get('current_value'))}")
    if ev.get("reference"):
        version = f", model version {ev['model_version']}" if ev.get("model_version") else ""
        lines.append(f"Compared with {ev['reference']}{version}")
    lines += [
        f"Opened {alert.opened_at:%Y-%m-%d %H:%M:%S} UTC, last seen {alert.last_seen_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"seen {alert.count} time(s)",
        "",
        "Evidence:",
        json.dumps(ev, indent=2, sort_keys=True, default=str),
        "",
        f"Acknowledge: keel alerts ack {alert.id}    Resolve: keel alerts resolve {alert.id}",
    ]
    message.set_content("\n".join(lines))
    return message


def _evidence_line(alert: Alert) -> str:
    ev = alert.evidence
    parts = [f"{ev.get('metric')}={_fmt(ev.get('value'))} ({ev.get('op')} {_fmt(ev.get('threshold'))})"]
    if ev.get("feature"):
        parts.append(f"feature={ev['feature']}")
    for key in ("reference_value", "current_value", "reference", "model_version"):
        if ev.get(key) is not None:
            parts.append(f"{key}={_fmt(ev[key])}")
    return " ".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
