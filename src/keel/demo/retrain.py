"""Act 11, Retrain: the alerts start a retraining on their own (the model project below), while
requests keep coming; the challenger is judged on the newest production rows and promoted."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.demo._shared import DATASET_NAME, INDENT, MODEL_NAME, SEED, TARGET, TEST_FRACTION, step
from keel.refs import CHAMPION

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from keel.demo.serve import DemoServer
    from keel.workspace import Workspace

__all__ = ["RetrainSummary", "project", "retrain_while_serving", "print_retrain"]


@dataclass(frozen=True)
class RetrainSummary:
    job: int | None
    outcome: str | None
    version: int | None
    champion_before: int | None
    metrics: dict[str, Any]
    data: dict[str, Any]
    requests: int  # predictions asked for while the retraining ran
    failed: int
    served_by: dict[int, int]  # model version -> requests it answered


def project() -> Any:
    """The model project the live act retrains with: the champion's recipe, retrained on the reference
    plus labelled production rows, judged on the newest production rows, triggered by alerts."""
    from keel.retraining import Project

    return Project.from_dict(
        {
            "model": MODEL_NAME,
            "data": {
                "dataset": DATASET_NAME,
                "target": TARGET,
                "split": {"test_fraction": TEST_FRACTION, "seed": SEED},
            },
            "estimator": {
                "class": "sklearn.ensemble.HistGradientBoostingClassifier",
                "params": {
                    "learning_rate": 0.05,
                    "max_iter": 200,
                    "max_leaf_nodes": 15,
                    "l2_regularization": 1.0,
                    "early_stopping": False,
                    "random_state": SEED,
                },
            },
            "evaluation": {"metrics": ["roc_auc", "accuracy", "log_loss"], "primary": "roc_auc"},
            "gate": {"min_improvement": 0.005},
            "retraining": {"triggers": ["alert", "manual"], "data": "reference+production", "debounce_s": 600},
        },
        source="keel demo",
    )


def retrain_while_serving(
    ws: Workspace, server: DemoServer, http: Any, model: str, rows: pd.DataFrame, project: Any
) -> RetrainSummary:
    """Start keel serve's background loop and keep asking for predictions until the retraining it
    starts (the alerts are its trigger) has finished and its outcome is being served."""
    from collections import Counter

    from keel.server.scheduler import MonitorScheduler
    from keel.server.state import state_of

    ws.retraining.save(project)
    champion_before = ws.models.get(f"{model}@{CHAMPION}").version
    loop = MonitorScheduler(ws, state_of(server.app).monitor_gauges, tick_s=0.2)
    loop.start()
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    served: Counter[int] = Counter()
    requests = failed = 0
    job = None
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            answer = http.post(f"/api/v1/models/{model}/predict", json={"records": [records[requests % len(records)]]})
            requests += 1
            if answer.status_code == 200:
                served[answer.json()["version"]] += 1
            else:
                failed += 1
            jobs = ws.jobs.list(kind="retrain", limit=1)
            job = jobs[0] if jobs else None
            if job is not None and job.status in ("succeeded", "failed"):
                result = job.result or {}
                promoted = result.get("outcome") == "promoted" and result.get("version") is not None
                target = int(result["version"]) if promoted else champion_before
                if job.status == "failed" or served[target] >= 20:  # the outcome is what answers now
                    break
            time.sleep(0.005)
    finally:
        loop.stop()
    decision = ws.retraining.decisions(model, limit=1)
    d = decision[0] if decision else None
    return RetrainSummary(
        job=job.id if job else None,
        outcome=d.outcome if d else None,
        version=d.version if d else None,
        champion_before=champion_before,
        metrics=(d.evidence.get("metrics") or {}) if d else {},
        data=(d.evidence.get("data") or {}) if d else {},
        requests=requests,
        failed=failed,
        served_by=dict(served),
    )


def print_retrain(r: RetrainSummary, model: str, console: Console, number: int) -> None:
    if r.outcome is None:
        console.print(f"{step(number, 'Retrain')}no retraining started within the demo's time")
        return
    console.print(
        f"{step(number, 'Retrain')}job {r.job}, queued by the server on the alerts: {model}@{r.version} trained on "
        f"{r.data.get('dataset')} ({r.data.get('train_rows', 0):,} rows: reference + labelled production)"
    )
    challenger, champion = r.metrics.get("challenger") or {}, r.metrics.get("champion") or {}
    if "roc_auc" in challenger and "roc_auc" in champion:
        console.print(
            f"{INDENT}gate on the newest {r.data.get('holdout_rows')} production rows: AUC {challenger['roc_auc']:.3f} "
            f"vs champion @{r.champion_before} {champion['roc_auc']:.3f} -> [bold]{r.outcome.replace('_', ' ')}[/]"
        )
    versions = ", ".join(f"v{v}: {n}" for v, n in sorted(r.served_by.items()))
    console.print(
        f"{INDENT}{r.requests} predictions answered meanwhile ({versions}), {r.failed} failed"
        + ("; the alerts that started it are resolved" if r.outcome == "promoted" else "")
    )
