"""Alert rules over monitor values, deduplicated alerts with evidence, and their notification.

A monitor check yields values `(feature, metric, value)` (feature '' for model-level values).
`Alerts.evaluate` compares them with each enabled rule of the model. Each (rule, feature) that
fires is one alert while it stays open or acknowledged: later firings update its evidence and
count, and re-notify only after the rule's cooldown (never while acknowledged). A resolved alert
is closed; the next firing opens a new one. Every channel is tried with retries and backoff,
every outcome is stored, and no channel failure ever raises out of `evaluate`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from keel.entities import Alert, AlertChannel, AlertDelivery, AlertRule, AlertStatus
from keel.errors import ConflictError, InvalidInputError
from keel.monitoring import channels as _channels
from keel.monitoring.alert_rules import (
    DEFAULT_RULES,
    DERIVED,
    FAILING_RULE,
    MIN_LABELLED_ROWS,
    OPS,
    PERFORMANCE_METRICS,
    DefaultRule,
    check_rule,
)
from keel.refs import check_name

if TYPE_CHECKING:
    from keel.storage import MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["Alerts", "RETRY_DELAYS_S"]

RETRY_DELAYS_S = (0.5, 1.0, 2.0)  # pauses between attempts: up to four attempts per channel

_STATUS_FILTERS: dict[str, tuple[str, ...] | None] = {
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "active": ("open", "acknowledged"),
    "all": None,
}


class Alerts:
    """Alert rules, channels and alerts of one workspace: `ws.monitoring.alerts`.

    `sleep` is called between delivery attempts and `clock` gives the current UTC time; tests
    pass fakes. Example:

        >>> alerts.add_rule("churn", "auc-low", metric="roc_auc", op="<", threshold=0.75)  # doctest: +SKIP
        >>> alerts.add_channel("ops", "webhook", url="https://hooks.slack.com/...", format="slack")  # doctest: +SKIP
    """

    def __init__(
        self,
        meta: MetadataStore,
        *,
        author: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = meta.alerts
        self._author = author
        self._sleep = sleep
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- rules ---------------------------------------------------------------------------------
    def add_rule(
        self,
        model: str,
        name: str,
        *,
        metric: str,
        op: str,
        threshold: float,
        feature: str | None = None,
        severity: str = "warning",
        cooldown_s: int = 3600,
        window: str | None = None,
    ) -> AlertRule:
        """Add a rule firing when `metric op threshold`; feature None means any feature (or the model).

        `window` is a label for people ('1000 rows', '1h'): the monitor chooses the window.
        Raises InvalidInputError naming the bad field, ConflictError if the name is taken.
        """
        check_name(model, what="model name")
        check_name(name, what="rule name")
        feature = check_rule(metric, op, threshold, feature, severity, cooldown_s, window)
        rule = self._store.add_rule(
            model,
            name,
            metric=metric,
            op=op,
            threshold=float(threshold),
            feature=feature,
            severity=str(severity),
            cooldown_s=cooldown_s,
            window=window,
            at=self._clock(),
        )
        logger.info("alert rule %s added to %s: %s (%s)", name, model, rule.condition, rule.severity.value)
        return rule

    def rules(self, model: str) -> list[AlertRule]:
        """The alert rules of `model`, oldest first (disabled ones included)."""
        return self._store.rules(model)

    def remove_rule(self, model: str, name: str) -> None:
        """Delete a rule (its alerts stay). NotFoundError if `model` has no such rule."""
        self._store.remove_rule(model, name)
        logger.info("alert rule %s removed from %s", name, model)

    def disable_rule(self, model: str, name: str) -> AlertRule:
        """Stop a rule firing without deleting it (a disabled default is not re-added)."""
        return self._store.set_rule_enabled(model, name, False)

    def enable_rule(self, model: str, name: str) -> AlertRule:
        return self._store.set_rule_enabled(model, name, True)

    def ensure_default_rules(self, model: str, *, output_kind: str) -> list[AlertRule]:
        """Add the default rules `model` does not have yet (by name); return those added.

        For every model: `feature-drift` drift >= 1 on any feature (PSI >= 0.2, Wasserstein >= 0.1 sd or JS >= 0.1), `multivariate-drift`
        multivariate_auc >= 0.7, `prediction-drift` prediction_psi >= 0.2, `missing-values`
        missing_rate_increase > 0.1 (the window's missing rate minus the reference's), `out-of-range` out_of_range_rate > 0.05, `unseen-categories`
        unseen_category_rate > 0.05 (warnings, re-notified every 6 h), and `schema-violations`
        schema_violation_rate > 0.01 (critical, every hour). Classifiers (`output_kind`
        'classification') add `auc-drop` roc_auc_drop > 0.05 (critical) and `accuracy-drop`
        accuracy_drop > 0.05 (warning); regressors add `rmse-increase` rmse_increase > 0.1
        (RMSE 10 % above the reference's, critical). `retraining-failed` (critical) fires when an
        automated retraining of the model fails, `monitor-failing` (critical, every 6 h) while its
        monitor checks fail (see `monitor_failing`). Language models (`output_kind` 'lm') add
        `prompt-drift` text_drift >= 1 and `prompt-perplexity` prompt_perplexity_ratio > 2 (warnings;
        see keel.workspace.genai_monitor). Idempotent; to silence a default, disable
        it rather than removing it, or the next call adds it again.
        """
        have = {r.name for r in self.rules(model)}
        added = []
        for d in DEFAULT_RULES:
            if d.name in have or (d.outputs and output_kind not in d.outputs):
                continue
            added.append(self._add_default(model, d))
        return added

    def _add_default(self, model: str, d: DefaultRule) -> AlertRule:
        return self.add_rule(
            model, d.name, metric=d.metric, op=d.op, threshold=d.threshold, severity=d.severity, cooldown_s=d.cooldown_s
        )

    def monitor_failing(self, model: str, error: str, *, traceback: Iterable[str] = ()) -> Alert | None:
        """Raise `model`'s one 'monitor-failing' alert, or update it while it is active (count,
        last seen, latest cause; notified again only after its rule's cooldown): its opened time
        is when the checks began to fail. The rule is added if the model lacks it; None when it
        is disabled."""
        if FAILING_RULE not in {r.name for r in self.rules(model)}:
            d = next(d for d in DEFAULT_RULES if d.name == FAILING_RULE)
            try:
                self._add_default(model, d)
            except ConflictError:  # added meanwhile by another check
                pass
        fired = self.evaluate(
            model, [("", "monitor_failing", 1.0)], context={"error": error[:2000], "traceback": list(traceback)}
        )
        return next((a for a in fired if a.rule == FAILING_RULE), None)

    def monitor_recovered(self, model: str, *, run_id: int) -> list[Alert]:
        """Resolve `model`'s active 'monitor-failing' alert, noting the check that succeeded."""
        return [self.resolve(a.id, note=f"monitor check #{run_id} succeeded") for a in self._failing(model)]

    def failing(self, model: str) -> Alert | None:
        """`model`'s active 'monitor-failing' alert, or None."""
        return next(iter(self._failing(model)), None)

    def _failing(self, model: str) -> list[Alert]:
        return [
            a
            for a in self._store.list_alerts(model=model, statuses=_STATUS_FILTERS["active"])
            if a.rule == FAILING_RULE
        ]

    # -- channels ------------------------------------------------------------------------------
    def add_channel(self, name: str, kind: str, **config: Any) -> AlertChannel:
        """Add a channel every alert is sent to: 'webhook', 'email' or 'log' (see keel.monitoring.channels).

        webhook: url, format='json'|'slack', headers, timeout_s. email: host, port, sender, to,
        username, password_env (the NAME of the variable holding the password), starttls, ssl.
        """
        check_name(name, what="channel name")
        channel = self._store.add_channel(name, kind, _channels.check_config(kind, config), at=self._clock())
        logger.info("alert channel %s (%s) added", name, kind)
        return channel

    def channels(self) -> list[AlertChannel]:
        return self._store.channels()

    def remove_channel(self, name: str) -> None:
        self._store.remove_channel(name)
        logger.info("alert channel %s removed", name)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, model: str, values: Iterable[tuple[str, str, float]], *, context: dict[str, Any]) -> list[Alert]:
        """Check monitor values against `model`'s enabled rules; open, update and notify alerts.

        `context` adds to the evidence: 'reference', 'model_version', 'window', 'run_id', and
        'features' {feature: statistics}. NaN never fires. Returns the alerts opened or updated.
        """
        table: dict[tuple[str, str], float] = {}
        for feature, metric, value in values:
            if value is None:
                continue
            number = float(value)
            if not math.isnan(number):
                table[(feature, metric)] = number
        rules = [r for r in self.rules(model) if r.enabled]
        labelled = table.get(("", "labelled_rows"))
        firing: list[tuple[AlertRule, str, float]] = []
        for rule in rules:
            if rule.metric in PERFORMANCE_METRICS and labelled is not None and labelled < MIN_LABELLED_ROWS:
                continue
            for (feature, metric), value in table.items():
                if metric != rule.metric or (rule.feature is not None and rule.feature != feature):
                    continue
                if OPS[rule.op](value, rule.threshold):
                    firing.append((rule, feature, value))
        if not firing:
            return []
        channels = self.channels()
        result = []
        for rule, feature, value in firing:
            features_firing = sorted(f for r, f, _ in firing if r.id == rule.id and f)
            evidence = _evidence(rule, feature, value, table, context, features_firing)
            alert, opened, notify = self._store.record_firing(
                model=model,
                rule=rule.name,
                dedup_key=dedup_key(model, rule.name, feature),
                severity=rule.severity.value,
                title=_title(model, rule, feature, value, evidence),
                evidence=evidence,
                cooldown_s=rule.cooldown_s,
                at=self._clock(),
            )
            if opened:
                logger.info("alert #%d opened: %s", alert.id, alert.title)
            if notify:
                for channel in channels:
                    self._deliver(channel, alert)
            result.append(alert)
        return result

    def _deliver(self, channel: AlertChannel, alert: Alert) -> AlertDelivery:
        errors: list[str] = []
        attempts = 0
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None), start=1):
            attempts = attempt
            try:
                _channels.send(channel, alert)
            except _channels.DeliveryError as exc:
                errors.append(f"attempt {attempt}: {exc}")
                if not exc.retryable:
                    break
            except Exception as exc:  # a broken channel must never stop the monitor
                errors.append(f"attempt {attempt}: {exc!r}")
            else:
                return self._store.record_delivery(
                    alert.id,
                    channel.name,
                    status="delivered",
                    attempts=attempts,
                    error="; ".join(errors) or None,
                    at=self._clock(),
                )
            if delay is not None:
                self._sleep(delay)
        logger.warning(
            "alert #%d: channel %s failed after %d attempt(s): %s", alert.id, channel.name, attempts, errors[-1]
        )
        return self._store.record_delivery(
            alert.id, channel.name, status="failed", attempts=attempts, error="; ".join(errors), at=self._clock()
        )

    # -- alerts --------------------------------------------------------------------------------
    def get(self, alert_id: int) -> Alert:
        """One alert; NotFoundError if there is none with this id."""
        return self._store.get_alert(alert_id)

    def ack(self, alert_id: int, *, by: str | None = None, note: str = "") -> Alert:
        """Acknowledge an alert: someone is on it, so it is not notified again. Idempotent;
        ConflictError if it is resolved."""
        alert = self._store.set_status(
            alert_id, AlertStatus.ACKNOWLEDGED, by=by or self._author, note=note, at=self._clock()
        )
        logger.info("alert #%d acknowledged by %s", alert_id, alert.acked_by)
        return alert

    def resolve(self, alert_id: int, *, by: str | None = None, note: str = "") -> Alert:
        """Close an alert; the next firing of its rule opens a new one. Idempotent."""
        alert = self._store.set_status(
            alert_id, AlertStatus.RESOLVED, by=by or self._author, note=note, at=self._clock()
        )
        logger.info("alert #%d resolved by %s", alert_id, alert.resolved_by)
        return alert

    def deliveries(self, alert_id: int) -> list[AlertDelivery]:
        """Every notification of the alert, per channel: delivered or failed, attempts, errors."""
        return self._store.deliveries(alert_id)

    # Last in the class: below it, `list` in an annotation would name this method.
    def list(self, model: str | None = None, status: str | AlertStatus | None = None) -> list[Alert]:
        """Alerts, newest first. `status`: 'open', 'acknowledged', 'resolved', 'active' (open or
        acknowledged) or 'all'; None is all."""
        key = "all" if status is None else str(status)
        if key not in _STATUS_FILTERS:
            raise InvalidInputError(f"status: use one of {', '.join(_STATUS_FILTERS)}, got {status!r}")
        return self._store.list_alerts(model=model, statuses=_STATUS_FILTERS[key])


