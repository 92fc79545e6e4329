"""Run search in SQL: a parsed filter (keel.tracking.query) and an order compiled to statements.

Each comparison on a metric, param or tag is a semi-join on an indexed (run, key) table, and a
top-level AND term a join on (run, key), which is unique: no run is loaded into Python to decide
whether it matches. Built statements are kept by (filter, order, experiment, limit).

Two plans (issue 17). Driven by the filter: find every matching run through the filter's index,
look up the order key of each and sort; its cost grows with the number of matches (484 ms for
50,000 of 100,000 runs). Driven by the order: walk the (key, value) index of the order metric in
order and test the filter on each run, stopping at `limit`; its cost grows with the number of
runs skipped, about limit x runs / matches. A bounded count of each filter term's matches picks:
the order drives when every term matches at least PROBE_CAP runs, the filter drives otherwise
(and whenever a term's matches cannot be counted on an index). Both return the same runs in the
same order: the order-driven plan reads the runs that have the order metric, then, when fewer
than `limit` do, the runs without it (which sort last) as the filter-driven plan would.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, false, func, or_, select, true

from keel.entities import BoolOp, Comparison, OrderBy, Run
from keel.errors import InvalidInputError
from keel.storage import schema as s
from keel.storage._run_load import base_query, load_runs

__all__ = ["search_runs", "search_statement"]

# The order drives when every filter term matches at least this many runs. Counting stops there,
# so a probe reads at most this many index entries; past it, walking the order index finds
# `limit` matches within limit x runs / matches rows (for limit 100: 20,000 rows at 1,000,000
# runs), while the filter-driven plan would look up and sort every match.
PROBE_CAP = 5000

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
    return _cached((where, tuple(order_by), experiment, limit), lambda: _build(where, order_by, experiment, limit))


_SEARCHES: dict[Any, Any] = {}  # built statements by (plan, filter, order, experiment, limit)
_searches_lock = threading.Lock()


def search_runs(
    conn: Connection, where: Comparison | BoolOp | None, order_by: Sequence[OrderBy], experiment: str | None, limit: int
) -> list[Run]:
    """The runs `where` matches (of `experiment`), ordered, at most `limit`: by the plan that reads
    fewer rows (the module's docstring)."""
    if not order_by or order_by[0].kind != "metrics" or not _broad(conn, where, experiment):
        return load_runs(conn, search_statement(where, order_by, experiment, limit))
    key = (where, tuple(order_by), experiment)
    if conn.dialect.name == "postgresql":
        # Parallel workers cost ~15 ms to start, more than a walk of a few hundred index entries;
        # the planner chose them when it misjudged the walk's length. LOCAL: until this read's
        # transaction ends, which the connection's close rolls back.
        conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
    # SQLite plans without statistics: the filter is written so that no index can serve it (see
    # _keyed). PostgreSQL estimates from its statistics, and those rewrites would blind it.
    per_row = conn.dialect.name == "sqlite"
    build = lambda: _by_order(where, order_by, experiment, limit, per_row=per_row)  # noqa: E731
    found = load_runs(conn, _cached(("by_order", *key, limit, per_row), build))
    if len(found) < limit:  # then every run that has the order metric is in; the rest sort after them
        rest = limit - len(found)
        found += load_runs(conn, _cached(("without", *key, rest), lambda: _without(where, order_by, experiment, rest)))
    return found


def _cached(key: Any, build: Any) -> Any:
    q = _SEARCHES.get(key)
    if q is None:
        q = build()
        with _searches_lock:  # a dashboard asks the same few searches again and again
            while len(_SEARCHES) >= 256:
                _SEARCHES.pop(next(iter(_SEARCHES)))
            _SEARCHES[key] = q
    return q


def _broad(conn: Connection, where: Comparison | BoolOp | None, experiment: str | None) -> bool:
    """Whether every filter term (and the experiment) matches at least PROBE_CAP runs."""
    terms = _and_terms(where)
    if not all(_countable(t) for t in terms):
        return False  # an OR group, an attribute, a text comparison: no bounded count on an index
    if not terms and experiment is None:
        return True
    key = ("probe", where, experiment, PROBE_CAP)  # the cap is built into the statement
    probe = _cached(key, lambda: _probe(terms, experiment))  # type: ignore[arg-type]
    return all(n >= PROBE_CAP for n in conn.execute(probe).one())


def _countable(term: Comparison | BoolOp) -> bool:
    if not isinstance(term, Comparison):
        return False
    return term.kind == "metrics" or (term.kind == "params" and isinstance(term.value, float) and term.op != "like")


def _probe(terms: Sequence[Comparison], experiment: str | None) -> Any:
    """One row: for each term (and the experiment), its number of matching runs, counted up to PROBE_CAP."""
    firsts = []
    for i, term in enumerate(terms):
        t = _KEYED[term.kind].alias(f"probe_{i}")
        firsts.append(select(t.c.run_id).where(_keyed(t, term)).limit(PROBE_CAP))
    if experiment is not None:
        of_experiment = s.experiments.c.id == s.runs.c.experiment_id
        firsts.append(select(s.runs.c.id).join(s.experiments, of_experiment).where(s.experiments.c.name == experiment))
    counts = [select(func.count()).select_from(q.limit(PROBE_CAP).subquery()).scalar_subquery() for q in firsts]
    return select(*counts)


def _by_order(
    where: Comparison | BoolOp | None, order_by: Sequence[OrderBy], experiment: str | None, limit: int, *, per_row: bool
) -> Any:
    """The runs that have the first order metric, walked in its (key, value) index order."""
    o = order_by[0]
    m = s.latest_metrics.alias("order_m0")
    q = base_query().join(m, and_(m.c.run_id == s.runs.c.id, m.c.key == o.key))
    if experiment is not None:  # "+ 0" (SQLite): tested run by run as the index is walked, not looked up first
        exp_id = select(s.experiments.c.id).where(s.experiments.c.name == experiment).scalar_subquery()
        q = q.where((s.runs.c.experiment_id + 0 if per_row else s.runs.c.experiment_id) == exp_id)
    for i, term in enumerate(_and_terms(where)):
        assert isinstance(term, Comparison)  # _broad let only countable terms through
        if term.kind == "metrics" and term.key == o.key:
            q = q.where(_keyed(m, term))  # a range of the order index itself
        else:
            f = _KEYED[term.kind].alias(f"filter_{i}")
            q = q.join(f, and_(f.c.run_id == s.runs.c.id, _keyed(f, term, per_row=per_row)))
    q = q.order_by(m.c.value.desc() if o.descending else m.c.value.asc())
    return _ordered(q, order_by[1:], 1).limit(limit)


def _without(where: Comparison | BoolOp | None, order_by: Sequence[OrderBy], experiment: str | None, limit: int) -> Any:
    """The matching runs that lack the first order metric, in the order of the other keys."""
    lacking = s.latest_metrics.alias("order_lacking")
    has = exists().where(lacking.c.run_id == s.runs.c.id, lacking.c.key == order_by[0].key)
    return _build(where, order_by[1:], experiment, limit).where(~has)


def _build(where: Comparison | BoolOp | None, order_by: Sequence[OrderBy], experiment: str | None, limit: int) -> Any:
    q = base_query()
    if experiment is not None:
        q = q.where(s.experiments.c.name == experiment)
    for i, term in enumerate(_and_terms(where)):
        table = _KEYED.get(term.kind) if isinstance(term, Comparison) else None
        if table is not None:  # a top-level AND term: a join on (run, key), which is unique
            f = table.alias(f"filter_{i}")
            q = q.join(f, and_(f.c.run_id == s.runs.c.id, _keyed(f, term)))  # type: ignore[arg-type]
        else:
            q = q.where(_compile(term))
    return _ordered(q, order_by, 0).limit(limit)


def _ordered(q: Any, order_by: Sequence[OrderBy], first: int) -> Any:
    """`q` ordered by order_by (aliases numbered from `first`), then newest first, then by id."""
    for i, o in enumerate(order_by, start=first):
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
    return q.order_by(s.runs.c.started_at.desc(), s.runs.c.id)


def _and_terms(where: Comparison | BoolOp | None) -> tuple[Comparison | BoolOp, ...]:
    if where is None:
        return ()
    return where.terms if isinstance(where, BoolOp) and where.op == "and" else (where,)


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


def _keyed(t: Any, node: Comparison, *, per_row: bool = False) -> ColumnElement[bool]:
    """The row of (run, key) that a metrics/params/tags comparison asks for, on table (alias) `t`.

    per_row: the key and number are compared as `key || ''` and `value + 0`, which the (key, value)
    index cannot serve, so that SQLite tests them on each run the order index brings (through the
    (run, key) primary key) rather than driving the search from that index: its planner, without
    statistics, otherwise starts from the filter's index and sorts every match.
    """
    key = t.c.key + "" if per_row else t.c.key
    if node.kind == "metrics":
        if not isinstance(node.value, float) or node.op == "like":
            raise InvalidInputError(
                f"metrics.{node.key} compares with numbers (=, !=, <, <=, >, >=), got {node.op} {node.value!r}"
            )
        return and_(key == node.key, _cmp(t.c.value + 0.0 if per_row else t.c.value, node.op, node.value))
    if node.kind == "params" and isinstance(node.value, float) and node.op != "like":
        number = t.c.value_num + 0.0 if per_row else t.c.value_num
        return and_(key == node.key, _cmp(number, node.op, node.value))
    return and_(t.c.key == node.key, _cmp(t.c.value, node.op, _text(node.value)))
