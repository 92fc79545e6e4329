"""The causal study jobs: a bootstrap interval, the refutation suite and the sensitivity sweep of a
study version, each stored as the study's result and its summary as the job's result.

The work is cut into tasks sent to the job layer's executor (threads of this process by default,
Ray tasks with KEEL_EXECUTOR=ray): the bootstrap in chunks of resamples, the refutation one task
per refitting check. Each task is a plain function of plain values (a frame, names, numbers), so it
pickles to a Ray worker, which needs no workspace. The job reports its progress (tasks done of
tasks) as tasks finish: `ws.jobs.get(id).progress`, and GET /api/v1/jobs/{id}.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from typing import TYPE_CHECKING, Any

from keel.workspace.payloads import CausalBootstrapPayload, CausalRefutePayload, CausalSensitivityPayload

if TYPE_CHECKING:
    from keel.jobs.executors import Executor
    from keel.workspace.facade import Workspace

__all__ = ["CURRENT_JOB", "causal_bootstrap", "causal_refute", "causal_sensitivity", "run_tasks"]

# The job this thread runs (set by keel.workspace.handlers.run_job), so a handler can report progress.
CURRENT_JOB: contextvars.ContextVar[int | None] = contextvars.ContextVar("keel_current_job", default=None)
BOOTSTRAP_ESTIMATORS = ("regression", "ipw", "aipw")  # dml refits five folds per resample: ask for it


def _progress(ws: Workspace, done: int, total: int, stage: str) -> None:
    job_id = CURRENT_JOB.get()
    if job_id is not None:
        ws.jobs.progress(job_id, done, total, stage)


def run_tasks(
    ws: Workspace,
    calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]],
    *,
    stage: str,
    done: int = 0,
    total: int | None = None,
) -> list[Any]:
    """Submit each (fn, args) to the configured executor and return the results in order, reporting
    progress (done + finished of total) as each finishes. A failed task fails the job with its error."""
    from keel.jobs.executors import make_executor

    total = len(calls) + done if total is None else total
    executor: Executor = make_executor(ws.settings)
    try:
        futures: dict[Future[Any], int] = {executor.submit(fn, *args): i for i, (fn, args) in enumerate(calls)}
        results: list[Any] = [None] * len(calls)
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            _progress(ws, done, total, stage)
        return results
    finally:
        executor.shutdown()


def _call(task: Callable[[], Any]) -> Any:
    return task()


def causal_bootstrap(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """Percentile bootstrap intervals of a study's effect, the resamples in chunks on the executor."""
    from keel.causal.bootstrap import bootstrap_chunk, bootstrap_interval, chunks

    p = CausalBootstrapPayload.from_dict(payload)
    study = ws.causal.get(p.study)
    frame = ws.causal.frame(study)
    estimators = tuple(p.estimators or BOOTSTRAP_ESTIMATORS)
    estimand, seed, n_boot = p.estimand or "ate", p.seed or 0, p.n_boot or 200
    parts = chunks(n_boot, p.tasks or 4)
    total = len(parts) * len(estimators)
    args = (frame, study.treatment, study.outcome, list(study.covariates))
    intervals, done = [], 0
    for estimator in estimators:

        def chunk(start: int, count: int, estimator: str = estimator) -> list[float]:
            return bootstrap_chunk(*args, estimator=estimator, estimand=estimand, seed=seed, start=start, count=count)

        values = run_tasks(
            ws, [(chunk, part) for part in parts], stage=f"bootstrap {estimator}", done=done, total=total
        )
        done += len(parts)
        flat = [v for part in values for v in part]
        intervals.append(bootstrap_interval(*args, flat, estimator=estimator, estimand=estimand, seed=seed).to_dict())
    stored = ws.causal.add_result(study, "bootstrap", {"intervals": intervals, "tasks": len(parts)})
    return {"study": study.ref, "result": stored.id, "kind": "bootstrap", "intervals": intervals}


def causal_refute(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """The refutation suite of a study version, each refitting check a task on the executor."""
    p = CausalRefutePayload.from_dict(payload)
    study = ws.causal.get(p.study)

    def map_tasks(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
        return run_tasks(ws, [(_call, (task,)) for task in tasks], stage="refutation checks")

    result = ws.causal.refute(
        study, estimator=p.estimator or "aipw", estimand=p.estimand or "ate", seed=p.seed or 0, map_tasks=map_tasks
    )
    stored = ws.causal.results(study, kind="refutation")[-1]
    return {
        "study": study.ref,
        "result": stored.id,
        "kind": "refutation",
        "verdict": result.verdict,
        "failed": [c.name for c in result.checks if not c.passed],
    }


def causal_sensitivity(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """The sensitivity sweep of a study version (one estimate, then arithmetic: a single step)."""
    p = CausalSensitivityPayload.from_dict(payload)
    _progress(ws, 0, 1, "sensitivity")
    sweep, stored = ws.causal.sensitivity(
        p.study, estimator=p.estimator or "regression", estimand=p.estimand or "ate", seed=p.seed or 0
    )
    _progress(ws, 1, 1, "sensitivity")
    return {
        "study": stored.study,
        "result": stored.id,
        "kind": "sensitivity",
        "robustness_value": stored.payload["robustness_value"],
        "robustness_value_ci": stored.payload["robustness_value_ci"],
    }
