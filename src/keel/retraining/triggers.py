"""When should a model retrain? Pure decisions from the project, the time and what happened.

A project names its triggers: `alert` (an active alert of one of `alert_rules` was seen after the
last cycle started), `new_data` (the dataset has a version newer than the one the last cycle
trained on), `schedule` (a cron time passed since the last cycle) and `manual` (always allowed,
never automatic). Debouncing: no automatic cycle starts within `debounce_s` of the previous one,
so a burst of alerts starts one retraining, and the next trigger after the quiet period starts the
next. Cool-down: no automatic cycle starts within `cooldown_s` of the last promotion in the
model's timeline (promoted, approved, rolled back), and an alert counts only if it was seen after
the champion last moved, by any path (so it was raised by the new champion's own checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keel.entities import Alert, RetrainDecision
from keel.retraining.project import Project

__all__ = ["Due", "due", "AUTOMATIC", "CYCLE_TRIGGERS", "PROMOTIONS"]

AUTOMATIC = ("alert", "new_data", "schedule")
CYCLE_TRIGGERS = ("manual", "alert", "new_data", "schedule", "tune")  # decisions that are training cycles
PROMOTIONS = ("promoted", "approved", "rolled_back")  # outcomes that moved the champion: the cool-down's start


@dataclass(frozen=True)
class Due:
    trigger: str
    detail: dict[str, Any] = field(default_factory=dict)


def due(
    project: Project,
    *,
    at: datetime,
    last_cycle: RetrainDecision | None,
    alerts: Iterable[Alert],
    latest_dataset: str | None,
    created_at: datetime | None = None,
    promoted_at: datetime | None = None,
    champion_moved_at: datetime | None = None,
) -> Due | None:
    """The trigger that starts a cycle of `project` now, or None.

    `last_cycle` is the newest training decision (any outcome); `alerts` the model's active
    alerts; `latest_dataset` the ref of the dataset's newest version; `created_at` when the
    project was first stored (the start of its schedule when it never ran); `promoted_at` the time
    of the newest promotion decision; `champion_moved_at` when the champion alias last moved.
    """
    policy = project.retraining
    since = last_cycle.at if last_cycle is not None else None
    if since is not None and (at - since).total_seconds() < policy.debounce_s:
        return None
    if promoted_at is not None and (at - promoted_at).total_seconds() < policy.cooldown_s:
        return None
    if "alert" in policy.triggers:
        seen_after = max((t for t in (since, champion_moved_at) if t is not None), default=None)
        firing = sorted(
            (a for a in alerts if a.rule in policy.alert_rules and (seen_after is None or a.last_seen_at > seen_after)),
            key=lambda a: a.id,
        )
        if firing:
            return Due(
                "alert",
                {"alerts": [a.id for a in firing], "rules": sorted({a.rule for a in firing}), "title": firing[0].title},
            )
    if "new_data" in policy.triggers and latest_dataset is not None and last_cycle is not None:
        trained_on = (last_cycle.evidence.get("data") or {}).get("dataset")
        base = last_cycle.evidence.get("data_base") or trained_on
        if base is not None and latest_dataset != base and _newer(latest_dataset, base):
            return Due("new_data", {"dataset": latest_dataset, "previous": base})
    if "schedule" in policy.triggers and policy.schedule:
        from croniter import croniter

        start = since or created_at
        if start is not None:
            slot = croniter(policy.schedule, at).get_prev(datetime)
            if slot > start:
                return Due("schedule", {"cron": policy.schedule, "slot": slot.isoformat()})
    return None


def _newer(ref: str, base: str) -> bool:
    """'credit@4' is newer than 'credit@3'; refs of another dataset never compare as newer."""
    name, _, version = ref.partition("@")
    base_name, _, base_version = base.partition("@")
    if name != base_name:
        return False
    try:
        return int(version) > int(base_version)
    except ValueError:
        return False
