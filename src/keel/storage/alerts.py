"""Alert rules, channels, alerts and their deliveries.

An alert is one episode of a rule firing for one (model, rule, feature): `record_firing` opens
it or, while it is open or acknowledged, updates it, and claims the right to notify in the same
transaction so two checks cannot both send it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select

from keel.entities import Alert, AlertChannel, AlertDelivery, AlertRule, AlertSeverity, AlertStatus
from keel.errors import ConflictError, NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, utc

__all__ = ["AlertStore"]

r, c, a, d = s.alert_rules, s.alert_channels, s.alerts, s.alert_deliveries

_ACTIVE = (AlertStatus.OPEN.value, AlertStatus.ACKNOWLEDGED.value)


class AlertStore(Transactional):
    # -- rules ---------------------------------------------------------------------------------
    def add_rule(
        self,
        model: str,
        name: str,
        *,
        metric: str,
        op: str,
        threshold: float,
        feature: str | None,
        severity: str,
        cooldown_s: int,
        window: str | None,
        at: datetime,
    ) -> AlertRule:
        values: dict[str, Any] = dict(
            model_name=model,
            name=name,
            metric=metric,
            op=op,
            threshold=threshold,
            feature=feature,
            severity=severity,
            cooldown_s=cooldown_s,
            window=window,
            enabled=1,
            created_at=at,
        )
        with self.begin() as conn:
            if self._rule_row(conn, model, name) is not None:
                raise ConflictError(
                    f"Model {model!r} already has an alert rule {name!r}; remove it first or pick another name"
                )
            conn.execute(r.insert().values(**values))
            rule = _rule(self._rule_row(conn, model, name))  # type: ignore[arg-type]
        return rule

    def rules(self, model: str) -> list[AlertRule]:
        with self.connect() as conn:
            return [_rule(row) for row in conn.execute(select(r).where(r.c.model_name == model).order_by(r.c.id))]

    def remove_rule(self, model: str, name: str) -> None:
        with self.begin() as conn:
            if conn.execute(r.delete().where(r.c.model_name == model, r.c.name == name)).rowcount == 0:
                raise NotFoundError(_no_rule(conn, model, name))

    def set_rule_enabled(self, model: str, name: str, enabled: bool) -> AlertRule:
        with self.begin() as conn:
            done = conn.execute(
                r.update().where(r.c.model_name == model, r.c.name == name).values(enabled=int(enabled))
            )
            if done.rowcount == 0:
                raise NotFoundError(_no_rule(conn, model, name))
            return _rule(self._rule_row(conn, model, name))  # type: ignore[arg-type]

    @staticmethod
    def _rule_row(conn: Connection, model: str, name: str) -> Row[Any] | None:
        return conn.execute(select(r).where(r.c.model_name == model, r.c.name == name)).first()

    # -- channels ------------------------------------------------------------------------------
    def add_channel(self, name: str, kind: str, config: dict[str, Any], *, at: datetime) -> AlertChannel:
        with self.begin() as conn:
            if conn.execute(select(c.c.id).where(c.c.name == name)).first() is not None:
                raise ConflictError(f"An alert channel named {name!r} exists; remove it first or pick another name")
            conn.execute(c.insert().values(name=name, kind=kind, config=config, created_at=at))
            return _channel(conn.execute(select(c).where(c.c.name == name)).one())

    def channels(self) -> list[AlertChannel]:
        with self.connect() as conn:
            return [_channel(row) for row in conn.execute(select(c).order_by(c.c.id))]

    def remove_channel(self, name: str) -> None:
        with self.begin() as conn:
            if conn.execute(c.delete().where(c.c.name == name)).rowcount == 0:
                known = sorted(conn.execute(select(c.c.name)).scalars())
                raise NotFoundError(f"No alert channel named {name!r}; known channels: {', '.join(known) or 'none'}")

    # -- alerts --------------------------------------------------------------------------------
    def record_firing(
        self,
        *,
        model: str,
        rule: str,
        dedup_key: str,
        severity: str,
        title: str,
        evidence: dict[str, Any],
        cooldown_s: int,
        at: datetime,
    ) -> tuple[Alert, bool, bool]:
        """Open an alert or update the active one with this key; return (alert, opened, notify).

        `notify` is True for a new alert, and for an open (not acknowledged) one last notified at
        least `cooldown_s` ago; the notification time is set here, before anything is sent.
        """
        with self.begin() as conn:
            row = conn.execute(
                select(a).where(a.c.dedup_key == dedup_key, a.c.status.in_(_ACTIVE)).order_by(a.c.id.desc()).limit(1)
            ).first()
            if row is None:
                alert_id = conn.execute(
                    a.insert().values(
                        model_name=model,
                        rule_name=rule,
                        dedup_key=dedup_key,
                        status=AlertStatus.OPEN.value,
                        severity=severity,
                        title=title,
                        evidence=evidence,
                        count=1,
                        opened_at=at,
                        last_seen_at=at,
                        last_notified_at=at,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                return self._alert(conn, alert_id), True, True
            last = utc(row.last_notified_at)
            notify = row.status == AlertStatus.OPEN.value and (
                last is None or at - last >= timedelta(seconds=cooldown_s)
            )
            notes = row.evidence.get("notes") if isinstance(row.evidence, dict) else None
            values: dict[str, Any] = dict(
                severity=severity,
                title=title,
                evidence={**evidence, **({"notes": notes} if notes else {})},
                count=row._mapping["count"] + 1,
                last_seen_at=at,
            )
            if notify:
                values["last_notified_at"] = at
            conn.execute(a.update().where(a.c.id == row.id).values(**values))
            return self._alert(conn, row.id), False, notify

    def get_alert(self, alert_id: int) -> Alert:
        with self.connect() as conn:
            return self._alert(conn, alert_id)

    def list_alerts(self, *, model: str | None, statuses: tuple[str, ...] | None) -> list[Alert]:
        q = select(a).order_by(a.c.id.desc())
        if model is not None:
            q = q.where(a.c.model_name == model)
        if statuses is not None:
            q = q.where(a.c.status.in_(statuses))
        with self.connect() as conn:
            return [_alert(row) for row in conn.execute(q)]

    def set_status(self, alert_id: int, status: AlertStatus, *, by: str, note: str, at: datetime) -> Alert:
        """Acknowledge or resolve; doing it again changes nothing; a resolved alert stays resolved."""
        with self.begin() as conn:
            current = self._alert(conn, alert_id)
            if current.status == status:
                return current
            if current.status == AlertStatus.RESOLVED:
                raise ConflictError(f"Alert #{alert_id} is resolved; a new firing of its rule opens a new alert")
            values: dict[str, Any] = {"status": status.value}
            if status == AlertStatus.ACKNOWLEDGED:
                values.update(acked_at=at, acked_by=by)
            else:
                values.update(resolved_at=at, resolved_by=by)
            if note:
                entry = {"status": status.value, "by": by, "at": at.isoformat(), "note": note}
                values["evidence"] = {**current.evidence, "notes": [*current.evidence.get("notes", []), entry]}
            conn.execute(a.update().where(a.c.id == alert_id).values(**values))
            return self._alert(conn, alert_id)

    def _alert(self, conn: Connection, alert_id: int) -> Alert:
        row = conn.execute(select(a).where(a.c.id == alert_id)).first()
        if row is None:
            newest = conn.execute(select(func.max(a.c.id))).scalar()
            hint = f"alert ids run up to #{newest}" if newest else "there are no alerts yet"
            raise NotFoundError(f"No alert #{alert_id}; {hint}")
        return _alert(row)

    # -- deliveries ----------------------------------------------------------------------------
    def record_delivery(
        self, alert_id: int, channel: str, *, status: str, attempts: int, error: str | None, at: datetime
    ) -> AlertDelivery:
        with self.begin() as conn:
            row_id = conn.execute(
                d.insert().values(
                    alert_id=alert_id, channel=channel, status=status, attempts=attempts, error=error, at=at
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return _delivery(conn.execute(select(d).where(d.c.id == row_id)).one())

    def deliveries(self, alert_id: int) -> list[AlertDelivery]:
        with self.connect() as conn:
            self._alert(conn, alert_id)  # NotFoundError for an unknown alert
            return [_delivery(row) for row in conn.execute(select(d).where(d.c.alert_id == alert_id).order_by(d.c.id))]


def _no_rule(conn: Connection, model: str, name: str) -> str:
    known = sorted(conn.execute(select(r.c.name).where(r.c.model_name == model)).scalars())
    return f"Model {model!r} has no alert rule {name!r}; its rules: {', '.join(known) or 'none'}"


def _rule(row: Row[Any]) -> AlertRule:
    return AlertRule(
        id=row.id,
        model=row.model_name,
        name=row.name,
        metric=row.metric,
        op=row.op,
        threshold=float(row.threshold),
        feature=row.feature,
        severity=AlertSeverity(row.severity),
        cooldown_s=int(row.cooldown_s),
        window=row.window,
        enabled=bool(row.enabled),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
    )


def _channel(row: Row[Any]) -> AlertChannel:
    created_at = utc(row.created_at)
    assert created_at is not None
    return AlertChannel(id=row.id, name=row.name, kind=row.kind, config=dict(row.config), created_at=created_at)


def _alert(row: Row[Any]) -> Alert:
    return Alert(
        id=row.id,
        model=row.model_name,
        rule=row.rule_name,
        dedup_key=row.dedup_key,
        status=AlertStatus(row.status),
        severity=AlertSeverity(row.severity),
        title=row.title,
        evidence=dict(row.evidence),
        count=int(row._mapping["count"]),
        opened_at=utc(row.opened_at),  # type: ignore[arg-type]
        last_seen_at=utc(row.last_seen_at),  # type: ignore[arg-type]
        last_notified_at=utc(row.last_notified_at),
        acked_at=utc(row.acked_at),
        acked_by=row.acked_by,
        resolved_at=utc(row.resolved_at),
        resolved_by=row.resolved_by,
    )


def _delivery(row: Row[Any]) -> AlertDelivery:
    return AlertDelivery(
        id=row.id,
        alert_id=row.alert_id,
        channel=row.channel,
        status=row.status,
        attempts=int(row.attempts),
        error=row.error,
        at=utc(row.at),  # type: ignore[arg-type]
    )
