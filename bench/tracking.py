"""Tracking benchmark: Keel vs MLflow, both on a fresh SQLite store, in one process.

1. metric points  log N points of one series in one run, one call per point, then end the run
                  (MLflow anchors: fluent `mlflow.log_metric` per point, and `MlflowClient.log_batch`
                  in chunks of 1,000, MLflow's batch limit)
                  equal durability: Keel with KEEL_SQLITE_SYNCHRONOUS=full and a commit per point
                  (`run.log_metric` + `run.flush()`), against the same per-point `mlflow.log_metric`:
                  both commit and sync every point (MLflow's SQLite runs synchronous=FULL)
2. create runs    R runs, each with 10 params and 10 metrics (each tool's dict APIs)
3. search runs    `metrics.m0 > 0.5` ordered by `metrics.m1` desc, limit 100, over those runs
                  (MLflow anchor: `MlflowClient.search_runs`, which returns entities as Keel does;
                  the DataFrame-building `mlflow.search_runs` is reported as a second row)

make bench                                         # full sizes, through .venv-bench
.venv-bench/bin/python bench/tracking.py --quick   # smoke test in seconds
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, median, parse_args, quiet_mlflow, stopwatch, time_calls  # noqa: E402

quiet_mlflow()

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from sqlalchemy import text  # noqa: E402

import keel  # noqa: E402

quiet_mlflow()  # again: importing mlflow configures its own loggers

FILTER = "metrics.m0 > 0.5"
ORDER = "metrics.m1 desc"
LIMIT = 100
MLFLOW_BATCH = 1000  # MAX_METRICS_PER_BATCH in mlflow.utils.validation


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        sizes={"points": (1_000, 10_000), "runs": (100, 1_000), "searches": (5, 20)},
        repeats=(1, 3),
    )
    report = Report("tracking", args)
    rng = random.Random(0)
    values = [rng.random() for _ in range(args.points)]
    run_params = [{f"p{j}": rng.choice([0.01, 0.1, 1.0, 10.0]) * (j + 1) for j in range(10)} for _ in range(args.runs)]
    run_metrics = [{f"m{j}": rng.random() for j in range(10)} for _ in range(args.runs)]
    expected = sorted((i for i in range(args.runs) if run_metrics[i]["m0"] > 0.5), key=lambda i: -run_metrics[i]["m1"])[
        :LIMIT
    ]
    expected_names = [f"run-{i:04d}" for i in expected]

    t: dict[str, list[float]] = {
        k: []
        for k in (
            "keel_points",
            "keel_points_durable",
            "mlflow_points",
            "mlflow_points_batch",
            "keel_runs",
            "mlflow_runs",
            "keel_search",
            "mlflow_search",
            "mlflow_search_df",
        )
    }
    print(
        f"tracking: {args.points} points, {args.runs} runs, {args.searches} searches, {args.repeats} repeats",
        flush=True,
    )
    for rep in range(args.repeats):
        with (
            tempfile.TemporaryDirectory(prefix="keel-bench-") as kdir,
            tempfile.TemporaryDirectory(prefix="mlflow-bench-") as mdir,
        ):
            ws = keel.Workspace(home=kdir)
            mlflow.set_tracking_uri(f"sqlite:///{mdir}/mlflow.db")
            client = MlflowClient()
            exp_points = client.create_experiment("points", artifact_location=Path(mdir, "artifacts").as_uri())
            exp_search = client.create_experiment("search", artifact_location=Path(mdir, "artifacts").as_uri())
            sides = [("keel", ws), ("mlflow", client)]
            if rep % 2:
                sides.reverse()  # alternate who goes first

            # 1. metric points, one call per point
            for side, _ in sides:
                if side == "keel":
                    run = ws.runs.start("points")
                    with stopwatch(t["keel_points"]):
                        for step, v in enumerate(values):
                            run.log_metric("loss", v, step=step)
                        run.end()
                    assert len(ws.runs.metric_history(run.id, "loss")) == args.points
                    # Equal durability: every point its own commit, synced as MLflow's are.
                    with keel.Workspace(keel.Settings(home=Path(kdir, "full"), sqlite_synchronous="full")) as durable:
                        with durable._meta.engine.connect() as conn:
                            report.checks["keel_durable_pragma_synchronous"] = conn.execute(
                                text("PRAGMA synchronous")
                            ).scalar()
                        run = durable.runs.start("points")
                        with stopwatch(t["keel_points_durable"]):
                            for step, v in enumerate(values):
                                run.log_metric("loss", v, step=step)
                                run.flush()
                            run.end()
                        assert len(durable.runs.metric_history(run.id, "loss")) == args.points
                else:
                    store = client._tracking_client.store  # type: ignore[attr-defined]
                    with store.engine.connect() as conn:  # MLflow's own engine: its durability setting
                        report.checks["mlflow_pragma_synchronous"] = conn.execute(text("PRAGMA synchronous")).scalar()
                    mrun = mlflow.start_run(experiment_id=exp_points)
                    with stopwatch(t["mlflow_points"]):
                        for step, v in enumerate(values):
                            mlflow.log_metric("loss", v, step=step)
                        mlflow.end_run()
                    assert len(client.get_metric_history(mrun.info.run_id, "loss")) == args.points
                    run_id = client.create_run(exp_points).info.run_id
                    with stopwatch(t["mlflow_points_batch"]):
                        for lo in range(0, len(values), MLFLOW_BATCH):
                            now_ms = int(time.time() * 1000)
                            batch = [
                                Metric("loss", v, now_ms, lo + i) for i, v in enumerate(values[lo : lo + MLFLOW_BATCH])
                            ]
                            client.log_batch(run_id, metrics=batch)
                        client.set_terminated(run_id)
                    assert len(client.get_metric_history(run_id, "loss")) == args.points

            # 2. create runs with 10 params and 10 metrics each
            for side, _ in sides:
                if side == "keel":
                    with stopwatch(t["keel_runs"]):
                        for i in range(args.runs):
                            with ws.runs.start("search", name=f"run-{i:04d}", params=run_params[i]) as run:
                                run.log_metrics(run_metrics[i])
                else:
                    with stopwatch(t["mlflow_runs"]):
                        for i in range(args.runs):
                            with mlflow.start_run(experiment_id=exp_search, run_name=f"run-{i:04d}"):
                                mlflow.log_params(run_params[i])
                                mlflow.log_metrics(run_metrics[i])

            # 3. search them
            def keel_search() -> list[str]:
                return [r.name for r in ws.runs.search(FILTER, order_by=ORDER, limit=LIMIT, experiment="search")]

            def mlflow_search() -> list[str]:
                found = client.search_runs(
                    [exp_search], filter_string=FILTER, order_by=["metrics.m1 DESC"], max_results=LIMIT
                )
                return [r.info.run_name for r in found]

            def mlflow_search_df() -> list[str]:
                frame = mlflow.search_runs(
                    experiment_ids=[exp_search], filter_string=FILTER, order_by=["metrics.m1 DESC"], max_results=LIMIT
                )
                return list(frame["tags.mlflow.runName"])

            results = {"keel": keel_search(), "mlflow": mlflow_search(), "mlflow_df": mlflow_search_df()}
            for label, names in results.items():
                if names != expected_names:
                    raise SystemExit(
                        f"{label} search returned {len(names)} runs, not the {len(expected_names)} expected"
                    )
            n_all_keel = len(ws.runs.search(FILTER, limit=100_000, experiment="search"))
            n_all_mlflow = len(client.search_runs([exp_search], filter_string=FILTER, max_results=50_000))
            report.checks["search_matches_unlimited"] = {"keel": n_all_keel, "mlflow": n_all_mlflow}
            report.checks["search_returned"] = {k: len(v) for k, v in results.items()}
            report.checks["search_same_runs_same_order"] = True
            if n_all_keel != n_all_mlflow:
                raise SystemExit(f"Unlimited searches disagree: keel {n_all_keel}, mlflow {n_all_mlflow}")
            for side, _ in sides:
                if side == "keel":
                    t["keel_search"].append(median(time_calls(keel_search, args.searches)))
                else:
                    t["mlflow_search"].append(median(time_calls(mlflow_search, args.searches)))
                    t["mlflow_search_df"].append(median(time_calls(mlflow_search_df, args.searches)))
            ws.close()
        print(f"repeat {rep + 1}/{args.repeats} done", flush=True)

    n, r = args.points, args.runs
    report.add(
        f"log {n:,} metric points (per-call log_metric)",
        t["keel_points"],
        t["mlflow_points"],
        unit="total",
        note="MLflow: fluent mlflow.log_metric per point, one SQLite commit each; Keel: run.log_metric (buffered)",
    )
    report.add(
        f"log {n:,} metric points, equal durability (commit + sync per point)",
        t["keel_points_durable"],
        t["mlflow_points"],
        unit="total",
        note="Both commit and fsync every point: Keel KEEL_SQLITE_SYNCHRONOUS=full, run.log_metric + run.flush() "
        "per point; MLflow fluent mlflow.log_metric per point (its SQLite runs synchronous=FULL)",
    )
    report.add(
        f"log {n:,} metric points (MLflow log_batch)",
        t["keel_points"],
        t["mlflow_points_batch"],
        unit="total",
        note=f"MLflow: MlflowClient.log_batch, {MLFLOW_BATCH} metrics per call (its limit); Keel: same per-call loop as above",
    )
    report.add(
        f"create {r:,} runs x 10 params + 10 metrics",
        t["keel_runs"],
        t["mlflow_runs"],
        unit="total",
        note="MLflow: start_run + log_params + log_metrics + end_run; Keel: runs.start(params=) + log_metrics + end",
    )
    report.add(
        f"search {r:,} runs (filter, order, limit {LIMIT})",
        t["keel_search"],
        t["mlflow_search"],
        unit="per query",
        note="MLflow: MlflowClient.search_runs (entities); Keel: ws.runs.search",
    )
    report.add(
        f"search {r:,} runs (mlflow.search_runs DataFrame)",
        t["keel_search"],
        t["mlflow_search_df"],
        unit="per query",
        note="MLflow: fluent mlflow.search_runs, which also builds a pandas DataFrame",
    )
    report.print_table()
    report.save()


if __name__ == "__main__":
    main()
