"""One tick of the background loop of `keel worker` and `keel serve`: run the monitors that are
due, queue the retraining cycles that are due (one active job per model), judge challengers in
shadow mode that have enough labelled live rows, start queued jobs."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["tick"]


def tick(ws: Any, *, slots: int = 2) -> dict[str, Any]:
    """Returns what happened: monitor results, jobs queued and jobs started."""
    out: dict[str, Any] = {"monitors": [], "queued": [], "started": [], "shadow_decisions": []}
    try:
        out["monitors"] = ws.monitoring.run_due()
    except Exception:  # the loop must survive a broken store or monitor
        logger.exception("running due monitors failed")
    try:
        for name, due in ws.retraining.due():
            job, created = ws.jobs.enqueue("retrain", {"model": name, "trigger": due.trigger, "detail": due.detail},
                                           dedup_key=f"retrain:{name}")  # fmt: skip
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