def dedup_key(model: str, rule: str, feature: str) -> str:
    """One alert at a time per (model, rule, feature); keys fit the 400-character column."""
    key = f"{model}|{rule}|{feature}"
    return key if len(key) <= 400 else key[:335] + "#" + hashlib.sha256(key.encode()).hexdigest()


def _title(model: str, rule: AlertRule, feature: str, value: float, evidence: dict[str, Any]) -> str:
    reasons = (evidence.get("statistics") or {}).get("reasons")
    if rule.metric == "drift" and feature and reasons:
        return f"{model}: {feature} drifted ({'; '.join(str(r) for r in reasons)})"
    if rule.metric == "retraining_failed":
        return f"{model}: retraining failed: {str(evidence.get('error') or 'see the evidence')[:300]}"
    if rule.metric == "causal_effect_drift":
        old, new = (
            f"{v:.4g}" if isinstance(v, (int, float)) else "?" for v in (evidence.get("previous"), evidence.get("new"))
        )
        return f"{evidence.get('study') or model}: causal effect ({feature}) drifted from {old} to {new}"
    if rule.metric == "edge_build_failed":
        return f"{evidence.get('model_version') or model}: edge build {feature} failed: {evidence.get('reason')}"[:500]
    if rule.metric == "text_drift" and isinstance(evidence.get("text"), dict):
        text = evidence["text"]
        return f"{model}: prompts drifted from {text.get('corpus')}: {text.get('reason')}"[:500]
    if rule.metric == "monitor_failing":
        return f"{model}: monitor failing: {str(evidence.get('error') or 'see the evidence')[:300]}"
    what = f"{rule.metric} of {feature}" if feature else rule.metric
    return f"{model}: {what} is {value:.4g} ({rule.op} {rule.threshold:g})"


