"""Experiments and runs: params, tags, metric series, inputs, artifacts, and run search in SQL.

The search compiler (filter -> SQL semi-joins) is _run_search.py; reading a page of runs back
into entities is _run_load.py.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from keel.entities import BoolOp, Comparison, MetricPoint, OrderBy, Run, RunStatus
from keel.errors import ConflictError, InvalidInputError, NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, upsert, utc
from keel.storage._run_load import base_query, load_runs
from keel.storage._run_search import search_runs

__all__ = ["RunStore", "RunOwner"]


def as_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _same_param(stored: str, new: str) -> bool:
    """'6' and '6.0' are the same param value; a string is only the same as itself."""
    if stored == new:
        return True
    a, b = as_number(stored), as_number(new)
    return a is not None and a == b


@dataclass(frozen=True)
class RunOwner:
    """A running run and what tells whether it is alive: its last heartbeat and owning process."""

    run_id: str
    started_at: datetime
    heartbeat_at: datetime  # its start when it never beat
    host: str | None  # None for a run driven over HTTP: no local process owns it
    pid: int | None
    token: str | None  # identifies the process beyond its pid (see keel.tracking._liveness)


class RunStore(Transactional):
    # -- writes ---------------------------------------------------------------------------
    def create(
        self,
        *,
        run_id: str,
        experiment: str,
        name: str,
        author: str,
        code_version: str | None,
        environment: dict[str, str],
        started_at: datetime,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        input_ids: Iterable[int] = (),
        owner_host: str | None = None,
        owner_pid: int | None = None,
        owner_token: str | None = None,
    ) -> None:
        """Create a running run with its first params, tags and inputs, in one transaction.

        Its heartbeat starts at `started_at`; owner_* name the process that runs it (None: no
        local process, a run kept alive by writes over the API).
        """
        with self.begin() as conn:
            exp_id = conn.execute(_EXPERIMENT_ID, {"name": experiment}).scalar()
            if exp_id is None:
                exp_id = self._create_experiment(conn, experiment)
            conn.execute(
                s.runs.insert(),
                {
                    "id": run_id,
                    "experiment_id": exp_id,
                    "name": name,
                    "status": RunStatus.RUNNING.value,
                    "started_at": started_at,
                    "code_version": code_version,
                    "environment": environment,
                    "author": author,
                    "heartbeat_at": started_at,
                    "owner_host": owner_host,
                    "owner_pid": owner_pid,
                    "owner_token": owner_token,
                },
            )
            if params:
                conn.execute(
                    s.run_params.insert(),
                    [{"run_id": run_id, "key": k, "value": v, "value_num": as_number(v)} for k, v in params.items()],
                )
            if tags:
                conn.execute(s.run_tags.insert(), [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()])
            ids = sorted(set(input_ids))
            if ids:
                conn.execute(s.run_inputs.insert(), [{"run_id": run_id, "dataset_version_id": i} for i in ids])

    def _create_experiment(self, conn: Connection, name: str) -> int:
        ins: Any = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(s.experiments)
        conn.execute(ins.values(name=name, created_at=now()).on_conflict_do_nothing(index_elements=["name"]))
        return int(conn.execute(select(s.experiments.c.id).where(s.experiments.c.name == name)).scalar_one())

    def log_params(self, run_id: str, params: dict[str, str], *, touch_at: datetime | None = None) -> None:
        """Record params; logging a param again with a different value is a ConflictError.

        `touch_at` (here and in the other writes): also move the run's heartbeat to that time.
        """
        if not params and touch_at is None:
            return
        with self.begin() as conn:
            self._require(conn, run_id)
            _touch(conn, run_id, touch_at)
            if not params:
                return
            stored = dict(
                conn.execute(
                    select(s.run_params.c.key, s.run_params.c.value).where(
                        s.run_params.c.run_id == run_id, s.run_params.c.key.in_(list(params))
                    )
                ).all()
            )
            for key, value in params.items():
                if key in stored and not _same_param(stored[key], value):
                    raise ConflictError(
                        f"Run {run_id} already has param {key!r}={stored[key]!r}; params are immutable "
                        f"(got {value!r}). Log it under another key or start a new run."
                    )
            new = [
                {"run_id": run_id, "key": k, "value": v, "value_num": as_number(v)}
                for k, v in params.items()
                if k not in stored
            ]
            if new:
                conn.execute(s.run_params.insert(), new)

    def set_tags(self, run_id: str, tags: dict[str, str], *, touch_at: datetime | None = None) -> None:
        if not tags and touch_at is None:
            return
        with self.begin() as conn:
            self._require(conn, run_id)
            _touch(conn, run_id, touch_at)
            upsert(
                conn,
                s.run_tags,
                [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()],
                ["run_id", "key"],
                ["value"],
            )

    def log_metric_points(
        self, run_id: str, points: Sequence[tuple[str, float, int, float]], *, touch_at: datetime | None = None
    ) -> None:
        """Write a batch of (key, value, step, timestamp) in one transaction."""
        if not points and touch_at is None:
            return
        with self.begin() as conn:
            _touch(conn, run_id, touch_at)
            if points:
                _write_points(conn, run_id, points)

    def add_inputs(self, run_id: str, dataset_version_ids: Iterable[int], *, touch_at: datetime | None = None) -> None:
        ids = sorted(set(dataset_version_ids))
        if not ids and touch_at is None:
            return
        with self.begin() as conn:
            self._require(conn, run_id)
            _touch(conn, run_id, touch_at)
            have = set(
                conn.execute(select(s.run_inputs.c.dataset_version_id).where(s.run_inputs.c.run_id == run_id)).scalars()
            )
            new = [{"run_id": run_id, "dataset_version_id": i} for i in ids if i not in have]
            if new:
                conn.execute(s.run_inputs.insert(), new)

    def add_artifact(self, run_id: str, path: str, digest: str, size_bytes: int) -> None:
        """Record (or replace) the artifact at `path`; the blob it replaces becomes garbage."""
        owner = f"run:{run_id}:{path}"
        with self.begin() as conn:
            self._require(conn, run_id)
            conn.execute(delete(s.blob_refs).where(s.blob_refs.c.owner == owner, s.blob_refs.c.digest != digest))
            upsert(
                conn,
                s.run_artifacts,
                [{"run_id": run_id, "path": path, "digest": digest, "size_bytes": size_bytes}],
                ["run_id", "path"],
                ["digest", "size_bytes"],
            )
            upsert(conn, s.blob_refs, [{"digest": digest, "owner": owner}], ["digest", "owner"], ["digest"])

    def finish(
        self, run_id: str, status: RunStatus, ended_at: datetime, points: Sequence[tuple[str, float, int, float]] = ()
    ) -> None:
        """End a running run, writing its last metric `points` in the same transaction.

        A run already ended keeps its first status and end time.
        """
        with self.begin() as conn:
            self._require(conn, run_id)
            if points:
                _write_points(conn, run_id, points)
            conn.execute(_FINISH, {"run_id": run_id, "new_status": status.value, "at": ended_at})

    # -- liveness -------------------------------------------------------------------------
    def heartbeat(self, run_ids: Sequence[str], at: datetime) -> set[str]:
        """Move the heartbeat of the running runs `run_ids` to `at` in one statement; return those of
        `run_ids` that are no longer running (ended, or marked killed by another process)."""
        if not run_ids:
            return set()
        with self.begin() as conn:
            beat = conn.execute(_HEARTBEAT, {"ids": list(run_ids), "at": at})
            if beat.rowcount == len(run_ids):
                return set()
            running = conn.execute(_STILL_RUNNING, {"ids": list(run_ids)}).scalars()
            return set(run_ids) - set(running)

    def release(self, run_id: str, at: datetime) -> None:
        """Let go of a running run: no local process owns it any more; its heartbeat is now `at`."""
        with self.begin() as conn:
            conn.execute(
                s.runs.update()
                .where(s.runs.c.id == run_id, s.runs.c.status == RunStatus.RUNNING.value)
                .values(heartbeat_at=at, owner_host=None, owner_pid=None, owner_token=None)
            )

    def running_owners(self) -> list[RunOwner]:
        """Every running run with its heartbeat and owner (for the check of which are still alive)."""
        r = s.runs.c
        q = select(r.id, r.started_at, r.heartbeat_at, r.owner_host, r.owner_pid, r.owner_token).where(
            r.status == RunStatus.RUNNING.value
        )
        with self.connect() as conn:
            return [
                RunOwner(
                    row.id,
                    utc(row.started_at),  # type: ignore[arg-type]  # started_at is NOT NULL
                    utc(row.heartbeat_at or row.started_at),  # type: ignore[arg-type]
                    row.owner_host,
                    row.owner_pid,
                    row.owner_token,
                )
                for row in conn.execute(q)
            ]

    def mark_killed(self, owner: RunOwner, reason: str, *, silent_since: datetime | None = None) -> bool:
        """Mark a running run killed, ended at its last heartbeat, with `reason` in its tag
        'keel.killed_reason'; return whether it was.

        Only if nothing changed since `owner` was read: the same owning process and, with
        `silent_since`, a heartbeat still older than that (a run that beat meanwhile is alive).
        """
        r = s.runs.c
        last = func.coalesce(r.heartbeat_at, r.started_at)
        cond = [
            r.id == owner.run_id,
            r.status == RunStatus.RUNNING.value,
            r.owner_pid.is_(None) if owner.pid is None else r.owner_pid == owner.pid,
            r.owner_token.is_(None) if owner.token is None else r.owner_token == owner.token,
        ]
        if silent_since is not None:
            cond.append(last < silent_since)
        with self.begin() as conn:
            done = conn.execute(
                s.runs.update().where(*cond).values(status=RunStatus.KILLED.value, ended_at=last)
            ).rowcount
            if done:
                upsert(
                    conn,
                    s.run_tags,
                    [{"run_id": owner.run_id, "key": _KILLED_TAG, "value": reason}],
                    ["run_id", "key"],
                    ["value"],
                )
            return bool(done)

    def next_steps(self, run_id: str, keys: Sequence[str]) -> dict[str, int]:
        """For each metric key, one past its highest stored step (keys without points are left out)."""
        mp = s.metric_points
        with self.connect() as conn:
            rows = conn.execute(
                select(mp.c.key, func.max(mp.c.step))
                .where(mp.c.run_id == run_id, mp.c.key.in_(list(keys)))
                .group_by(mp.c.key)
            )
            return {key: int(step) + 1 for key, step in rows}

    def _require(self, conn: Connection, run_id: str) -> None:
        if conn.execute(_RUN_ID, {"id": run_id}).first() is None:
            raise NotFoundError(f"No run with id {run_id!r}")

    # -- reads ----------------------------------------------------------------------------
    def resolve_id(self, run_id: str) -> str:
        """The full id of a run given its id or a unique prefix of at least 6 characters."""
        with self.connect() as conn:
            if conn.execute(select(s.runs.c.id).where(s.runs.c.id == run_id)).first() is not None:
                return run_id
            if len(run_id) >= 6 and all(c in "0123456789abcdef" for c in run_id):
                ids: Sequence[str] = (
                    conn.execute(select(s.runs.c.id).where(s.runs.c.id.like(f"{run_id}%")).limit(2)).scalars().all()
                )
                if len(ids) == 1:
                    return ids[0]
                if len(ids) > 1:
                    raise InvalidInputError(f"Run id prefix {run_id!r} is ambiguous: give more characters")
        raise NotFoundError(f"No run with id {run_id!r}")

    def get(self, run_id: str) -> Run:
        full = self.resolve_id(run_id)
        with self.connect() as conn:
            return load_runs(conn, base_query().where(s.runs.c.id == full))[0]

    def list(self, *, experiment: str | None = None, limit: int = 100) -> list[Run]:
        return self.search(None, order_by=[], experiment=experiment, limit=limit)

    def search(
        self,
        where: Comparison | BoolOp | None,
        *,
        order_by: Sequence[OrderBy],
        experiment: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Run]:
        with self.connect() as conn:
            return search_runs(conn, where, order_by, experiment, limit)

    def reading(self, dataset_version_id: int) -> builtins.list[Run]:
        """Every run that read this dataset version, newest first."""
        ids = select(s.run_inputs.c.run_id).where(s.run_inputs.c.dataset_version_id == dataset_version_id)
        q = base_query().where(s.runs.c.id.in_(ids)).order_by(s.runs.c.started_at.desc(), s.runs.c.id)
        with self.connect() as conn:
            return load_runs(conn, q)

    def metric_history(self, run_id: str, key: str | None = None) -> builtins.list[MetricPoint]:
        full = self.resolve_id(run_id)
        q = select(s.metric_points).where(s.metric_points.c.run_id == full)
        if key is not None:
            q = q.where(s.metric_points.c.key == key)
        q = q.order_by(s.metric_points.c.key, s.metric_points.c.step, s.metric_points.c.id)
        with self.connect() as conn:
            return [MetricPoint(r.key, r.value, r.step, r.timestamp) for r in conn.execute(q)]

    def keys(self, kind: str, *, experiment: str | None = None) -> builtins.list[str]:
        """The distinct metric or param keys ('metrics' or 'params') any run (of `experiment`) has."""
        t = s.latest_metrics if kind == "metrics" else s.run_params
        q = select(t.c.key).distinct().order_by(t.c.key)
        if experiment is not None:
            q = (
                q.join(s.runs, s.runs.c.id == t.c.run_id)
                .join(s.experiments, s.experiments.c.id == s.runs.c.experiment_id)
                .where(s.experiments.c.name == experiment)
            )
        with self.connect() as conn:
            return [r[0] for r in conn.execute(q)]

    def experiments(self) -> builtins.list[tuple[str, int]]:
        q = (
            select(s.experiments.c.name, func.count(s.runs.c.id))
            .outerjoin(s.runs, s.runs.c.experiment_id == s.experiments.c.id)
            .group_by(s.experiments.c.id)
            .order_by(s.experiments.c.name)
        )
        with self.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(q)]


# The statements of the hot write path, built once (SQLAlchemy then finds them in its compile cache
# without building the expression again on every run).
_EXPERIMENT_ID = select(s.experiments.c.id).where(s.experiments.c.name == bindparam("name"))
_RUN_ID = select(s.runs.c.id).where(s.runs.c.id == bindparam("id"))
_FINISH = (
    s.runs.update()
    .where(s.runs.c.id == bindparam("run_id"), s.runs.c.status == RunStatus.RUNNING.value)
    .values(status=bindparam("new_status"), ended_at=bindparam("at"))
)


_HEARTBEAT = (
    s.runs.update()
    .where(s.runs.c.id.in_(bindparam("ids", expanding=True)), s.runs.c.status == RunStatus.RUNNING.value)
    .values(heartbeat_at=bindparam("at"))
)
_STILL_RUNNING = select(s.runs.c.id).where(
    s.runs.c.id.in_(bindparam("ids", expanding=True)), s.runs.c.status == RunStatus.RUNNING.value
)
_KILLED_TAG = "keel.killed_reason"


def _touch(conn: Connection, run_id: str, at: datetime | None) -> None:
    """Move a running run's heartbeat to `at` (a write over the API is its sign of life)."""
    if at is not None:
        conn.execute(_HEARTBEAT, {"ids": [run_id], "at": at})


