"""The vectorised twin against the plain per-step reference environment, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

from keel.errors import InvalidInputError
from keel.rl.gym_env import ReferenceInventoryEnv
from keel.rl.inventory import InventoryTwin
from keel.rl.spec import Costs, InventorySpec

from ._toy_demand import ToyPoisson

CASES = {
    "backorders L2": InventorySpec(lead_time=2),
    "backorders L0": InventorySpec(lead_time=0),
    "backorders L1": InventorySpec(lead_time=1),
    "lost sales L2": InventorySpec(lead_time=2, lost_sales=True),
    "lost sales L0": InventorySpec(lead_time=0, lost_sales=True),
    "fixed cost": InventorySpec(lead_time=2, costs=Costs(holding=1, penalty=9, fixed_order=50, unit=0.5)),
    "capacity": InventorySpec(lead_time=2, capacity=12),
    "perishable backorders": InventorySpec(lead_time=2, shelf_life=2),
    "perishable lost L0": InventorySpec(lead_time=0, shelf_life=3, lost_sales=True),
    "perishable lost L3 cap": InventorySpec(lead_time=3, shelf_life=2, lost_sales=True, capacity=15),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seasonal", [False, True])
def test_twin_and_reference_give_identical_trajectories(name: str, seasonal: bool) -> None:
    spec = CASES[name]
    demand = ToyPoisson(10.0, (0.5, 1.0, 1.5) if seasonal else (1.0,))
    periods, copies = 80, 5
    rng = np.random.default_rng(7)
    matrix = demand.sample(rng, periods, copies)
    orders = rng.integers(0, 31, size=(periods, copies))  # above the capacity sometimes: clipped
    twin = InventoryTwin(spec, demand, copies=copies, initial=4)
    obs = twin.reset(demand=matrix)
    refs = [ReferenceInventoryEnv(spec, demand, episode_length=periods, initial=4) for _ in range(copies)]
    ref_obs = [env.reset(options={"demand": matrix[:, c]})[0] for c, env in enumerate(refs)]
    assert twin.observation_names == refs[0].observation_names
    assert ("phase" in twin.observation_names) == seasonal
    np.testing.assert_array_equal(obs, np.array(ref_obs))
    for t in range(periods):
        obs, cost, info = twin.step(orders[t])
        for c, env in enumerate(refs):
            r_obs, reward, terminated, truncated, r_info = env.step(int(orders[t, c]))
            np.testing.assert_array_equal(obs[c], r_obs)
            assert cost[c] == pytest.approx(-reward, abs=1e-9)
            assert {k: int(v[c]) for k, v in info.items()} == r_info
            assert truncated == (t == periods - 1) and not terminated


def test_dynamics_by_hand() -> None:
    # lead time 1, backorders: order 5 now, demand 3 then 4, starting with 2 on hand
    twin = InventoryTwin(
        InventorySpec(lead_time=1, costs=Costs(holding=1, penalty=9, fixed_order=2)), ToyPoisson(), initial=2
    )
    twin.reset(demand=[[3], [4]])
    obs, cost, info = twin.step([5])
    # on hand 2, demand 3 -> backlog 1: cost 2 (fixed) + 9 * 1; the 5 arrive, 1 serves the backlog
    assert cost[0] == 11 and info["backlog"][0] == 1 and obs[0].tolist() == [4.0, 4.0]
    obs, cost, info = twin.step([0])
    assert cost[0] == 0 and obs[0].tolist() == [0.0, 0.0]


def test_perishable_units_expire_and_are_counted() -> None:
    twin = InventoryTwin(InventorySpec(lead_time=0, shelf_life=1, lost_sales=True), ToyPoisson())
    twin.reset(demand=[[10], [10]])
    _, cost, info = twin.step([30])
    assert info["expired"][0] == 20 and info["on_hand"][0] == 20 and cost[0] == 20  # held, then discarded
    _, _, info = twin.step([4])
    assert info["lost"][0] == 6 and info["expired"][0] == 0


def test_capacity_clips_orders() -> None:
    twin = InventoryTwin(InventorySpec(lead_time=0, capacity=12), ToyPoisson(), copies=2)
    twin.reset(demand=[[0, 0]])
    _, _, info = twin.step([50, 3])
    assert info["ordered"].tolist() == [12, 3]


def test_same_seed_same_demand_and_fresh_seed_differs() -> None:
    def run(seed: int) -> np.ndarray:
        twin = InventoryTwin(InventorySpec(), ToyPoisson(), copies=8)
        twin.reset(seed=seed)
        return np.array([twin.step(np.full(8, 10))[2]["demand"] for _ in range(300)])  # crosses a draw block

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


@pytest.mark.parametrize(
    ("orders", "match"),
    [([-1, 2], "must be >= 0"), ([1, 2, 3], "shape"), ([np.nan, 1], "finite"), (["a", "b"], "numbers")],
)
def test_bad_orders_are_clear_errors(orders: list[object], match: str) -> None:
    twin = InventoryTwin(InventorySpec(), ToyPoisson(), copies=2)
    with pytest.raises(InvalidInputError, match=match):
        twin.step(orders)


def test_bad_construction_and_demand_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="copies"):
        InventoryTwin(InventorySpec(), ToyPoisson(), copies=0)
    with pytest.raises(InvalidInputError, match="Demand"):
        InventoryTwin(InventorySpec(), object())  # type: ignore[arg-type]
    twin = InventoryTwin(InventorySpec(), ToyPoisson(), copies=2)
    with pytest.raises(InvalidInputError, match=r"shape \(periods, 2\)"):
        twin.reset(demand=np.zeros((5, 3), dtype=int))
    with pytest.raises(InvalidInputError, match=">= 0"):
        twin.reset(demand=-np.ones((5, 2), dtype=int))
    twin.reset(demand=np.ones((1, 2), dtype=int))
    twin.step([0, 0])
    with pytest.raises(InvalidInputError, match="covers 1 periods"):
        twin.step([0, 0])
