"""Evaluation with common random numbers: the issue's reference costs by simulation, honest
standard errors, paired comparisons and the classic-policy search."""

from __future__ import annotations

import numpy as np
import pytest

from keel.errors import InvalidInputError
from keel.rl.evaluate import best_classic, compare, evaluate
from keel.rl.inventory import InventoryTwin
from keel.rl.policies import SS, BaseStock, CappedBaseStock
from keel.rl.spec import Costs, InventorySpec

from ._toy_demand import ToyPoisson

DEMAND = ToyPoisson(10.0)  # the reference case: Poisson mean 10, L = 2, h = 1, p = 9
BACKORDERS = InventorySpec(lead_time=2)
LOST = InventorySpec(lead_time=2, lost_sales=True)
FIXED = InventorySpec(lead_time=2, costs=Costs(holding=1, penalty=9, fixed_order=50))


def _factory(spec: InventorySpec):  # type: ignore[no-untyped-def]
    return lambda n: InventoryTwin(spec, DEMAND, copies=n)


def test_base_stock_37_under_backorders_costs_9953() -> None:
    ev = evaluate(_factory(BACKORDERS), BaseStock(37), periods=600, copies=1000, warmup=20, seed=1)
    assert ev.se < 0.03
    assert abs(ev.cost - 9.953) < 3 * ev.se


def test_s_S_27_58_with_fixed_cost_costs_33358() -> None:
    ev = evaluate(_factory(FIXED), SS(27, 58), periods=600, copies=1000, warmup=50, seed=2)
    assert ev.se < 0.03
    assert abs(ev.cost - 33.358) < 3 * ev.se


def test_best_base_stock_under_lost_sales_costs_about_8861() -> None:
    # The simulation gives 8.833 +- 0.006 at level 35 (and the exact policy evaluation 8.842); the
    # issue's 8.861 is 0.3 % higher, so this checks within 0.5 % rather than 3 SE, and that 35 is
    # the best level: both neighbours cost more on the same demand.
    evs = {
        lv: evaluate(_factory(LOST), BaseStock(lv), periods=500, copies=1000, warmup=20, seed=3) for lv in (34, 35, 36)
    }
    assert abs(evs[35].cost - 8.861) < 0.005 * 8.861
    for lv in (34, 36):
        diff = compare(evs[lv], evs[35])
        assert diff.difference > 3 * diff.se


def test_standard_error_matches_the_spread_of_repeated_evaluations() -> None:
    evs = [evaluate(_factory(LOST), BaseStock(35), periods=200, copies=64, warmup=10, seed=100 + i) for i in range(30)]
    spread = np.std([e.cost for e in evs], ddof=1)
    claimed = float(np.mean([e.se for e in evs]))
    assert 1 / 1.3 < spread / claimed < 1.3
    # the naive standard error (periods as if independent) would claim far too much precision
    naive = np.mean([e.per_copy.std(ddof=1) for e in evs]) / np.sqrt(64)
    assert naive == pytest.approx(claimed)


def test_common_random_numbers_pair_the_comparison() -> None:
    a = evaluate(_factory(BACKORDERS), BaseStock(37), periods=200, copies=200, warmup=10, seed=5)
    again = evaluate(_factory(BACKORDERS), BaseStock(37), periods=200, copies=200, warmup=10, seed=5)
    assert a.cost == again.cost  # same seed, same demand, same cost
    b = evaluate(_factory(BACKORDERS), BaseStock(38), periods=200, copies=200, warmup=10, seed=5)
    diff = compare(b, a)
    assert diff.difference == pytest.approx(b.cost - a.cost)
    unpaired = float(np.hypot(a.se, b.se))  # the SE of the difference on independent demand
    assert diff.se < 0.3 * unpaired  # pairing removes most of the demand noise
    assert diff.difference > 3 * diff.se
    other = evaluate(_factory(BACKORDERS), BaseStock(37), periods=200, copies=200, warmup=10, seed=6)
    with pytest.raises(InvalidInputError, match="same seed"):
        compare(a, other)


def test_evaluate_checks_its_arguments() -> None:
    twin = InventoryTwin(BACKORDERS, DEMAND, copies=8)
    assert evaluate(twin, BaseStock(37).act, periods=20, warmup=2).copies == 8
    with pytest.raises(InvalidInputError, match="copies"):
        evaluate(twin, BaseStock(37), periods=20, copies=4)
    with pytest.raises(InvalidInputError, match="periods > warmup"):
        evaluate(twin, BaseStock(37), periods=10, warmup=10)
    with pytest.raises(InvalidInputError, match="act"):
        evaluate(twin, 42, periods=10)
    with pytest.raises(InvalidInputError, match="S > s"):
        SS(30, 30)
    with pytest.raises(InvalidInputError, match="level"):
        BaseStock(-1)


def test_best_classic_finds_the_reference_policies() -> None:
    fixed = best_classic(FIXED, DEMAND, periods=400, copies=200, seed=0)
    ss = fixed.policies["(s,S)"]
    assert fixed.best == "(s,S)" and abs(ss.s - 27) <= 2 and abs(ss.S - 58) <= 4
    ev = fixed.evaluations["(s,S)"]
    assert abs(ev.cost - 33.358) < 3 * ev.se + 0.05  # plus what a near-optimal neighbour may cost
    lost = best_classic(LOST, DEMAND, periods=400, copies=200, seed=0)
    assert lost.policies["base-stock"] == BaseStock(35)
    capped = lost.policies["capped base-stock"]
    assert isinstance(capped, CappedBaseStock) and lost.best == "capped base-stock"
    assert lost.evaluations["capped base-stock"].cost < lost.evaluations["base-stock"].cost - 0.1


def test_seasonal_demand_gets_a_seasonal_base_stock_that_beats_one_level() -> None:
    from keel.rl.policies import SeasonalBaseStock

    demand = ToyPoisson(20.0, (0.5, 0.7, 1.0, 1.6, 1.4, 0.8))
    spec = InventorySpec(lead_time=1, costs=Costs(holding=1.0, penalty=9.0))
    found = best_classic(spec, demand, periods=300, copies=128, seed=0)
    seasonal = found.policies["seasonal base-stock"]
    assert isinstance(seasonal, SeasonalBaseStock) and len(seasonal.levels) == 6
    # the level follows the demand it must cover: the peak phase's level is the highest
    assert int(np.argmax(seasonal.levels)) in (2, 3) and found.best == "seasonal base-stock"
    one, per_phase = found.evaluations["base-stock"], found.evaluations["seasonal base-stock"]
    assert per_phase.cost < 0.9 * one.cost
    assert compare(per_phase, one).difference < -5 * compare(per_phase, one).se
