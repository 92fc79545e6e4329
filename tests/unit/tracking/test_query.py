"""Run search: the filter language (tracking/query.py) and its execution in SQL (storage/runs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

import keel
from keel.entities import BoolOp, Comparison, OrderBy
from keel.errors import InvalidInputError
from keel.tracking import ActiveRun, parse_filter, parse_order_by


# -- parsing ------------------------------------------------------------------------------------
def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    auc, depth, solver = (
        Comparison("metrics", "auc", ">", 0.8),
        Comparison("params", "max_depth", "=", 6.0),
        Comparison("params", "solver", "=", "lbfgs"),
    )
    assert parse_filter("metrics.auc > 0.8 and params.max_depth = 6 or params.solver = 'lbfgs'") == BoolOp(
        "or", (BoolOp("and", (auc, depth)), solver)
    )
    assert parse_filter("metrics.auc > 0.8 AND (params.max_depth = 6 OR params.solver = lbfgs)") == BoolOp(
        "and", (auc, BoolOp("or", (depth, solver)))
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.auc>=0.8", Comparison("metrics", "auc", ">=", 0.8)),
        ("m.loss < 1e-3", Comparison("metrics", "loss", "<", 0.001)),
        ("params.lr == 0.1", Comparison("params", "lr", "=", 0.1)),
        ("params.max_depth = '6'", Comparison("params", "max_depth", "=", "6")),  # quoted: compared as text
        ("params.solver like 'lb%'", Comparison("params", "solver", "like", "lb%")),
        ("params.max_depth like 6", Comparison("params", "max_depth", "like", "6")),  # like is always text
        ('tags.team <> "risk"', Comparison("tags", "team", "!=", "risk")),
        ("tags.version = 2", Comparison("tags", "version", "=", "2")),  # tags are text, as written
        ("status = FINISHED", Comparison("attributes", "status", "=", "finished")),
        ("attributes.name = 5", Comparison("attributes", "name", "=", "5")),
        ("metrics.`val auc` > 0.5", Comparison("metrics", "val auc", ">", 0.5)),
    ],
)
def test_parse_filter_reads_fields_operators_and_literals(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


def test_empty_filter_means_every_run() -> None:
    assert parse_filter(None) is None and parse_filter("  ") is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("metrics.auc > 'high'", r"metrics.auc compares with a number, got \"'high'\""),
        ("metrics.auc like 0.8", "not 'like'"),
        ("metric.auc", r"ends too early"),
        ("metrics.auc 0.8", r"Expected a comparison after 'metrics.auc', got '0.8'"),
        ("foo.auc > 1", r"Unknown field 'foo.auc'.*metrics.KEY"),
        ("colour = red", r"Unknown field 'colour'"),
        ("attributes.colour = red", r"Unknown run attribute 'colour'; known: .*status"),
        ("status = done", r"Unknown run status 'done'; known: running, finished, failed, killed"),
        ("started_at > yesterday", r"ISO 8601"),
        ("(metrics.auc > 0.8", r"Missing '\)'"),
        ("metrics.auc > 0.8 params.x = 1", r"Unexpected 'params.x'.*'and' or 'or'"),
        ("metrics.auc > 0.8; drop table runs", r"Cannot parse the filter at '; drop"),
        ("metrics.auc > > 1", r"Expected a value after metrics.auc >"),
    ],
)
def test_bad_filters_raise_invalid_input_with_a_clear_message(text: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_filter(text)


def test_parse_order_by_reads_direction_and_several_fields() -> None:
    assert parse_order_by("metrics.auc desc, -params.lr, started_at") == [
        OrderBy("metrics", "auc", True),
        OrderBy("params", "lr", True),
        OrderBy("attributes", "started_at", False),
    ]
    assert parse_order_by(["metrics.loss ASC"]) == [OrderBy("metrics", "loss", False)]
    with pytest.raises(InvalidInputError, match="Ordering by tags"):
        parse_order_by("tags.team")
    with pytest.raises(InvalidInputError, match="expected FIELD"):
        parse_order_by("metrics.auc upward")


# -- execution, on SQLite and PostgreSQL ---------------------------------------------------------
@pytest.fixture
def searched(any_ws: keel.Workspace) -> Iterator[dict[str, str]]:
    """Five runs in `any_ws`, by name: four finished, 'e' still running (ended at teardown)."""
    ids, still_running = _make_runs(any_ws)
    yield ids
    still_running.end()


def _make_runs(ws: keel.Workspace) -> tuple[dict[str, str], ActiveRun]:
    specs = {
        "a": ({"max_depth": 6, "solver": "lbfgs"}, {"auc": 0.91, "loss": 0.2}, {"team": "risk"}),
        "b": ({"max_depth": 6, "solver": "saga"}, {"auc": 0.75}, {"team": "growth"}),
        "c": ({"max_depth": 12, "solver": "lbfgs"}, {"auc": 0.85}, {}),
        "d": ({"max_depth": "auto", "solver": "liblinear"}, {}, {"team": "risk"}),
    }
    ids = {}
    for name, (params, metrics, tags) in specs.items():
        with ws.runs.start("search", name=name, params=params, tags=tags) as run:
            run.log_metrics(metrics)
        ids[name] = run.id
    still_running = ws.runs.start("search", name="e", params={"max_depth": 6.0})
    ids["e"] = still_running.id
    return ids, still_running


_CASES = [
    ("metrics.auc > 0.8 and params.max_depth = 6", ["a"]),
    ("metrics.auc > 0.8 or params.solver = saga", ["a", "b", "c"]),
    ("(params.solver = lbfgs or tags.team = growth) and metrics.auc < 0.9", ["b", "c"]),
    ("params.max_depth = 6", ["a", "b", "e"]),  # numeric: '6' and '6.0' both match
    ("params.max_depth = '6'", ["a", "b"]),  # text: only '6'
    ("params.max_depth > 8", ["c"]),  # numeric order (as text '12' < '8'); 'auto' is no number
    ("params.max_depth = auto", ["d"]),
    ("params.solver like 'lib%'", ["d"]),
    ("params.solver != lbfgs", ["b", "d"]),
    ("tags.team = risk", ["a", "d"]),
    ("tags.team != risk", ["b"]),  # a run without the tag never matches
    ("metrics.loss <= 0.2", ["a"]),
    ("status = running", ["e"]),
    ("attributes.status != finished", ["e"]),
    ("name like 'a%' or name = 'c'", ["a", "c"]),
    ("metrics.nothing > 0", []),
]


def test_search_runs_the_filter_language(any_ws: keel.Workspace, searched: dict[str, str]) -> None:
    for text, expected in _CASES:
        found = sorted(r.name for r in any_ws.runs.search(text))
        assert found == expected, text


def test_search_orders_by_metric_with_runs_lacking_it_last(any_ws: keel.Workspace, searched: dict[str, str]) -> None:
    by_auc = [r.name for r in any_ws.runs.search("status = finished", order_by="metrics.auc desc")]
    assert by_auc == ["a", "c", "b", "d"]
    assert [r.name for r in any_ws.runs.search(None, order_by="metrics.auc", limit=3)] == ["b", "c", "a"]
    # params order as numbers (12 > 6 = 6.0, ties by their text), then text values ('auto')
    assert [
        r.name
        for r in any_ws.runs.search(
            "params.max_depth >= 0 or params.max_depth = auto", order_by=["params.max_depth desc", "name"]
        )
    ] == ["c", "e", "a", "b", "d"]
    assert any_ws.runs.search("name = a", order_by="-started_at", limit=1)[0].id == searched["a"]


def test_search_compares_start_times(any_ws: keel.Workspace, searched: dict[str, str]) -> None:
    now = datetime.now(UTC)
    assert len(any_ws.runs.search(f"started_at > '{(now - timedelta(hours=1)).isoformat()}'")) == 5
    assert any_ws.runs.search(f"started_at > '{(now + timedelta(hours=1)).isoformat()}'") == []
    assert (
        len(any_ws.runs.search(f"ended_at < '{(now + timedelta(days=1)).date()}'")) == 4
    )  # the running one has no end


def test_search_refuses_a_bad_limit_and_bad_order(ws: keel.Workspace) -> None:
    with pytest.raises(InvalidInputError, match="limit must be >= 1"):
        ws.runs.search(limit=0)
    with pytest.raises(InvalidInputError, match="Unknown field 'colour'"):
        ws.runs.search(order_by="colour")


# -- it runs in SQL ------------------------------------------------------------------------------
def test_metric_comparison_uses_the_key_value_index(ws: keel.Workspace) -> None:
    _make_runs(ws)[1].end()
    seen: list[tuple[str, object]] = []
    listener = lambda conn, cursor, statement, params, context, many: seen.append((statement, params))  # noqa: E731
    event.listen(ws._meta.engine, "before_cursor_execute", listener)
    assert [r.name for r in ws.runs.search("metrics.auc > 0.8")] == ["c", "a"]
    event.remove(ws._meta.engine, "before_cursor_execute", listener)
    statement, params = next((s, p) for s, p in seen if "FROM runs" in s and "latest_metrics" in s)
    with ws._meta.engine.connect() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
    assert "ix_latest_metrics_key_value_run_id (key=? AND value>?)" in plan, plan


def test_search_issues_the_same_few_statements_however_many_runs_match(ws: keel.Workspace) -> None:
    for i in range(40):
        with ws.runs.start("many", params={"i": i}) as run:
            run.log_metric("auc", i / 40)
    statements: list[str] = []
    event.listen(ws._meta.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    found = ws.runs.search("metrics.auc >= 0.5 and params.i < 30", order_by="metrics.auc desc")
    assert [r.params["i"] for r in found] == [str(i) for i in range(29, 19, -1)]
    assert len(statements) <= 6  # the query plus one per kind of run detail, not one per run


def test_filter_term_and_nesting_limits_are_clear_errors(ws: keel.Workspace) -> None:
    # Regression: 2,000 'and' terms raised RecursionError (a 500 over HTTP).
    many = " and ".join(["metrics.auc > 0.5"] * 2000)
    with pytest.raises(InvalidInputError, match="more than 50 comparisons"):
        parse_filter(many)
    with pytest.raises(InvalidInputError, match="more than 50 comparisons"):
        ws.runs.search(many)
    with pytest.raises(InvalidInputError, match="at most 8"):
        parse_order_by(",".join(f"metrics.m{i}" for i in range(9)))
    deep = "(" * 40 + "metrics.auc > 0.5" + ")" * 40
    with pytest.raises(InvalidInputError, match="32 deep"):
        parse_filter(deep)
    # At the limits, the search still runs in SQL (SQLite joins at most 64 tables).
    with ws.runs.start("e", params={"p": 1}) as run:
        run.log_metric("auc", 0.9)
    order = ",".join([f"metrics.m{i}" for i in range(4)] + [f"params.q{i}" for i in range(4)])
    for term in ("metrics.auc > 0.5", "params.p = 1"):
        for op in (" and ", " or "):
            found = ws.runs.search("(" * 32 + op.join([term] * 50) + ")" * 32, order_by=order, experiment="e")
            assert [r.id for r in found] == [run.id]
