"""One tick of the background loop of `keel worker` and `keel serve` (`ws.tick()`): run the
monitors that are due, queue the retraining cycles that are due (one active job per model), judge
challengers in shadow mode that have enough labelled live rows, start queued jobs."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keel.workspace.payloads import RetrainPayload

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

__all__ = ["SCHEDULER_LEASE", "tick"]

# Several processes may share the store (keel serve --workers N, servers behind one address, keel
# worker): each ticks, and this lease makes the checks of due monitors, the queueing of due
# retraining and the shadow verdicts run in one of them at a time, so once; queued jobs are
# claimed atomically by whichever process has a free slot.
SCHEDULER_LEASE = "scheduler"


def tick(ws: Workspace, *, slots: int = 2, at: datetime | None = None) -> dict[str, Any]:
    """Returns what happened: monitor results, jobs queued and jobs started. `at` (default: now)
    is the time the schedules are read at."""
    out: dict[str, Any] = {"monitors": [], "queued": [], "started": [], "shadow_decisions": []}
    try:
        with ws._meta.leases.held(SCHEDULER_LEASE) as held:
            if held:  # else another process sharing the store ticks right now: what is due is its work
                _scheduled(ws, at, out)
    except Exception:  # the loop must survive a broken store
        logger.exception("taking the scheduler lease failed")
    try:
        out["started"] = ws.jobs.dispatch(slots=slots)
    except Exception:
        logger.exception("starting jobs failed")
    return out


def _scheduled(ws: Workspace, at: datetime | None, out: dict[str, Any]) -> None:
    """The once-per-workspace part: due monitors, due retraining, shadow verdicts."""
    try:
        out["monitors"] = ws.monitoring.run_due(at)
    except Exception:  # the loop must survive a broken store or monitor
        logger.exception("running due monitors failed")
    try:
        for name, due in ws.retraining.due(at):
            payload = RetrainPayload(name, trigger=due.trigger, detail=due.detail)
            job, created = ws.jobs.enqueue(payload.kind, payload.to_dict(), dedup_key=payload.dedup_key)
            if created:
                out["queued"].append(job.id)
                logger.info("retraining %s queued as job %d (%s)", name, job.id, due.trigger)
    except Exception:
        logger.exception("queueing due retraining failed")
    try:
        out["shadow_decisions"] = ws.retraining.judge_shadows()
    except Exception:
        logger.exception("judging shadow challengers failed")
