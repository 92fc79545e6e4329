"""What each kind of job does, given the Workspace the job opened. A handler returns a small JSON
result, stored with the job; raising marks the job failed with the message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["HANDLERS"]


def retrain(ws: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """One retraining cycle of payload['model'] (trigger and detail as the scheduler saw them)."""
    decision = ws.retraining.run_one(payload["model"], trigger=payload.get("trigger", "manual"), detail=payload.get("detail") or {},
                                     dataset=payload.get("dataset"))  # fmt: skip
    return {"decision": decision.id, "outcome": decision.outcome, "version": decision.version}


HANDLERS: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {"retrain": retrain}
