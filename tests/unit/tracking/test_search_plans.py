"""Run search's two plans (issue 17) return what a brute-force reference returns: same runs, same order.

The order-driven plan is taken when every filter term matches at least PROBE_CAP runs; the test
sets PROBE_CAP to 1 (the order drives whenever it may) and to a billion (the filter always
drives) and checks both against a Python reference over a few hundred random runs with random
filters and orders, ties included (values on a coarse grid, several runs per start time).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

import keel
from keel.entities import Run
from keel.storage import _run_search
from keel.storage import schema as s

N_RUNS = 240
N_SEARCHES = 60
OPS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _fill(ws: keel.Workspace, rng: random.Random) -> list[Run]:
    for i in range(N_RUNS):
        params = {"p0": rng.choice([1, 2, 3])} if rng.random() < 0.9 else {}
        with ws.runs.start(rng.choice(["a", "b"]), name=f"r{i}", params=params) as run:
            # Most runs have most metrics, on a grid of 11 values: many ties in every order.
            run.log_metrics({f"m{k}": round(rng.random(), 1) for k in range(3) if rng.random() < 0.85})
    # Several runs per start time, so that ties on every key fall through to the run id.
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    engine = ws._meta.engine  # noqa: SLF001 - start times are set by the API; ties need them equal
    with engine.begin() as conn:
        for stored in ws.runs.search(None, order_by=None, limit=N_RUNS):
            at = t0 + timedelta(minutes=rng.randrange(20))
            conn.execute(update(s.runs).where(s.runs.c.id == stored.id).values(started_at=at))
    return ws.runs.search(None, order_by=None, limit=N_RUNS)


def _random_search(rng: random.Random) -> tuple[str | None, list[tuple[str, str, bool]], str | None, int]:
    terms = []
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        if rng.random() < 0.75:
            terms.append(f"metrics.m{rng.randrange(4)} {rng.choice(list(OPS))} {round(rng.random(), 1)}")
        else:
            terms.append(f"params.p0 {rng.choice(list(OPS))} {rng.choice([1, 2, 3])}")
    where = " and ".join(terms) or None
    if where and rng.random() < 0.15:  # an OR group: the filter drives
        where = f"({where}) or metrics.m0 = 0.5"
    # m3 exists in no run: every run sorts as lacking it.
    keys = [(rng.choice(["metrics", "metrics", "params"]), rng.random() < 0.5) for _ in range(rng.choice([1, 1, 2]))]
    order = [(kind, "p0" if kind == "params" else f"m{rng.randrange(4)}", desc) for kind, desc in keys]
    return where, order, rng.choice([None, None, "a"]), rng.choice([1, 7, 50, 1000])


def _matches(run: Run, where: str | None) -> bool:
    if where is None:
        return True
    if where.endswith(" or metrics.m0 = 0.5"):
        inner = where[1 : -len(") or metrics.m0 = 0.5")]
        return run.metrics.get("m0") == 0.5 or _matches(run, inner)
    for term in where.split(" and "):
        field, op, value = term.split(" ")
        kind, key = field.split(".")
        stored = run.metrics.get(key) if kind == "metrics" else run.params.get(key)
        if stored is None or not OPS[op](float(stored), float(value)):
            return False
    return True


def _sort_key(run: Run, order: list[tuple[str, str, bool]]) -> tuple[Any, ...]:
    key: list[Any] = []
    for kind, name, desc in order:
        stored = run.metrics.get(name) if kind == "metrics" else run.params.get(name)
        value = None if stored is None else float(stored)
        key += [value is None, 0.0 if value is None else (-value if desc else value)]
    return (*key, -run.started_at.timestamp(), run.id)


def _reference(runs: list[Run], where: str | None, order: Any, experiment: str | None, limit: int) -> list[str]:
    found = [r for r in runs if _matches(r, where) and experiment in (None, r.experiment)]
    return [r.id for r in sorted(found, key=lambda r: _sort_key(r, order))][:limit]


@pytest.mark.parametrize("cap", [1, 10**9], ids=["order-drives", "filter-drives"])
def test_search_returns_the_brute_force_answer_by_either_plan(
    any_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    rng = random.Random(17)
    runs = _fill(any_ws, rng)
    monkeypatch.setattr(_run_search, "PROBE_CAP", cap)
    built: list[tuple[Any, ...]] = []
    by_order = _run_search._by_order

    def spy(*args: Any, per_row: bool) -> Any:
        built.append(args)
        return by_order(*args, per_row=per_row)

    monkeypatch.setattr(_run_search, "_by_order", spy)
    _run_search._SEARCHES.clear()
    for _ in range(N_SEARCHES):
        where, order, experiment, limit = _random_search(rng)
        order_text = [f"{kind}.{name} {'desc' if desc else 'asc'}" for kind, name, desc in order]
        found = [r.id for r in any_ws.runs.search(where, order_by=order_text, experiment=experiment, limit=limit)]
        expected = _reference(runs, where, order, experiment, limit)
        assert found == expected, (where, order_text, experiment, limit)
    # The plan under test was the one taken: with the cap out of reach, the order drives only a
    # search with no filter at all (nothing to count).
    if cap == 1:
        assert len(built) > 10
    else:
        assert built and all(args[0] is None and args[2] is None for args in built)  # (where, order, experiment, ...)


def test_migration_0015_downgrades_and_upgrades_again_with_runs_in_the_store(store_url: str, tmp_path: Any) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from keel import Settings
    from keel.storage.engine import alembic_config

    ws = keel.Workspace(Settings(home=tmp_path / "ws", store_url=store_url, author="tester"))
    try:
        for i in range(30):
            with ws.runs.start("m", params={"i": i}) as run:
                run.log_metrics({"auc": (i % 7) / 7, "loss": i / 30})
        query = ("metrics.auc > 0.2", "metrics.loss desc")
        found = ws.runs.search(query[0], order_by=query[1])
        assert [r.params["i"] for r in found] == [str(i) for i in range(29, -1, -1) if (i % 7) / 7 > 0.2]
        before = [r.id for r in found]
    finally:
        ws.close()
    engine = create_engine(store_url)

    def indexes() -> set[str]:
        inspector = inspect(engine)
        return {str(i["name"]) for t in ("runs", "latest_metrics") for i in inspector.get_indexes(t)}

    try:
        assert {"ix_latest_metrics_key_value_run_id", "ix_runs_started_at"} <= indexes()
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0014")
        assert "ix_latest_metrics_key_value" in indexes() and "ix_runs_started_at" not in indexes()
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0015")
        assert {"ix_latest_metrics_key_value_run_id", "ix_runs_started_at"} <= indexes()
        assert "ix_latest_metrics_key_value" not in indexes()
    finally:
        engine.dispose()
    ws = keel.Workspace(Settings(home=tmp_path / "ws", store_url=store_url, author="tester"))
    try:
        assert [r.id for r in ws.runs.search(query[0], order_by=query[1])] == before
    finally:
        ws.close()
