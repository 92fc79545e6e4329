"""MLflow's side of bench/tracking_scale.py: the same runs in MLflow's store, and its search timed.

MLflow's API writes a run in about 20 ms (bench/tracking.py: 1,000 runs in 19.6 s), so a million
runs would take hours; the runs go straight into MLflow's own tables instead (the SQLAlchemy
models of `mlflow.store.tracking.dbmodels.models`), with SQLAlchemy core bulk inserts, after
`MlflowClient` created the schema and the experiment. Each run gets what MLflow's fluent API writes
for a run with these params and metrics: the run row, its params, one metric point and the latest
value per metric, and the tags `start_run` sets (run name, user, source).

The search runs in a child process (`python bench/_mlflow_scale.py URL EXPERIMENT WHERE ORDER
REPEATS LIMIT_S`) so that a query slower than the time limit is reported as "did not finish in N s"
and killed, not waited on. The child prints one JSON line per call.

Needs MLflow in the interpreter that runs the bench (`.venv-bench/bin/python`).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

# A chunk of generated runs: (run id, index, start time, params [(key, value)], metric values m0..).
RunRow = tuple[str, int, datetime, list[tuple[str, float]], list[float]]


def mlflow_available() -> bool:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def store_url(keel_url: str, folder: Path, n: int) -> str:
    """MLflow's own database beside Keel's: a SQLite file, or a second database on the PostgreSQL server
    (both tools name their tables `runs`, `experiments`, `latest_metrics`, so they cannot share one)."""
    if keel_url.startswith("sqlite"):
        return f"sqlite:///{folder / f'mlflow-{n}.db'}"
    url = make_url(keel_url)
    # One database per size: MLflow keeps its store per URI in the process, with the schema it found there.
    name = f"{url.database}_mlflow_{n}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


class MlflowLoad:
    """MLflow's store with one experiment; `write` adds a chunk of runs in bulk."""

    def __init__(self, url: str, artifacts: Path) -> None:
        from _common import quiet_mlflow

        quiet_mlflow()
        from mlflow.store.tracking.dbmodels import models as m
        from mlflow.tracking import MlflowClient

        self.url = url
        client = MlflowClient(tracking_uri=url)  # creates the schema (MLflow's own migrations)
        self.experiment_id = client.create_experiment("scale", artifact_location=artifacts.as_uri())
        self.artifacts = artifacts.as_uri()
        self.tables = [x.__table__ for x in (m.SqlRun, m.SqlParam, m.SqlLatestMetric, m.SqlMetric, m.SqlTag)]
        self.engine = create_engine(url)

    def write(self, chunk: list[RunRow]) -> None:
        runs: list[dict[str, Any]] = []
        params: list[dict[str, Any]] = []
        latest: list[dict[str, Any]] = []
        points: list[dict[str, Any]] = []
        tags: list[dict[str, Any]] = []
        for run_id, i, at, run_params, values in chunk:
            ms = int(at.timestamp() * 1000)
            runs.append(
                {
                    "run_uuid": run_id,
                    "name": f"run-{i}",
                    "source_type": "LOCAL",
                    "source_name": "bench.py",
                    "entry_point_name": "",
                    "user_id": "bench",
                    "status": "FINISHED",
                    "start_time": ms,
                    "end_time": ms + 30_000,
                    "deleted_time": None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": f"{self.artifacts}/{run_id}/artifacts",
                    "experiment_id": int(self.experiment_id),
                }
            )
            params.extend({"run_uuid": run_id, "key": k, "value": repr(v)} for k, v in run_params)
            for j, v in enumerate(values):
                row = {"run_uuid": run_id, "key": f"m{j}", "value": v, "timestamp": ms, "step": 0, "is_nan": False}
                latest.append(row)
                points.append(row)
            tags.extend(
                {"run_uuid": run_id, "key": k, "value": v}
                for k, v in (
                    ("mlflow.runName", f"run-{i}"),
                    ("mlflow.user", "bench"),
                    ("mlflow.source.name", "bench.py"),
                    ("mlflow.source.type", "LOCAL"),
                )
            )
        with self.engine.begin() as conn:
            for table, rows in zip(self.tables, (runs, params, latest, points, tags), strict=True):
                conn.execute(table.insert(), rows)

    def finish(self) -> None:
        if self.engine.dialect.name == "postgresql":  # as for Keel's store: what autovacuum does soon after
            with self.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        self.engine.dispose()


@dataclass(frozen=True)
class MlflowTiming:
    """Seconds per `search_runs` call after a warm-up call, and the run ids the warm-up returned;
    `timed_out` says the call in flight passed `limit_s` (the figures before it are kept)."""

    times: list[float]
    run_ids: list[str]
    timed_out: bool
    limit_s: float
    note: str = ""


def time_search(url: str, experiment_id: str, where: str, order: str, repeats: int, limit_s: float) -> MlflowTiming:
    """`MlflowClient.search_runs` timed in a child process; a call over `limit_s` ends the child."""
    args = [sys.executable, str(Path(__file__).resolve()), url, experiment_id, where, order, str(repeats), str(limit_s)]
    errors = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty child never blocks on it
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    times: list[float] = []
    ids: list[str] = []
    first = True
    while True:
        # The child's imports and MLflow's schema check come before its first line: not timed, but bounded.
        try:
            line = lines.get(timeout=limit_s + (120 if first else 0))
        except queue.Empty:
            child.kill()
            child.wait()
            return MlflowTiming(times, ids, True, limit_s)
        if line is None:
            break
        msg = json.loads(line)
        if "ready" in msg:
            first = False
        elif "ids" in msg:
            ids = msg["ids"]
        elif "s" in msg:
            times.append(msg["s"])
    if child.wait() != 0:
        errors.seek(0)
        raise SystemExit(f"MLflow's search failed in its child process:\n{errors.read()[-2000:]}")
    errors.close()
    return MlflowTiming(times, ids, False, limit_s)


def _child(url: str, experiment_id: str, where: str, order: str, repeats: int, limit_s: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import quiet_mlflow

    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    client.get_experiment(experiment_id)  # opens the store (schema check) before the clock

    def search() -> Any:
        return client.search_runs([experiment_id], filter_string=where, order_by=[order], max_results=100)

    def say(msg: dict[str, Any]) -> None:
        print(json.dumps(msg), flush=True)

    say({"ready": True})
    found = search()  # warm: statement cache, page cache (as Keel's side)
    say({"ids": [r.info.run_id for r in found]})
    spent = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        search()
        took = time.perf_counter() - t0
        say({"s": took})
        spent += took
        if spent > limit_s:  # enough calls for a median of slow queries; the bench stays in minutes
            break


if __name__ == "__main__":
    u, e, w, o, r, lim = sys.argv[1:7]
    _child(u, e, w, o, int(r), float(lim))
