"""What each kind of job does, given the Workspace the job opened, and `run_job`, which the queue
(keel.jobs) submits to the executor. A handler returns a small JSON result, stored with the job;
raising marks the job failed with the message."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError, KeelError
from keel.workspace.causal_jobs import CURRENT_JOB, causal_bootstrap, causal_refute, causal_sensitivity
from keel.workspace.edge_loop import edge_build, edge_follow
from keel.workspace.payloads import (
    BatchExplainPayload,
    BatchScorePayload,
    GenAITrainPayload,
    GenAITunePayload,
    MonitorPayload,
    RetrainPayload,
    TrainPolicyPayload,
    TunePayload,
)

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

__all__ = ["HANDLERS", "run_job"]


def retrain(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """One retraining cycle of the payload's model (trigger and detail as the scheduler saw them); then
    the causal study the project names (`retraining: {study: NAME}`), if any, is rerun on the newest data."""
    p = RetrainPayload.from_dict(payload)
    decision = ws.retraining.run_one(
        p.model, trigger=p.trigger or "manual", detail=dict(p.detail or {}), dataset=p.dataset
    )
    result: dict[str, Any] = {"decision": decision.id, "outcome": decision.outcome, "version": decision.version}
    if decision.outcome != "failed":
        result.update(_rerun_study(ws, p.model))
    return result


def _rerun_study(ws: Workspace, model: str) -> dict[str, Any]:
    """Rerun the study the model's project names: its effect change is stored (a drift alerts); a study
    that cannot be rerun is reported in the job's result, and never fails the retraining."""
    study = ws.retraining.project(model).retraining.study
    if study is None:
        return {}
    try:
        made, change = ws.causal.rerun(study)
    except KeelError as exc:
        logger.warning("rerunning study %s after retraining %s failed: %s", study, model, exc)
        return {"study": study, "study_error": str(exc)}
    return {"study": made.ref, "effect_change": change.id, "effect_drifted": bool(change.payload["drifted"])}


def batch_score(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """Score a dataset version with a model version (BatchScorePayload)."""
    from keel.workspace.batch import batch_score as run

    return run(ws, BatchScorePayload.from_dict(payload))


def tune(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """A hyper-parameter search for the payload's model (Ray Tune on the Ray executor), then its gate."""
    p = TunePayload.from_dict(payload)
    decision = ws.retraining.tune(p.model, use_ray=ws.settings.executor == "ray", dataset=p.dataset)
    tuning = decision.evidence.get("tuning") or {}
    return {
        "decision": decision.id,
        "outcome": decision.outcome,
        "version": decision.version,
        "best": tuning.get("best"),
        "trials": len(tuning.get("trials") or []),
    }


def batch_explain(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """Attributions for every row of a dataset version (BatchExplainPayload)."""
    from keel.workspace.batch import batch_explain as run

    return run(ws, BatchExplainPayload.from_dict(payload))


def monitor(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """One monitor check of the payload's model (what `POST /models/{name}/monitor/run` queues); the
    result names the stored check (`run`), whose values `GET .../monitor/runs/{run}` gives."""
    model = MonitorPayload.from_dict(payload).model
    result = ws.monitoring.run(model)
    return {
        "model": model,
        "run": result.run.id,
        "model_version": result.run.model_version,
        "rows": result.run.rows,
        "drifted_features": list(result.drifted_features),
        "alerts": [a.id for a in result.alerts],
    }


def rl_train(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """A decision policy trained on a twin (TrainPolicyPayload); its seeds are tasks on the executor."""
    p = TrainPolicyPayload.from_dict(payload)
    result = ws.rl.train(p.twin, **p.options())
    return {
        "twin": result.twin,
        "result": result.id,
        "model": result.payload["model"],
        "cost": result.payload["evaluation"]["cost"],
        "difference": result.payload["difference"]["value"],
        "gap": result.payload["gap"],
    }


def genai_train(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """A language model trained on a corpus version and registered (GenAITrainPayload)."""
    p = GenAITrainPayload.from_dict(payload)
    made = ws.genai.train(p.model, p.corpus, **p.options())
    return {"model": made.ref, "corpus": p.corpus, "val_perplexity": made.metrics.get("val_perplexity")}


def genai_tune(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """A registered language model tuned on a corpus version and registered (GenAITunePayload)."""
    p = GenAITunePayload.from_dict(payload)
    made = ws.genai.tune(p.model, p.corpus, **p.options())
    m = made.metrics
    return {
        "model": made.ref,
        "base": made.tags.get("keel.base"),
        "val_perplexity": m.get("val_perplexity"),
        "base_perplexity": m.get("base_perplexity"),
    }


HANDLERS: dict[str, Callable[[Workspace, dict[str, Any]], dict[str, Any]]] = {
    "retrain": retrain,
    "batch_score": batch_score,
    "tune": tune,
    "batch_explain": batch_explain,
    "monitor": monitor,
    # causal study jobs (keel.workspace.causal_jobs): their work split into tasks on the executor
    "causal_bootstrap": causal_bootstrap,
    "causal_refute": causal_refute,
    "causal_sensitivity": causal_sensitivity,
    # edge builds (keel.workspace.edge_loop): one build, or a new champion's project targets
    "edge_build": edge_build,
    "edge_follow": edge_follow,
    # a decision policy trained on a digital twin (keel.workspace.rl_train)
    "rl_train": rl_train,
    # language models trained or tuned on a corpus version (keel.workspace.genai_train)
    "genai_train": genai_train,
    "genai_tune": genai_tune,
}


def run_job(factory: Callable[[], Workspace], job_id: int) -> dict[str, Any]:
    """Execute job `job_id` in a Workspace made by `factory` (this process or a Ray worker)."""
    with factory() as ws:
        job = ws.jobs.get(job_id)
        handler = HANDLERS.get(job.kind)
        token = CURRENT_JOB.set(job_id)  # a handler reports progress against it
        try:
            if handler is None:
                raise InvalidInputError(f"unknown job kind {job.kind!r}; known: {', '.join(sorted(HANDLERS))}")
            result = {**handler(ws, job.payload), "ran_on": f"{socket.gethostname()}:{os.getpid()}"}
        except Exception as exc:
            message = str(exc) if isinstance(exc, KeelError) else f"{type(exc).__name__}: {exc}"
            ws.jobs.finish(job_id, error=message)
            logger.error("job %d (%s) failed: %s", job_id, job.kind, message)
            raise
        finally:
            CURRENT_JOB.reset(token)
        ws.jobs.finish(job_id, result=result)
        return result
