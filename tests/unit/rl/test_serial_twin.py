"""The serial chain twin: a period by hand, conservation of units, copies that do not mix, the
or-gym reference case and the per-stage base-stock search."""

from __future__ import annotations

import numpy as np
import pytest

from keel.errors import InvalidInputError
from keel.rl.evaluate import best_serial_base_stock, compare, evaluate
from keel.rl.policies import EchelonBaseStock
from keel.rl.serial import SerialTwin, or_gym_spec
from keel.rl.spec import SerialSpec, Stage

from ._toy_demand import ToyPoisson

TWO = SerialSpec(
    stages=(
        Stage(lead_time=0, capacity=10, holding=1.0, backlog=9.0, initial=5),
        Stage(lead_time=1, capacity=8, holding=0.5, backlog=2.0, unit=0.25, initial=3),
    )
)


def test_one_period_by_hand() -> None:
    twin = SerialTwin(TWO, ToyPoisson(), copies=1)
    twin.reset(demand=[[9], [0]])
    obs, cost, info = twin.step([[6, 20]])
    # stage 1 ships min(6, cap 10, its 3 on hand) = 3, owes 3; stage 0 gets them now (lead 0): 8
    # on hand, demand 9 -> 1 backordered. Outside ships min(20, cap 8) = 8, arriving next period.
    assert info["shipped"].tolist() == [[3, 8]] and info["ordered"].tolist() == [[6, 8]]
    assert info["unmet"].tolist() == [1] and info["on_hand"].tolist() == [[0, 0]]
    # holding 0; retailer backlog 9 * 1; stage 1 fails 3 units at 2.0; unit price 0.25 * 8
    assert cost[0] == pytest.approx(9 + 6 + 2)
    names = twin.observation_names
    row = dict(zip(names, obs[0], strict=True))
    assert row["on_hand_1"] == 8 and row["owed_by_1"] == 3 and row["customer_backlog"] == 1
    assert row["position_0"] == 0 + 3 - 1 and row["position_1"] == 8 - 3


def test_units_are_conserved_and_copies_do_not_mix() -> None:
    spec = or_gym_spec(lost_sales=False)
    demand = ToyPoisson(20.0)
    rng = np.random.default_rng(0)
    periods, copies = 60, 4
    matrix = demand.sample(rng, periods, copies)
    orders = rng.integers(0, 120, size=(periods, copies, 3))
    twin = SerialTwin(spec, demand, copies=copies)
    twin.reset(demand=matrix)
    singles = [SerialTwin(spec, demand, copies=1) for _ in range(copies)]
    for c, s in enumerate(singles):
        s.reset(demand=matrix[:, [c]])

    def units(t: SerialTwin) -> np.ndarray:
        return t.on_hand.sum(axis=0) + sum(p.sum(axis=0) for p in t.pipes)

    for t in range(periods):
        before = units(twin)
        obs, cost, info = twin.step(orders[t])
        np.testing.assert_array_equal(units(twin), before + info["shipped"][:, -1] - info["sold"])
        for c, s in enumerate(singles):
            s_obs, s_cost, _ = s.step(orders[t, [c]])
            np.testing.assert_array_equal(obs[c], s_obs[0])
            assert cost[c] == pytest.approx(s_cost[0], abs=1e-9)  # matrix products may sum in another order


def test_or_gym_reference_case() -> None:
    spec = or_gym_spec()
    assert [s.lead_time for s in spec.stages] == [3, 5, 10]
    assert [s.capacity for s in spec.stages] == [100, 90, 80]
    assert [s.initial for s in spec.stages] == [100, 100, 200]
    assert spec.lost_sales and spec.lost_between and spec.price == 2.0 and spec.discount == 0.97
    twin = SerialTwin(spec, ToyPoisson(20.0), copies=2)
    assert twin.observation_size == 3 + 3 + 2 + 1 + (2 + 4 + 9)


def test_echelon_base_stock_search_beats_a_poor_start() -> None:
    demand = ToyPoisson(5.0)
    spec = SerialSpec(
        stages=(Stage(lead_time=1, holding=1.0, backlog=9.0), Stage(lead_time=2, holding=0.5, backlog=1.0))
    )
    policy, ev = best_serial_base_stock(spec, demand, periods=200, copies=64, warmup=20, sweeps=2)
    assert ev.seed == 1 and len(policy.levels) == 2
    factory = lambda n: SerialTwin(spec, demand, copies=n)  # noqa: E731
    poor = evaluate(factory, EchelonBaseStock((4, 40)), periods=200, copies=64, warmup=20, seed=1)
    diff = compare(poor, ev)
    assert diff.difference > 3 * diff.se
    assert 10 <= policy.levels[0] <= 20 <= policy.levels[1] <= 35  # about (L + 1) mean plus safety stock


def test_bad_serial_orders_are_clear_errors() -> None:
    twin = SerialTwin(TWO, ToyPoisson(), copies=3)
    with pytest.raises(InvalidInputError, match=r"shape \(3, 2\)"):
        twin.step(np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match=">= 0"):
        twin.step(-np.ones((3, 2)))
    with pytest.raises(InvalidInputError, match="at least 2 stages"):
        EchelonBaseStock((5,))
