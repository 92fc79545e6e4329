"""A model's monitoring health in one word, for the dashboard's pill, the CLI and the API.

The state reads only the checks of the version the monitor watches now: after a promotion (or a
rollback) the last check of the previous champion says nothing about the new one, so until the new
champion has a check of its own the state is `pending`, not the old check's drift.

    unwatched   no monitor and no check
    pending     watched, but the version serving now has no check yet (the newest was of another)
    ok          the newest check of the version serving now found no drift, and no alert is active
    drift       that check found drift (no alert rule fired)
    alert       an alert is active (whatever the checks say: an alert is acted on, not hidden)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keel.entities import Alert, MonitorRun

__all__ = ["Health", "health_of"]


@dataclass(frozen=True)
class Health:
    state: str
    alerts: int  # active alerts
    critical: int  # of which critical
    drifted: tuple[str, ...]  # features the newest check of the serving version found drifted
    last: MonitorRun | None  # the newest check of the version serving now
    version: int | None  # the version the monitor watches now
    superseded: MonitorRun | None = None  # the newest check, when it was of another version


def health_of(
    name: str, newest: Sequence[MonitorRun], active: Sequence[Alert], *, watched: bool, version: int | None
) -> Health:
    """`newest`: the model's newest check (or none), marked `superseded_by` as Monitoring.runs marks
    it; `active`: the model's active alerts."""
    check = newest[0] if newest else None
    superseded = check if check is not None and check.superseded_by is not None else None
    last = None if superseded is not None else check
    drifted = tuple(last.summary.get("drifted_features", [])) if last is not None else ()
    if active:
        state = "alert"
    elif drifted:
        state = "drift"
    elif last is not None:
        state = "ok"
    elif watched or superseded is not None:
        state = "pending"
    else:
        state = "unwatched"
    critical = sum(a.severity.value == "critical" for a in active)
    return Health(state, len(active), critical, drifted, last, version, superseded)
