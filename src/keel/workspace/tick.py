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

__all__ = ["tick"]


def tick(ws: Workspace, *, slots: int = 2, at: datetime | None = None) -> dict[str, Any]:
    """Returns what happened: monitor results, jobs queued and jobs started. `at` (default: now)
    is the time the schedules are read at."""
    out: dict[str, Any] = {"monitors": [], "queued": [], "started": [], "shadow_decisions": []}
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
    try:
        out["started"] = ws.jobs.dispatch(slots=slots)
    except Exception:
        logger.exception("starting jobs failed")
    return out
