"""Run search at scale (issue 17): `ws.runs.search` p50/p95 over 1k, 10k, 100k (and 1M) runs.

The query is the issue's: `metrics.m0 > 0.5` ordered by `metrics.m1 desc`, limit 100 (half the
runs match: the filter alone cannot narrow the work). A second row times a selective filter
(`metrics.m0 > 0.999`, 0.1% of the runs) with the same order, the other side of the plan choice.
The dashboard's runs page (GET /runs: the newest runs, and the issue's query) is timed too.

The runs are written in bulk straight into the store's own tables (runs, run_params,
latest_metrics, metric_points), in the shape `ws.runs` writes them: 4 params and 4 metrics per
run, each metric with one point and its latest value. One API call per run would take hours at
1M runs; the search reads only these tables.

.venv/bin/python bench/tracking_scale.py                           # 1k, 10k, 100k on SQLite
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
    args = parser.parse_args()
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
                    _measure(ws, store, n, args)
                finally:
                    ws.close()


def _measure(ws: keel.Workspace, store: str, n: int, args: argparse.Namespace) -> None:
    engine: Engine = ws._meta.engine  # noqa: SLF001 - the bench writes the store's tables directly
    start = time.perf_counter()
    metrics = _fill(engine, n)
    wrote = time.perf_counter() - start
    print(f"\n[{store}] {n:,} runs written in {wrote:.1f} s")
    for label, (where, order) in QUERIES.items():
        found = [r.metrics["m1"] for r in ws.runs.search(where, order_by=order, limit=LIMIT)]
        _check(found, metrics, float(where.rsplit(">", 1)[1]))
        times = _time(lambda w=where, o=order: ws.runs.search(w, order_by=o, limit=LIMIT), args.repeats)
        _line(f"{label}", times, GOALS_S.get(n))
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
    verdict = ""
    if goal is not None:
        verdict = f"goal <= {goal * 1000:.0f} ms: " + ("met" if p50 <= goal else "MISSED")
    print(f"  {label:<28} p50 {p50 * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  {verdict}")


def _fill(engine: Engine, n: int) -> list[list[float]]:
    """n finished runs in one experiment, written in bulk; returns each run's metric values."""
    rng = random.Random(n)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        exp_id = conn.execute(
            s.experiments.insert().values(name="scale", created_at=t0).returning(s.experiments.c.id)
        ).scalar_one()
    all_metrics: list[list[float]] = []
    for lo in range(0, n, CHUNK):
        runs, params, latest, points = [], [], [], []
        for i in range(lo, min(n, lo + CHUNK)):
            run_id = uuid.UUID(int=rng.getrandbits(128)).hex
            at = t0 + timedelta(seconds=i)
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
            for j in range(N_PARAMS):
                v = rng.choice([0.01, 0.1, 1.0, 10.0]) * (j + 1)
                params.append({"run_id": run_id, "key": f"p{j}", "value": repr(v), "value_num": v})
            values = [rng.random() for _ in range(N_METRICS)]
            all_metrics.append(values)
            for j, v in enumerate(values):
                latest.append({"run_id": run_id, "key": f"m{j}", "value": v, "step": 0})
                points.append({"run_id": run_id, "key": f"m{j}", "value": v, "step": 0, "timestamp": at.timestamp()})
        with engine.begin() as conn:
            conn.execute(s.runs.insert(), runs)
            conn.execute(s.run_params.insert(), params)
            conn.execute(s.latest_metrics.insert(), latest)
            conn.execute(s.metric_points.insert(), points)
    if engine.dialect.name == "postgresql":  # what autovacuum does soon after a bulk load; Keel never
        with engine.begin() as conn:  # runs ANALYZE on SQLite, so neither does the bench there
            conn.execute(text("ANALYZE"))
    return all_metrics


def _drop_all(url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    main()