def _evidence(
    rule: AlertRule,
    feature: str,
    value: float,
    table: dict[tuple[str, str], float],
    context: dict[str, Any],
    features_firing: list[str],
) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "rule": rule.name,
        "metric": rule.metric,
        "feature": feature or None,
        "op": rule.op,
        "threshold": rule.threshold,
        "value": value,
    }
    if rule.window:
        evidence["rule_window"] = rule.window
    stats = (context.get("features") or {}).get(feature) if feature else None
    if stats:
        evidence["statistics"] = stats
    base = DERIVED.get(rule.metric)
    current = table.get(("", base)) if base else None
    if current is not None:
        evidence["current_value"] = current
        reference = current + value if rule.metric.endswith("_drop") else current / (1.0 + value)
        evidence["reference_value"] = round(reference, 12)  # 0.8, not 0.7999999999999999
    if rule.metric in PERFORMANCE_METRICS and ("", "labelled_rows") in table:
        evidence["labelled_rows"] = table[("", "labelled_rows")]
    related = {m: v for (f, m), v in table.items() if f == feature and m != rule.metric}
    if related:
        evidence["related"] = related
    if rule.feature is None and feature and len(features_firing) > 1:
        evidence["features_firing"] = features_firing
    for key, item in context.items():
        if key != "features":
            evidence.setdefault(key, item)
    return _jsonable(evidence)


def _jsonable(value: Any) -> Any:
    """Evidence as plain JSON (stores reject NaN and numpy types): non-finite numbers as strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else (None if math.isnan(value) else str(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)
