"""Experiments and runs: params, tags, metric series, inputs, artifacts, and run search in SQL."""

from __future__ import annotations

import functools
import json
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    ColumnElement,
    Float,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from keel.entities import ArtifactRecord, BoolOp, Comparison, MetricPoint, OrderBy, Run, RunStatus
from keel.errors import ConflictError, InvalidInputError, NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, upsert, utc

__all__ = ["RunStore", "RunOwner"]

_ATTRIBUTES = {
    "name": s.runs.c.name,
    "status": s.runs.c.status,
    "started_at": s.runs.c.started_at,
    "ended_at": s.runs.c.ended_at,
    "author": s.runs.c.author,
    "code_version": s.runs.c.code_version,
    "id": s.runs.c.id,
    "experiment": s.experiments.c.name,
}


_STATUS = {status.value: status for status in RunStatus}
_TIME_ATTRIBUTES = {"started_at", "ended_at"}


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
            upsert(conn, s.run_tags, [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()], ["run_id", "key"], ["value"])

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
                RunOwner(row.id, utc(row.started_at), utc(row.heartbeat_at or row.started_at), row.owner_host,  # type: ignore[arg-type]
                         row.owner_pid, row.owner_token)  # fmt: skip
                for row in conn.execute(q)
            ]

    def mark_killed(
        self,
        owner: RunOwner,
        reason: str,
        *,
        silent_since: datetime | None = None,
    ) -> bool:
        """Mark a running run killed, ended at its last heartbeat, with `reason` in its tag
        'keel.killed_reason'; return whether it was.

        Only if nothing changed since `owner` was read: the same owning process and, with
        `silent_since`, a heartbeat still older than that (a run that beat meanwhile is alive).
        """
        r = s.runs.c
        last = func.coalesce(r.heartbeat_at, r.started_at)
        cond = [r.id == owner.run_id, r.status == RunStatus.RUNNING.value,
                r.owner_pid.is_(None) if owner.pid is None else r.owner_pid == owner.pid,
                r.owner_token.is_(None) if owner.token is None else r.owner_token == owner.token]  # fmt: skip
        if silent_since is not None:
            cond.append(last < silent_since)
        with self.begin() as conn:
            done = conn.execute(
                s.runs.update().where(*cond).values(status=RunStatus.KILLED.value, ended_at=last)
            ).rowcount
            if done:
                upsert(conn, s.run_tags, [{"run_id": owner.run_id, "key": _KILLED_TAG, "value": reason}],
                       ["run_id", "key"], ["value"])  # fmt: skip
            return bool(done)

    def next_steps(self, run_id: str, keys: Sequence[str]) -> dict[str, int]:
        """For each metric key, one past its highest stored step (keys without points are left out)."""
        mp = s.metric_points
        with self.connect() as conn:
            rows = conn.execute(
                select(mp.c.key, func.max(mp.c.step)).where(mp.c.run_id == run_id, mp.c.key.in_(list(keys))).group_by(mp.c.key)
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
                ids = conn.execute(select(s.runs.c.id).where(s.runs.c.id.like(f"{run_id}%")).limit(2)).scalars().all()
                if len(ids) == 1:
                    return ids[0]
                if len(ids) > 1:
                    raise InvalidInputError(f"Run id prefix {run_id!r} is ambiguous: give more characters")
        raise NotFoundError(f"No run with id {run_id!r}")

    def get(self, run_id: str) -> Run:
        full = self.resolve_id(run_id)
        with self.connect() as conn:
            return self._load(conn, _base_query().where(s.runs.c.id == full))[0]

    def list(self, *, experiment: str | None = None, limit: int = 100) -> list[Run]:
        return self.search(None, order_by=[], experiment=experiment, limit=limit)

    def search(
        self,
        where: Comparison | BoolOp | None,
        *,
        order_by: Sequence[OrderBy],
        experiment: str | None = None,
        limit: int = 100,
    ) -> list[Run]:
        key = (where, tuple(order_by), experiment, limit)
        q = _SEARCHES.get(key)
        if q is None:
            q = _search_statement(where, order_by, experiment, limit)
            with _searches_lock:  # a dashboard asks the same few searches again and again
                while len(_SEARCHES) >= 256:
                    _SEARCHES.pop(next(iter(_SEARCHES)))
                _SEARCHES[key] = q
        with self.connect() as conn:
            return self._load(conn, q)

    def _load(self, conn: Connection, q: Any) -> list[Run]:
        rows = conn.execute(q).all()
        ids = [r.id for r in rows]
        if not ids:
            return []
        params: dict[str, dict[str, str]] = defaultdict(dict)
        metrics: dict[str, dict[str, float]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        inputs: dict[str, list[tuple[str, int]]] = defaultdict(list)
        artifacts: dict[str, list[ArtifactRecord]] = defaultdict(list)
        # A page of runs is a few thousand (run, key, value) rows: fetched as plain tuples by one
        # statement compiled once, not by a query per table iterated row by row.
        for chunk in _chunks(ids, 500):
            for kind, run_id, key, text_value, number in _details(conn, chunk):
                if kind == 0:
                    params[run_id][key] = text_value
                elif kind == 1:
                    metrics[run_id][key] = number
                elif kind == 2:
                    tags[run_id][key] = text_value
                elif kind == 3:
                    inputs[run_id].append((key, int(number)))
                else:
                    artifacts[run_id].append(ArtifactRecord(key, text_value, int(number)))
        environments: dict[str, dict[str, str]] = {}  # runs of one process share theirs: decode each once
        no_inputs: list[tuple[str, int]] = []
        no_artifacts: list[ArtifactRecord] = []
        return [
            Run(
                id=r.id,
                experiment=r.experiment,
                name=r.name,
                status=_STATUS[r.status],
                started_at=utc(r.started_at),  # type: ignore[arg-type]
                ended_at=utc(r.ended_at),
                params=params[r.id],
                metrics=metrics[r.id],
                tags=tags[r.id],
                inputs=tuple(f"{name}@{version}" for name, version in sorted(inputs.get(r.id, no_inputs))),
                artifacts=tuple(sorted(artifacts.get(r.id, no_artifacts), key=lambda a: a.path)),
                code_version=r.code_version,
                environment=_environment(r.environment, environments),
                author=r.author,
            )
            for r in rows
        ]

    def reading(self, dataset_version_id: int) -> list[Run]:
        """Every run that read this dataset version, newest first."""
        ids = select(s.run_inputs.c.run_id).where(s.run_inputs.c.dataset_version_id == dataset_version_id)
        q = _base_query().where(s.runs.c.id.in_(ids)).order_by(s.runs.c.started_at.desc(), s.runs.c.id)
        with self.connect() as conn:
            return self._load(conn, q)

    def metric_history(self, run_id: str, key: str | None = None) -> list[MetricPoint]:
        full = self.resolve_id(run_id)
        q = select(s.metric_points).where(s.metric_points.c.run_id == full)
        if key is not None:
            q = q.where(s.metric_points.c.key == key)
        q = q.order_by(s.metric_points.c.key, s.metric_points.c.step, s.metric_points.c.id)
        with self.connect() as conn:
            return [MetricPoint(r.key, r.value, r.step, r.timestamp) for r in conn.execute(q)]

    def keys(self, kind: str, *, experiment: str | None = None) -> list[str]:
        """The distinct metric or param keys ('metrics' or 'params') any run (of `experiment`) has."""
        t = s.latest_metrics if kind == "metrics" else s.run_params
        q = select(t.c.key).distinct().order_by(t.c.key)
        if experiment is not None:
            q = (q.join(s.runs, s.runs.c.id == t.c.run_id).join(s.experiments, s.experiments.c.id == s.runs.c.experiment_id)
                 .where(s.experiments.c.name == experiment))  # fmt: skip
        with self.connect() as conn:
            return [r[0] for r in conn.execute(q)]

    def experiments(self) -> list[tuple[str, int]]:
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


_SEARCHES: dict[Any, Any] = {}  # built search statements by (filter, order, experiment, limit)
_searches_lock = threading.Lock()


def _search_statement(
    where: Comparison | BoolOp | None, order_by: Sequence[OrderBy], experiment: str | None, limit: int
) -> Any:
    q = _base_query()
    if experiment is not None:
        q = q.where(s.experiments.c.name == experiment)
    terms = where.terms if isinstance(where, BoolOp) and where.op == "and" else (() if where is None else (where,))
    for i, term in enumerate(terms):
        table = _KEYED.get(term.kind) if isinstance(term, Comparison) else None
        if table is not None:  # a top-level AND term: a join on (run, key), which is unique
            f = table.alias(f"filter_{i}")
            q = q.join(f, and_(f.c.run_id == s.runs.c.id, _keyed(f, term)))  # type: ignore[arg-type]
        else:
            q = q.where(_compile(term))
    for i, o in enumerate(order_by):
        direction = _descending if o.descending else _ascending
        # Runs without the metric or param (NULL) sort last, ascending or descending.
        if o.kind == "metrics":
            m = s.latest_metrics.alias(f"order_m{i}")
            q = q.outerjoin(m, and_(m.c.run_id == s.runs.c.id, m.c.key == o.key))
            keys = [m.c.value.is_(None), direction(m.c.value)]
        elif o.kind == "params":
            # Numbers in numeric order first, then text values in text order.
            p = s.run_params.alias(f"order_p{i}")
            q = q.outerjoin(p, and_(p.c.run_id == s.runs.c.id, p.c.key == o.key))
            keys = [p.c.value.is_(None), p.c.value_num.is_(None), direction(p.c.value_num), direction(p.c.value)]
        else:
            col = _ATTRIBUTES.get(o.key)
            if col is None:
                raise InvalidInputError(f"Cannot order by attribute {o.key!r}; known: {', '.join(sorted(_ATTRIBUTES))}")
            keys = [col.is_(None), direction(col)]
        q = q.order_by(*keys)
    return q.order_by(s.runs.c.started_at.desc(), s.runs.c.id).limit(limit)


def _details_of() -> Any:
    """Params, latest metrics, tags, inputs and artifacts of the runs `ids`, as
    (kind, run_id, key, text, number) rows: one UNION ALL, so a page is two round trips."""
    ids = bindparam("ids", expanding=True)
    no_text, no_number = cast(null(), Text), cast(null(), Float)
    p, m, t, a = s.run_params, s.latest_metrics, s.run_tags, s.run_artifacts
    return union_all(
        select(literal_column("0"), p.c.run_id, p.c.key, p.c.value, no_number).where(p.c.run_id.in_(ids)),
        select(literal_column("1"), m.c.run_id, m.c.key, no_text, m.c.value).where(m.c.run_id.in_(ids)),
        select(literal_column("2"), t.c.run_id, t.c.key, t.c.value, no_number).where(t.c.run_id.in_(ids)),
        select(literal_column("3"), s.run_inputs.c.run_id, s.datasets.c.name, no_text, cast(s.dataset_versions.c.version, Float))
        .join(s.dataset_versions, s.dataset_versions.c.id == s.run_inputs.c.dataset_version_id)
        .join(s.datasets, s.datasets.c.id == s.dataset_versions.c.dataset_id)
        .where(s.run_inputs.c.run_id.in_(ids)),
        select(literal_column("4"), a.c.run_id, a.c.path, a.c.digest, cast(a.c.size_bytes, Float)).where(a.c.run_id.in_(ids)),
    )


_DETAILS_OF = _details_of()


def _details(conn: Connection, ids: list[str]) -> list[Any]:
    """_DETAILS_OF's rows for `ids`. On SQLite straight through the driver's cursor (plain tuples,
    none of SQLAlchemy's per-statement and per-row work): a search page reads a few thousand."""
    if conn.dialect.name != "sqlite":
        return conn.execute(_DETAILS_OF, {"ids": ids}).all()  # type: ignore[no-any-return]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return cursor.execute(_sqlite_details(len(ids)), ids * _DETAILS_PARTS).fetchall()
    finally:
        cursor.close()


_DETAILS_PARTS = 5  # the IN lists of _DETAILS_OF, each bound to the same ids


@functools.lru_cache(maxsize=8)
def _sqlite_details(n: int) -> str:
    """_DETAILS_OF compiled for SQLite with `n` ids in each of its IN lists."""
    compiled = _DETAILS_OF.params(ids=[""] * n).compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
    assert len(compiled.positiontup or ()) == n * _DETAILS_PARTS
    return str(compiled)


def _environment(stored: Any, seen: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment column as a dict; its JSON text is decoded once per distinct value."""
    if not isinstance(stored, str):  # PostgreSQL's driver decodes json itself
        return dict(stored or {})
    if stored not in seen:
        seen[stored] = json.loads(stored)
    return dict(seen[stored])


def _base_query() -> Any:
    return select(
        s.runs.c.id,
        s.runs.c.name,
        s.runs.c.status,
        s.runs.c.started_at,
        s.runs.c.ended_at,
        s.runs.c.code_version,
        type_coerce(s.runs.c.environment, Text).label("environment"),  # decoded by _environment
        s.runs.c.author,
        s.experiments.c.name.label("experiment"),
    ).join(s.experiments, s.experiments.c.id == s.runs.c.experiment_id)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _cmp(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    match op:
        case "=":
            return col == value  # type: ignore[no-any-return]
        case "!=":
            return col != value  # type: ignore[no-any-return]
        case "<":
            return col < value  # type: ignore[no-any-return]
        case "<=":
            return col <= value  # type: ignore[no-any-return]
        case ">":
            return col > value  # type: ignore[no-any-return]
        case ">=":
            return col >= value  # type: ignore[no-any-return]
        case "like":
            return col.like(str(value))  # type: ignore[no-any-return]
    raise InvalidInputError(f"Unknown comparison {op!r}")


def _ascending(col: Any) -> Any:
    return col.asc()


def _descending(col: Any) -> Any:
    return col.desc()


def _text(value: float | str) -> str:
    return repr(value) if isinstance(value, float) else value


def _time(key: str, value: float | str) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidInputError(f"{key} compares with an ISO 8601 time such as '2025-03-01', got {value!r}") from None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _compile(node: Comparison | BoolOp) -> ColumnElement[bool]:
    if isinstance(node, BoolOp):
        parts = [_compile(t) for t in node.terms]
        return and_(true(), *parts) if node.op == "and" else or_(false(), *parts)
    # Each comparison is a semi-join on an indexed (key, value) table: no run is loaded into Python.
    table = _KEYED.get(node.kind)
    if table is not None:
        return s.runs.c.id.in_(select(table.c.run_id).where(_keyed(table, node)))
    if node.kind == "attributes":
        col = _ATTRIBUTES.get(node.key)
        if col is None:
            raise InvalidInputError(f"Unknown run attribute {node.key!r}; known: {', '.join(sorted(_ATTRIBUTES))}")
        if node.key in _TIME_ATTRIBUTES:
            return _cmp(col, node.op, _time(node.key, node.value))
        return _cmp(col, node.op, _text(node.value))
    raise InvalidInputError(f"Unknown field kind {node.kind!r}")


_KEYED = {"metrics": s.latest_metrics, "params": s.run_params, "tags": s.run_tags}


def _keyed(t: Any, node: Comparison) -> ColumnElement[bool]:
    """The row of (run, key) that a metrics/params/tags comparison asks for, on table (alias) `t`."""
    if node.kind == "metrics":
        if not isinstance(node.value, float) or node.op == "like":
            raise InvalidInputError(
                f"metrics.{node.key} compares with numbers (=, !=, <, <=, >, >=), got {node.op} {node.value!r}"
            )
        return and_(t.c.key == node.key, _cmp(t.c.value, node.op, node.value))
    if node.kind == "params" and isinstance(node.value, float) and node.op != "like":
        return and_(t.c.key == node.key, _cmp(t.c.value_num, node.op, node.value))
    return and_(t.c.key == node.key, _cmp(t.c.value, node.op, _text(node.value)))
