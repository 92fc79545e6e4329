"""The exact optimum against the issue's reference figures (Poisson demand mean 10, lead time 2,
holding 1, penalty 9), an independent renewal-formula check, and a simulation of the same timing."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats

from keel.errors import InvalidInputError
from keel.rl.demand import Poisson
from keel.rl.dp import base_stock_cost, best_base_stock, best_s_S, optimum, s_S_cost
from keel.rl.spec import Costs, InventorySpec

DEMAND = Poisson(10.0)
BACKORDERS = InventorySpec(lead_time=2, costs=Costs(holding=1.0, penalty=9.0))
LOST = InventorySpec(lead_time=2, costs=Costs(holding=1.0, penalty=9.0), lost_sales=True)
FIXED = InventorySpec(lead_time=2, costs=Costs(holding=1.0, penalty=9.0, fixed_order=50.0))


def test_backorders_reference_closed_form() -> None:
    opt = optimum(BACKORDERS, DEMAND)
    assert round(opt.cost, 3) == 9.953
    assert opt.base_stock == 37
    assert opt.gap_bound == 0.0
    # the closed form is the newsvendor on demand over lead time + 1 periods
    lead = stats.poisson(30.0)
    assert int(lead.ppf(9.0 / 10.0)) == 37
    assert opt.order(30, (5,)) == 2 and opt.order(40, (0,)) == 0


def test_backorders_dp_agrees_with_closed_form() -> None:
    # a capacity far above any order makes optimum() run RVI instead of the closed form
    opt = optimum(InventorySpec(lead_time=2, capacity=150), DEMAND)
    assert opt.method.startswith("relative value iteration")
    assert opt.cost == pytest.approx(9.953185127, abs=1e-6)


def test_lost_sales_reference_and_best_base_stock() -> None:
    start = time.perf_counter()
    opt = optimum(LOST, DEMAND)
    assert time.perf_counter() - start < 5.0  # lead time 2, mean 10: seconds at most
    assert round(opt.cost, 3) == 8.560
    assert opt.gap_bound < 1e-6
    best = best_base_stock(LOST, DEMAND)
    # The issue quotes 8.861 (+3.5 %); the exact chain under spec.py's timing gives 8.842 at level
    # 35 (+3.3 %), which the simulation below confirms: the quoted figure is not reproduced.
    assert best.params == (35,)
    assert round(best.cost, 3) == 8.842
    assert best.cost / opt.cost - 1 == pytest.approx(0.033, abs=0.001)


def test_lost_sales_base_stock_cost_matches_simulation() -> None:
    rng = np.random.default_rng(7)
    periods, copies, warmup, level = 4000, 200, 200, 35
    demand = rng.poisson(10.0, size=(periods, copies))
    on_hand = np.full(copies, level, dtype=np.int64)
    pipe = np.zeros((2, copies), dtype=np.int64)  # pipe[0] arrives next
    total = np.zeros(copies)
    for t in range(periods):  # spec.py's timing: arrival, order, demand, costs
        on_hand += pipe[0]
        order = np.maximum(level - on_hand - pipe[1], 0)
        pipe = np.stack([pipe[1], order])
        lost = np.maximum(demand[t] - on_hand, 0)
        on_hand = np.maximum(on_hand - demand[t], 0)
        if t >= warmup:
            total += on_hand + 9.0 * lost
    per_copy = total / (periods - warmup)
    se = per_copy.std(ddof=1) / np.sqrt(copies)
    exact = base_stock_cost(LOST, DEMAND, level).cost
    assert abs(per_copy.mean() - exact) < 4 * se


def test_fixed_cost_reference_s_S() -> None:
    opt = optimum(FIXED, DEMAND)
    assert round(opt.cost, 3) == 33.358
    assert (opt.s, opt.S) == (27, 58)
    exact = s_S_cost(FIXED, DEMAND, 27, 58)
    assert exact.cost == pytest.approx(opt.cost, abs=1e-6)
    assert best_s_S(FIXED, DEMAND).params == (27, 58)


def test_s_S_cost_matches_renewal_formula() -> None:
    # Independent check (Zheng-Federgruen's renewal form): c(s,S) = (K + sum_j m(j) G(S-j)) / M(S-s)
    pmf = stats.poisson(10.0).pmf(np.arange(200))
    lead = stats.poisson(30.0).pmf(np.arange(200))
    k = np.arange(200)
    g = [float(lead @ (np.maximum(y - k, 0) + 9.0 * np.maximum(k - y, 0))) for y in range(80)]
    for s, big_s in ((27, 58), (20, 45), (30, 40)):
        n = big_s - s
        m = np.zeros(n)
        m[0] = 1 / (1 - pmf[0])
        for j in range(1, n):
            m[j] = m[0] * sum(pmf[i] * m[j - i] for i in range(1, j + 1))
        renewal = (50.0 + sum(m[j] * g[big_s - j] for j in range(n))) / m.sum()
        assert s_S_cost(FIXED, DEMAND, s, big_s).cost == pytest.approx(renewal, abs=1e-6)


@pytest.mark.parametrize(
    "spec",
    [
        BACKORDERS,
        LOST,
        FIXED,
        InventorySpec(lead_time=2, capacity=12),
        InventorySpec(lead_time=2, capacity=14, costs=Costs(fixed_order=50.0)),
        InventorySpec(lead_time=1, lost_sales=True),
    ],
)
def test_optimum_never_above_best_classic(spec: InventorySpec) -> None:
    opt = optimum(spec, DEMAND)
    classic = min(best_base_stock(spec, DEMAND).cost, best_s_S(spec, DEMAND).cost)
    assert opt.cost <= classic + opt.gap_bound + 1e-9


def test_capped_base_stock_is_optimal_under_capacity() -> None:
    # with backorders, a capacity and no fixed cost the capped base-stock policy is optimal
    spec = InventorySpec(lead_time=2, capacity=12)
    assert best_base_stock(spec, DEMAND).cost == pytest.approx(optimum(spec, DEMAND).cost, abs=1e-6)


def test_lost_sales_truncation_does_not_move_the_optimum() -> None:
    default = optimum(LOST, DEMAND).cost
    wider = optimum(LOST, DEMAND, bounds=(75, 60)).cost
    assert wider == pytest.approx(default, abs=1e-6)


def test_lead_time_zero_is_the_newsvendor() -> None:
    opt = optimum(InventorySpec(lead_time=0), DEMAND)
    assert opt.base_stock == int(stats.poisson(10.0).ppf(0.9))


def test_unsupported_cases_raise() -> None:
    with pytest.raises(InvalidInputError, match="stationary"):
        optimum(BACKORDERS, Poisson(10.0, seasonal=(0.5, 1.5)))
    with pytest.raises(InvalidInputError, match="perishable"):
        optimum(InventorySpec(shelf_life=3), DEMAND)
    with pytest.raises(InvalidInputError, match="S > s"):
        s_S_cost(FIXED, DEMAND, 30, 30)


def test_lost_sales_policy_table_reads_by_state() -> None:
    opt = optimum(LOST, DEMAND)
    assert opt.policy.ndim == 2  # (on-hand after arrival, the one order still in transit)
    assert opt.order(60, (20,)) == 0  # plenty on hand and on the way: order nothing
    assert opt.order(0, (0,)) > opt.order(20, (10,)) > 0  # less stock, larger order
    with pytest.raises(InvalidInputError, match="in transit"):
        opt.order(10, (1, 2))
