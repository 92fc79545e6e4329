"""Time from a drift alert to a promoted champion, in-process and on Ray, against the bare fit.

A synthetic credit-like table (default 1,000,000 rows x 12 columns: 10 numeric, 2 categorical,
a logistic target) is registered; a model project (HistGradientBoostingClassifier, automatic
preprocessing, `retraining.triggers: [alert]`) trains the champion. Then, per executor:

    alert fires (alerts.evaluate) -> scheduler tick queues a retrain job -> the executor runs the
    cycle (load the dataset version, split, fit, evaluate, track, register, score the champion on
    the holdout, gate, move @champion) -> the alias points at the new version

and the same fit of the same pipeline on the same split, done by hand, is the floor. The gate
passes on a tie (same data, same seed), so every run ends in a promotion.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/retrain.py [--rows N] [--quick] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PARAMS = {"max_iter": 100, "learning_rate": 0.1, "random_state": 0, "early_stopping": False}


def table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 10))
    region = rng.choice(["north", "south", "east", "west"], rows)
    product = rng.choice(["card", "loan", "mortgage"], rows, p=[0.5, 0.3, 0.2])
    logit = X[:, 0] - 0.8 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3] + np.where(region == "north", 0.7, 0.0) - 1.0
    y = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "bad", "good")
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
    frame["region"], frame["product"], frame["status"] = region, product, y
    return frame


def project(model: str) -> Any:
    import keel

    return keel.Project.from_dict(
        {
            "model": model,
            "data": {"dataset": "loans", "target": "status", "split": {"test_fraction": 0.25, "seed": 0}},
            "estimator": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": PARAMS},
            "evaluation": {"metrics": ["roc_auc", "accuracy", "log_loss"], "primary": "roc_auc"},
            "retraining": {"triggers": ["alert"], "alert_rules": ["feature-drift"], "debounce_s": 0},
        }
    )


def bare_fit(frame: pd.DataFrame) -> float:
    """The floor: the same pipeline fitted on the same split, nothing recorded."""
    from keel.retraining.pipeline import fit, split

    p = project("bare")
    X_train, _, y_train, _ = split(p, frame)
    start = time.perf_counter()
    fit(p, X_train, y_train)
    return time.perf_counter() - start


def alert_to_champion(home: Path, executor: str, frame: pd.DataFrame) -> dict[str, float]:
    import keel
    from keel.workspace.tick import tick

    settings = keel.Settings(home=home, author="bench", executor=executor, executor_workers=2)
    with keel.Workspace(settings) as ws:
        ws.datasets.add("loans", frame)
        first = ws.retraining.train(project("loans-risk"))
        assert first.outcome == "promoted", first.evidence
        ws.monitoring.alerts.ensure_default_rules("loans-risk", output_kind="classification")
        if executor == "ray":
            ws.jobs.executor  # start (or attach to) Ray before the clock starts: a running cluster is the premise
        start = time.perf_counter()
        ws.monitoring.alerts.evaluate("loans-risk", [("x0", "drift", 1.0)], context={})
        queued = tick(ws)
        assert queued["started"], queued
        ws.jobs.wait()
        elapsed = time.perf_counter() - start
        champion = ws.models.get("loans-risk@champion").version
        job = ws.jobs.get(queued["started"][0])
        assert champion == 2 and job.status == "succeeded", (champion, job)
        return {"alert_to_champion_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args()
    rows = 100_000 if args.quick else args.rows
    frame = table(rows)
    results: dict[str, list[float]] = {"bare fit": [], "in-process": [], "ray (2 workers)": []}
    if not args.no_ray:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    for _ in range(args.repeats):
        results["bare fit"].append(bare_fit(frame))
        with tempfile.TemporaryDirectory() as tmp:
            results["in-process"].append(alert_to_champion(Path(tmp) / "ws", "local", frame)["alert_to_champion_s"])
        if not args.no_ray:
            with tempfile.TemporaryDirectory() as tmp:
                results["ray (2 workers)"].append(
                    alert_to_champion(Path(tmp) / "ws", "ray", frame)["alert_to_champion_s"]
                )
    bare = float(np.median(results["bare fit"]))
    print(
        f"\nalert -> promoted champion, {rows:,} rows x 12 columns, HistGradientBoosting ({PARAMS['max_iter']} iterations)"
    )
    print(f"{'':<18}{'median s':>10}{'overhead over bare fit':>26}")
    for name, values in results.items():
        if not values:
            continue
        med = float(np.median(values))
        extra = "" if name == "bare fit" else f"{med - bare:>+10.2f} s ({med / bare:.2f}x)"
        print(f"{name:<18}{med:>10.2f}{extra:>26}")
    if not args.no_json:
        out = Path(__file__).with_name("results") / "retrain.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "results": results,
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
