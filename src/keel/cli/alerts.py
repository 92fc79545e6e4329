"""`keel alerts`: list, show, acknowledge and resolve alerts; manage rules and channels."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import typer

from keel.cli._common import JSON_OPTION, escape, open_workspace, out, print_json, styled, table, to_jsonable, when
from keel.entities import Alert, AlertChannel, AlertRule

if TYPE_CHECKING:
    from keel.workspace.facade import Alerts, Workspace  # Alerts: the type of ws.monitoring.alerts

app = typer.Typer(
    help="Alerts raised by monitors: list, show, ack, resolve; alert rules and channels.", no_args_is_help=True
)

_STATUSES = ("active", "open", "acknowledged", "resolved", "all")
_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
ALERT_ID = typer.Argument(..., metavar="ID", min=1, help="The alert id (see keel alerts list).")


def alerts_of(ws: Workspace) -> Alerts:
    """The workspace's alerts (`ws.monitoring.alerts`)."""
    return ws.monitoring.alerts


@app.command("list")
def list_(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model's alerts."),
    status: str = typer.Option(
        "active", "--status", "-s", help="active (open or acknowledged), open, acknowledged, resolved or all."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Alerts, newest first: by default those not resolved yet."""
    if status not in _STATUSES:
        raise typer.BadParameter(f"{status!r} is not one of {', '.join(_STATUSES)}", param_hint="'--status'")
    found = alerts_of(open_workspace(ctx)).list(model=model, status=status)
    if as_json:
        print_json(found)
        return
    if not found:
        which = "" if status in ("all", "active") else f"{status} "
        out().print(f"No {which}alerts" + (f" for {escape(model)}" if model else "") + ".")
        return
    t = table("id>", "severity", "status", "model", "title", "count>", "last seen")
    for a in found:
        t.add_row(
            f"#{a.id}",
            styled(a.severity.value, _SEVERITY_STYLE.get(a.severity.value, "")),
            a.status.value,
            a.model,
            a.title,
            str(a.count),
            when(a.last_seen_at, short=True),
        )
    out().print(t)


@app.command("show")
def show(ctx: typer.Context, alert_id: int = ALERT_ID, as_json: bool = JSON_OPTION) -> None:
    """One alert: its evidence and every delivery attempt."""
    alerts = alerts_of(open_workspace(ctx))
    alert = alerts.get(alert_id)
    deliveries = alerts.deliveries(alert_id)
    if as_json:
        print_json({**to_jsonable(alert), "deliveries": deliveries})
        return
    console = out()
    _print_alert(alert)
    console.print("  evidence", markup=False)
    for line in json.dumps(alert.evidence, indent=2, sort_keys=True, default=str).splitlines():
        console.print(f"    {line}", markup=False)
    if deliveries:
        t = table("channel", "status", "attempts>", "at", "error")
        for d in deliveries:
            last_error = (d.error or "").rsplit("; ", 1)[-1]  # the whole history is in --json
            t.add_row(d.channel, d.status, str(d.attempts), when(d.at, short=True), last_error[:100])
        console.print(t)


@app.command("ack")
def ack(
    ctx: typer.Context,
    alert_id: int = ALERT_ID,
    note: str = typer.Option("", "--note", "-n", help="Why, or what is being done; kept with the alert."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Acknowledge an alert: someone is on it, so it is not notified again."""
    alert = alerts_of(open_workspace(ctx)).ack(alert_id, note=note)
    _done(alert, as_json=as_json)


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    alert_id: int = ALERT_ID,
    note: str = typer.Option("", "--note", "-n", help="What fixed it; kept with the alert."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Resolve an alert: it is closed, and the next firing of its rule opens a new one."""
    alert = alerts_of(open_workspace(ctx)).resolve(alert_id, note=note)
    _done(alert, as_json=as_json)


def _done(alert: Alert, *, as_json: bool) -> None:
    if as_json:
        print_json(alert)
        return
    by = alert.resolved_by if alert.status.value == "resolved" else alert.acked_by
    out().print(f"Alert #{alert.id} {alert.status.value} by {escape(by or '-')}: {escape(alert.title)}")


def _print_alert(alert: Alert) -> None:
    console = out()
    console.print(
        f"[bold]Alert #{alert.id}[/] [{_SEVERITY_STYLE.get(alert.severity.value, '')}]{alert.severity.value}[/] "
        f"{alert.status.value}: {escape(alert.title)}"
    )
    lines = [
        ("model", alert.model),
        ("rule", alert.rule),
        ("seen", f"{alert.count} time(s), {when(alert.opened_at)} .. {when(alert.last_seen_at)}"),
        ("notified", when(alert.last_notified_at)),
        ("acked", f"{when(alert.acked_at)} by {alert.acked_by}" if alert.acked_at else ""),
        ("resolved", f"{when(alert.resolved_at)} by {alert.resolved_by}" if alert.resolved_at else ""),
    ]
    for label, value in lines:
        if value:
            console.print(f"  {label:<10}{value}", markup=False)


# -- rules ---------------------------------------------------------------------------------
@app.command("rules")
def rules(ctx: typer.Context, name: str = typer.Argument(..., help="The model."), as_json: bool = JSON_OPTION) -> None:
    """A model's alert rules."""
    found = alerts_of(open_workspace(ctx)).rules(name)
    if as_json:
        print_json(found)
        return
    if not found:
        out().print(
            f"No alert rules for {escape(name)}: 'keel monitor watch {escape(name)}' adds the defaults, "
            "'keel alerts rule-add' your own."
        )
        return
    t = table("rule", "condition", "severity", "cooldown>", "window", "enabled")
    for r in found:
        t.add_row(
            r.name,
            r.condition,
            r.severity.value,
            _duration(r.cooldown_s),
            r.window or "-",
            "yes" if r.enabled else "no",
        )
    out().print(t)


@app.command("rule-add")
def rule_add(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model."),
    name: str = typer.Argument(..., help="A name for the rule."),
    metric: str = typer.Option(..., "--metric", help="e.g. psi, roc_auc_drop, schema_violation_rate."),
    op: str = typer.Option(..., "--op", help="One of >, >=, <, <=."),
    threshold: float = typer.Option(..., "--threshold"),
    feature: str | None = typer.Option(None, "--feature", help="Only this feature (default: any)."),
    severity: str = typer.Option("warning", "--severity", help="info, warning or critical."),
    cooldown_s: int = typer.Option(3600, "--cooldown-s", help="Notify an open alert again after this long."),
    window: str | None = typer.Option(None, "--window", help="A label for the window, e.g. '1000 rows'."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add an alert rule to a model."""
    rule = alerts_of(open_workspace(ctx)).add_rule(
        model,
        name,
        metric=metric,
        op=op,
        threshold=threshold,
        feature=feature,
        severity=severity,
        cooldown_s=cooldown_s,
        window=window,
    )
    _rule_done(rule, as_json=as_json)


@app.command("rule-remove")
def rule_remove(ctx: typer.Context, model: str = typer.Argument(...), name: str = typer.Argument(...)) -> None:
    """Delete an alert rule (its alerts stay). Defaults come back with 'keel monitor watch': disable them instead."""
    alerts_of(open_workspace(ctx)).remove_rule(model, name)
    out().print(f"Removed rule {escape(name)} of {escape(model)}.")


@app.command("rule-disable")
def rule_disable(
    ctx: typer.Context, model: str = typer.Argument(...), name: str = typer.Argument(...), as_json: bool = JSON_OPTION
) -> None:
    """Stop a rule firing, keeping it."""
    _rule_done(alerts_of(open_workspace(ctx)).disable_rule(model, name), as_json=as_json)


@app.command("rule-enable")
def rule_enable(
    ctx: typer.Context, model: str = typer.Argument(...), name: str = typer.Argument(...), as_json: bool = JSON_OPTION
) -> None:
    """Let a disabled rule fire again."""
    _rule_done(alerts_of(open_workspace(ctx)).enable_rule(model, name), as_json=as_json)


def _rule_done(rule: AlertRule, *, as_json: bool) -> None:
    if as_json:
        print_json(rule)
        return
    state = "" if rule.enabled else " (disabled)"
    out().print(
        f"Rule {escape(rule.name)} of {escape(rule.model)}: {escape(rule.condition)}, {rule.severity.value}{state}."
    )


# -- channels ------------------------------------------------------------------------------
@app.command("channels")
def channels(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Where alerts are sent."""
    found = alerts_of(open_workspace(ctx)).channels()
    if as_json:
        print_json(found)
        return
    if not found:
        out().print("No alert channels: alerts are stored but not sent. Add one with 'keel alerts channel-add'.")
        return
    t = table("channel", "kind", "settings")
    for c in found:
        t.add_row(c.name, c.kind, _settings(c))
    out().print(t)


@app.command("channel-add")
def channel_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the channel."),
    kind: str = typer.Option(..., "--kind", help="webhook, email or log."),
    url: str | None = typer.Option(None, "--url", help="webhook: the URL to POST to."),
    fmt: str | None = typer.Option(None, "--format", help="webhook: json (default) or slack."),
    header: list[str] | None = typer.Option(None, "--header", help="webhook: NAME=VALUE, repeatable."),
    host: str | None = typer.Option(None, "--host", help="email: the SMTP server."),
    port: int | None = typer.Option(None, "--port", help="email: the SMTP port (default 25)."),
    sender: str | None = typer.Option(None, "--sender", help="email: the From address."),
    to: list[str] | None = typer.Option(None, "--to", help="email: a recipient, repeatable (or comma-separated)."),
    username: str | None = typer.Option(None, "--username", help="email: the SMTP login."),
    password_env: str | None = typer.Option(
        None, "--password-env", help="email: the environment variable holding the password."
    ),
    starttls: bool = typer.Option(False, "--starttls", help="email: upgrade the connection with STARTTLS."),
    timeout_s: float | None = typer.Option(None, "--timeout-s", help="Seconds to wait for the server."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a channel every alert is sent to."""
    given: dict[str, Any] = {
        "url": url,
        "format": fmt,
        "host": host,
        "port": port,
        "sender": sender,
        "username": username,
        "password_env": password_env,
        "timeout_s": timeout_s,
    }
    config = {k: v for k, v in given.items() if v is not None}
    if header:
        config["headers"] = dict(_header(h) for h in header)
    if to:
        config["to"] = [t.strip() for item in to for t in item.split(",") if t.strip()]
    if starttls:
        config["starttls"] = True
    channel = alerts_of(open_workspace(ctx)).add_channel(name, kind, **config)
    if as_json:
        print_json(channel)
        return
    out().print(f"Added {channel.kind} channel {escape(channel.name)}: {escape(_settings(channel))}")


def _header(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="'--header'")
    return key.strip(), value


@app.command("channel-remove")
def channel_remove(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Stop sending alerts to a channel."""
    alerts_of(open_workspace(ctx)).remove_channel(name)
    out().print(f"Removed channel {escape(name)}.")


def _settings(channel: AlertChannel) -> str:
    cfg = channel.config
    if channel.kind == "webhook":
        # Webhook URLs often carry their secret in the path (Slack's do): show only the host.
        shown = re.sub(r"^(https?://[^/]+)/.+$", r"\1/...", str(cfg.get("url", "")))
        return f"{shown} ({cfg.get('format', 'json')})"
    if channel.kind == "email":
        login = f", login {cfg['username']}" if cfg.get("username") else ""
        return f"{cfg.get('host')}:{cfg.get('port')} from {cfg.get('sender')} to {', '.join(cfg.get('to', []))}{login}"
    return "the server log (logger keel.alerts)"


def _duration(seconds: int) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
