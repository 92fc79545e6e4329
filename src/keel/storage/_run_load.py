"""Reading runs back: the columns of a run, and a page of runs with their details as entities.

A search page is a few thousand (run, key, value) rows; load_runs fetches them in one UNION ALL
statement compiled once (on SQLite straight through the driver), not in a query per table.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Float,
    Text,
    bindparam,
    cast,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import sqlite

from keel.entities import ArtifactRecord, Run, RunStatus
from keel.storage import schema as s
from keel.storage._common import utc

__all__ = ["base_query", "load_runs"]

_STATUS = {status.value: status for status in RunStatus}


def load_runs(conn: Connection, q: Any) -> list[Run]:
    """The runs `q` (a base_query() narrowed and ordered) selects, with their params, latest
    metrics, tags, inputs and artifacts: two round trips per page."""
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


def _details_of() -> Any:
    """Params, latest metrics, tags, inputs and artifacts of the runs `ids`, as
    (kind, run_id, key, text, number) rows: one UNION ALL, so a page is two round trips."""
    ids: BindParameter[list[str]] = bindparam("ids", expanding=True)
    no_text, no_number = cast(null(), Text), cast(null(), Float)
    p, m, t, a = s.run_params, s.latest_metrics, s.run_tags, s.run_artifacts
    return union_all(
        select(literal_column("0"), p.c.run_id, p.c.key, p.c.value, no_number).where(p.c.run_id.in_(ids)),
        select(literal_column("1"), m.c.run_id, m.c.key, no_text, m.c.value).where(m.c.run_id.in_(ids)),
        select(literal_column("2"), t.c.run_id, t.c.key, t.c.value, no_number).where(t.c.run_id.in_(ids)),
        select(
            literal_column("3"),
            s.run_inputs.c.run_id,
            s.datasets.c.name,
            no_text,
            cast(s.dataset_versions.c.version, Float),
        )
        .join(s.dataset_versions, s.dataset_versions.c.id == s.run_inputs.c.dataset_version_id)
        .join(s.datasets, s.datasets.c.id == s.dataset_versions.c.dataset_id)
        .where(s.run_inputs.c.run_id.in_(ids)),
        select(literal_column("4"), a.c.run_id, a.c.path, a.c.digest, cast(a.c.size_bytes, Float)).where(
            a.c.run_id.in_(ids)
        ),
    )


_DETAILS_OF = _details_of()


def _details(conn: Connection, ids: list[str]) -> Sequence[Any]:
    """_DETAILS_OF's rows for `ids`. On SQLite straight through the driver's cursor (plain tuples,
    none of SQLAlchemy's per-statement and per-row work): a search page reads a few thousand."""
    if conn.dialect.name != "sqlite":
        return conn.execute(_DETAILS_OF, {"ids": ids}).all()
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        rows: list[Any] = cursor.execute(_sqlite_details(len(ids)), ids * _DETAILS_PARTS).fetchall()
        return rows
    finally:
        cursor.close()


_DETAILS_PARTS = 5  # the IN lists of _DETAILS_OF, each bound to the same ids


@functools.lru_cache(maxsize=8)
def _sqlite_details(n: int) -> str:
    """_DETAILS_OF compiled for SQLite with `n` ids in each of its IN lists."""
    compiled = _DETAILS_OF.params(ids=[""] * n).compile(
        dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True}
    )
    assert len(compiled.positiontup or ()) == n * _DETAILS_PARTS
    return str(compiled)


def _environment(stored: Any, seen: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment column as a dict; its JSON text is decoded once per distinct value."""
    if not isinstance(stored, str):  # PostgreSQL's driver decodes json itself
        return dict(stored or {})
    if stored not in seen:
        seen[stored] = json.loads(stored)
    return dict(seen[stored])


def base_query() -> Any:
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