def _latest_upsert(dialect: str) -> Any:
    ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(s.latest_metrics)
    return ins.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={"value": ins.excluded.value, "step": ins.excluded.step},
        where=ins.excluded.step >= s.latest_metrics.c.step,
    )


_SQLITE_POINTS = 'INSERT INTO metric_points (run_id, "key", value, step, "timestamp") VALUES (?, ?, ?, ?, ?)'
_LATEST_UPSERT = {dialect: _latest_upsert(dialect) for dialect in ("sqlite", "postgresql")}


def _write_points(conn: Connection, run_id: str, points: Sequence[tuple[str, float, int, float]]) -> None:
    """Insert points and move each series' latest value (one transaction: the caller's)."""
    latest: dict[str, tuple[str, float, int, float]] = {}
    for p in points:
        cur = latest.get(p[0])
        if cur is None or (p[2], p[3]) >= (cur[2], cur[3]):
            latest[p[0]] = p
    if conn.dialect.name == "sqlite":  # the driver takes the tuples as they are: no per-row work in Python
        conn.exec_driver_sql(_SQLITE_POINTS, [(run_id, k, v, st, ts) for k, v, st, ts in points])
    else:
        conn.execute(
            s.metric_points.insert(),
            [{"run_id": run_id, "key": k, "value": v, "step": st, "timestamp": ts} for k, v, st, ts in points],
        )
    conn.execute(
        _LATEST_UPSERT[conn.dialect.name],
        [{"run_id": run_id, "key": k, "value": v, "step": st} for k, v, st, _ in latest.values()],
    )
