"""Run search in SQL: a parsed filter (keel.tracking.query) and an order compiled to one statement.

Each comparison on a metric, param or tag is a semi-join on an indexed (run, key) table, and a
top-level AND term a join on (run, key), which is unique: no run is loaded into Python to decide
whether it matches. Built statements are kept by (filter, order, experiment, limit).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true

from keel.entities import BoolOp, Comparison, OrderBy
from keel.errors import InvalidInputError
from keel.storage import schema as s
from keel.storage._run_load import base_query

__all__ = ["search_statement"]

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
_TIME_ATTRIBUTES = {"started_at", "ended_at"}


def search_statement(
    where: Comparison | BoolOp | None, order_by: Sequence[OrderBy], experiment: str | None, limit: int
) -> Any:
    """The statement selecting the runs `where` matches (of `experiment`), ordered, at most `limit`."""
    key = (where, tuple(order_by), experiment, limit)
    q = _SEARCHES.get(key)
    if q is None:
        q = _build(where, order_by, experiment, limit)
        with _searches_lock:  # a dashboard asks the same few searches again and again
            while len(_SEARCHES) >= 256:
                _SEARCHES.pop(next(iter(_SEARCHES)))
            _SEARCHES[key] = q
    return q


_SEARCHES: dict[Any, Any] = {}  # built search statements by (filter, order, experiment, limit)
_searches_lock = threading.Lock()


def _build(where: Comparison | BoolOp | None, order_by: Sequence[OrderBy], experiment: str | None, limit: int) -> Any:
    q = base_query()
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
