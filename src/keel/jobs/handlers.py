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


def batch_score(ws: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """payload: model (a reference), dataset (a reference), output (a dataset name), chunk_rows."""
    from keel.jobs.batch import batch_score as run

    return run(ws, payload)


def tune(ws: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """A hyper-parameter search for payload['model'] (Ray Tune on the Ray executor), then its gate."""
    decision = ws.retraining.tune(payload["model"], use_ray=ws.settings.executor == "ray", dataset=payload.get("dataset"))
    tuning = decision.evidence.get("tuning") or {}
    return {"decision": decision.id, "outcome": decision.outcome, "version": decision.version, "best": tuning.get("best"),
            "trials": len(tuning.get("trials") or [])}  # fmt: skip


def batch_explain(ws: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """payload: model, dataset (references), output (a dataset name), chunk_rows, top."""
    from keel.jobs.batch import batch_explain as run

    return run(ws, payload)


def monitor(ws: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """One monitor check of payload['model'] (what `POST /models/{name}/monitor/run` queues); the
    result names the stored check (`run`), whose values `GET .../monitor/runs/{run}` gives."""
    result = ws.monitoring.run(payload["model"])
    return {"model": payload["model"], "run": result.run.id, "model_version": result.run.model_version,
            "rows": result.run.rows, "drifted_features": list(result.drifted_features),
            "alerts": [a.id for a in result.alerts]}  # fmt: skip


HANDLERS: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    "retrain": retrain, "batch_score": batch_score, "tune": tune, "batch_explain": batch_explain, "monitor": monitor,
}  # fmt: skip
