"""Run search at scale (issue 17): `ws.runs.search` p50/p95 over 1k, 10k, 100k (and 1M) runs.

The query is the issue's: `metrics.m0 > 0.5` ordered by `metrics.m1 desc`, limit 100 (half the
runs match: the filter alone cannot narrow the work). A second row times a selective filter
(`metrics.m0 > 0.999`, 0.1% of the runs) with the same order, the other side of the plan choice.
The dashboard's runs page (GET /runs: the newest runs, and the issue's query) is timed too.

MLflow side by side (when the interpreter has it: `.venv-bench/bin/python`): the same runs go into
MLflow's own store (a SQLite file, or a second database on the same PostgreSQL server) and
`MlflowClient.search_runs` runs the same filter and order, limit 100, in a child process; the run
ids both return are compared, and a size where one MLflow query passes `--mlflow-timeout` is
reported as "did not finish in N s" (bench/_mlflow_scale.py).

The runs are written in bulk straight into the store's own tables (runs, run_params,
latest_metrics, metric_points), in the shape `ws.runs` writes them: 4 params and 4 metrics per
run, each metric with one point and its latest value. One API call per run would take hours at
1M runs; the search reads only these tables.

.venv/bin/python bench/tracking_scale.py                           # 1k, 10k, 100k on SQLite
.venv-bench/bin/python bench/tracking_scale.py --quick             # 1k, with MLflow (seconds)
.venv/bin/python bench/tracking_scale.py --sizes 1000,1000000      # 1M too (minutes to write)
.venv/bin/python bench/tracking_scale.py --postgres postgresql+psycopg://user@host/db   # and PostgreSQL
(or KEEL_TEST_POSTGRES_URL; its public schema is dropped and created again: use a scratch database;
--no-sqlite measures PostgreSQL alone)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

import keel
from keel.settings import Settings
from keel.storage import schema as s

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_seconds, verdict  # noqa: E402
from _mlflow_scale import MlflowLoad, RunRow, mlflow_available, store_url, time_search  # noqa: E402

QUERIES = {
    "search (issue's query)": ("metrics.m0 > 0.5", "metrics.m1 desc"),
    "search, selective filter": ("metrics.m0 > 0.999", "metrics.m1 desc"),
}
LIMIT = 100
GOALS_S = {100_000: 0.050, 1_000_000: 0.200}  # search p50 goals (issue 17)
DASHBOARD_GOAL_S = {100_000: 0.300}
N_PARAMS, N_METRICS = 4, 4
CHUNK = 20_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="run counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=20, help="searches timed per size and query")
    parser.add_argument("--postgres", default=os.environ.get("KEEL_TEST_POSTGRES_URL", ""), help="a scratch database")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only (with --postgres)")
    parser.add_argument("--no-dashboard", action="store_true", help="skip the dashboard page timing")
    parser.add_argument("--no-mlflow", action="store_true", help="Keel alone (also when MLflow is not installed)")
    parser.add_argument("--mlflow-timeout", type=float, default=60.0, help="seconds one MLflow query may take")
    parser.add_argument("--quick", action="store_true", help="1,000 runs, 3 repeats (seconds)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = "1000", min(args.repeats, 3)
    args.mlflow = not args.no_mlflow and mlflow_available()
    if not args.no_mlflow and not args.mlflow:
        print("MLflow is not installed in this interpreter: Keel alone (.venv-bench/bin/python has both)")
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    stores = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres else [])
    print(f"run search at scale: sizes {sizes}, {args.repeats} repeats, limit {LIMIT}, stores {stores}")
    for store in stores:
        with tempfile.TemporaryDirectory(prefix="keel-scale-") as tmp:
            for n in sizes:
                url = f"sqlite:///{Path(tmp, f'{n}.db')}" if store == "sqlite" else args.postgres
                if store == "postgresql":
                    _drop_all(url)
                ws = keel.Workspace(Settings(home=Path(tmp, f"ws{n}"), store_url=url, author="bench"))
                try:
                    _measure(ws, store, n, args, Path(tmp))
                finally:
                    ws.close()


def _measure(ws: keel.Workspace, store: str, n: int, args: argparse.Namespace, tmp: Path) -> None:
    engine: Engine = ws._meta.engine  # noqa: SLF001 - the bench writes the store's tables directly
    ml = MlflowLoad(store_url(str(engine.url), tmp, n), tmp / f"mlflow-artifacts-{n}") if args.mlflow else None
    metrics, wrote = _fill(engine, n, ml)
    extra = f", MLflow's store {wrote['mlflow']:.1f} s" if ml else ""
    print(f"\n[{store}] {n:,} runs written: Keel's store {wrote['keel']:.1f} s{extra}")
    for label, (where, order) in QUERIES.items():
        runs = ws.runs.search(where, order_by=order, limit=LIMIT)
        _check([r.metrics["m1"] for r in runs], metrics, float(where.rsplit(">", 1)[1]))
        times = _time(lambda w=where, o=order: ws.runs.search(w, order_by=o, limit=LIMIT), args.repeats)
        _line(f"{label}", times, GOALS_S.get(n))
        if ml:
            _mlflow_line(ml, (where, order), [r.id for r in runs], statistics.median(times), GOALS_S.get(n), args)
    if not args.no_dashboard:
        from fastapi.testclient import TestClient

        from keel.server import create_app

        with TestClient(create_app(ws), base_url="http://127.0.0.1") as client:
            where, order = QUERIES["search (issue's query)"]
            pages = {"dashboard /runs (newest)": {}, "dashboard /runs (query)": {"filter": where, "order_by": order}}
            for label, query in pages.items():
                assert client.get("/runs", params=query).status_code == 200
                times = _time(lambda q=query: client.get("/runs", params=q), max(3, args.repeats // 4))
                _line(label, times, DASHBOARD_GOAL_S.get(n))


def _check(found: list[float], metrics: list[list[float]], threshold: float) -> None:
    """The search returns the brute-force answer (ties cannot occur: the values are random floats)."""
    expected = sorted((m[1] for m in metrics if m[0] > threshold), reverse=True)[:LIMIT]
    if found != expected:
        raise SystemExit(f"search returned {len(found)} runs that are not the {len(expected)} expected")


def _time(fn: Any, repeats: int) -> list[float]:
    fn()  # warm: statement cache, page cache
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _line(label: str, times: list[float], goal: float | None) -> None:
    p50 = statistics.median(times)
    p95 = sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(f"  {label:<28} p50 {p50 * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  {verdict(p50, goal, fmt=fmt_seconds)}")


def _mlflow_line(
    ml: MlflowLoad, query: tuple[str, str], keel_ids: list[str], keel_p50: float, goal: float | None, args: Any
) -> None:
    """MLflow's p50 for the same query, its ratio to Keel's, whether both found the same runs, and
    how MLflow stands against the same goal (a query that did not finish misses it)."""
    where, order = query
    t = time_search(ml.url, ml.experiment_id, where, order.replace(" desc", " DESC"), args.repeats, args.mlflow_timeout)
    if t.timed_out and not t.times:
        print(
            f"  {'  MLflow search_runs':<28} did not finish in {fmt_seconds(t.limit_s)} (Keel p50 {fmt_seconds(keel_p50)})  "
            f"{verdict(t.limit_s, goal, fmt=fmt_seconds)}"
        )
        return
    # Both stores hold the same run ids (the bench writes them), so the answers compare directly.
    same = "same runs, same order" if t.run_ids == keel_ids else f"DIFFERENT runs ({len(t.run_ids)} vs {len(keel_ids)})"
    p50 = statistics.median(t.times)
    cut = f", stopped: a call passed {fmt_seconds(t.limit_s)}" if t.timed_out else ""
    print(
        f"  {'  MLflow search_runs':<28} p50 {p50 * 1000:8.1f} ms  over {len(t.times)} calls{cut};"
        f" MLflow/Keel {p50 / keel_p50:.1f}x; {same}  {verdict(p50, goal, fmt=fmt_seconds)}"
    )
    if t.run_ids != keel_ids:
        raise SystemExit(f"MLflow and Keel disagree on {where} order by {order}: see the line above")


def _fill(engine: Engine, n: int, ml: MlflowLoad | None) -> tuple[list[list[float]], dict[str, float]]:
    """n finished runs in one experiment, written in bulk to Keel's store (and MLflow's, the same runs);
    returns each run's metric values and the seconds each store's writes took."""
    rng = random.Random(n)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        exp_id = conn.execute(
            s.experiments.insert().values(name="scale", created_at=t0).returning(s.experiments.c.id)
        ).scalar_one()
    all_metrics: list[list[float]] = []
    wrote = {"keel": 0.0, "mlflow": 0.0}
    for lo in range(0, n, CHUNK):
        chunk: list[RunRow] = []
        for i in range(lo, min(n, lo + CHUNK)):
            run_id = uuid.UUID(int=rng.getrandbits(128)).hex
            at = t0 + timedelta(seconds=i)
            chunk.append((run_id, i, at, [], []))
            for j in range(N_PARAMS):
                chunk[-1][3].append((f"p{j}", rng.choice([0.01, 0.1, 1.0, 10.0]) * (j + 1)))
            chunk[-1][4].extend(rng.random() for _ in range(N_METRICS))
            all_metrics.append(chunk[-1][4])
        start = time.perf_counter()
        _write_keel(engine, exp_id, chunk)
        wrote["keel"] += time.perf_counter() - start
        if ml:
            start = time.perf_counter()
            ml.write(chunk)
            wrote["mlflow"] += time.perf_counter() - start
    start = time.perf_counter()
    if engine.dialect.name == "postgresql":  # what autovacuum does soon after a bulk load; Keel never
        with engine.begin() as conn:  # runs ANALYZE on SQLite, so neither does the bench there
            conn.execute(text("ANALYZE"))
    wrote["keel"] += time.perf_counter() - start
    if ml:
        start = time.perf_counter()
        ml.finish()
        wrote["mlflow"] += time.perf_counter() - start
    return all_metrics, wrote


def _write_keel(engine: Engine, exp_id: int, chunk: list[RunRow]) -> None:
    """The chunk in the shape `ws.runs` writes it: the run, its params, one point and the latest value per metric."""
    runs, params, latest, points = [], [], [], []
    for run_id, i, at, run_params, values in chunk:
        runs.append(
            {
                "id": run_id,
                "experiment_id": exp_id,
                "name": f"run-{i}",
                "status": "finished",
                "started_at": at,
                "ended_at": at + timedelta(seconds=30),
                "code_version": None,
                "environment": {"python": "3.11"},
                "author": "bench",
                "heartbeat_at": at,
            }
        )
        for key, v in run_params:
            params.append({"run_id": run_id, "key": key, "value": repr(v), "value_num": v})
        for j, v in enumerate(values):
            latest.append({"run_id": run_id, "key": f"m{j}", "value": v, "step": 0})
            points.append({"run_id": run_id, "key": f"m{j}", "value": v, "step": 0, "timestamp": at.timestamp()})
    with engine.begin() as conn:
        conn.execute(s.runs.insert(), runs)
        conn.execute(s.run_params.insert(), params)
        conn.execute(s.latest_metrics.insert(), latest)
        conn.execute(s.metric_points.insert(), points)


def _drop_all(url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    main()
