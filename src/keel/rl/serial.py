"""A serial supply chain twin, vectorised over copies like inventory.py: stage 0 (the retailer)
faces customer demand, stage i > 0 supplies stage i - 1, and the last stage orders from an outside
supplier with unlimited stock.

One period, following spec.py's timing for every stage at once:
  1. each stage receives what its supplier shipped lead_time periods ago;
  2. each stage i orders q_i (clipped to [0, capacity_i]); its supplier ships
     min(q_i + what it still owes stage i, capacity_i, its own on-hand stock) (the outside supplier
     has unlimited stock); the unshipped rest stays owed (or is lost with `lost_between`);
  3. customer demand (plus the customers' backlog) is served from the retailer's stock;
  4. costs: holding on every stage's end-of-period stock, each stage's backlog rate on the units it
     failed to deliver this period (the retailer: its unmet demand), each stage's unit price on what
     it received from its supplier, minus `price` per unit sold. The per-period cost is
     undiscounted; `SerialSpec.discount` is for the learner's return.

Observation per copy (`observation_names`): the installation position of every stage first
(on hand + in transit + owed to it - what it owes downstream; the retailer's downstream is its
customers' backlog), then every stage's on-hand stock, what every supplier owes, the customers'
backlog, the in-transit pipelines (stage i: L_i - 1 entries) and the season phase when seasonal.
The echelon position of stage i is the sum of the installation positions of stages 0..i.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from keel.errors import InvalidInputError
from keel.rl.inventory import DemandStream, check_orders
from keel.rl.spec import Demand, SerialSpec, Stage

__all__ = ["SerialTwin", "or_gym_spec"]


def or_gym_spec(*, lost_sales: bool = True) -> SerialSpec:
    """or-gym's InvManagement-v1 defaults as a SerialSpec (demand: Poisson mean 20, 30 periods).

    Values from or_gym/envs/supply_chain/inventory_management.py (hubbs5/or-gym): I0 = [100, 100,
    200], p = 2, r = [1.5, 1.0, 0.75, 0.5], k = [0.10, 0.075, 0.05, 0.025], h = [0.15, 0.10, 0.05],
    c = [100, 90, 80], L = [3, 5, 10], alpha = 0.97; v1 is the lost-sales variant (customers and
    replenishment). or-gym counts 4 stages: the 3 stocking stages here plus the raw-material plant,
    our outside supplier. Internal prices (r[0..2]) are transfers that cancel in the chain's
    profit, so only the plant's production cost r[3] = 0.5 is charged (on what the top stage
    receives). Differences from or-gym, on purpose: arrivals come before orders are shipped (our
    timing); or-gym's replenishment penalty is never charged (its `Rcopy = R` aliases the array it
    then caps), ours is, at k[1..2]; the plant cannot fall short (orders are capped at its capacity
    of 80), so k[3] never applies."""
    return SerialSpec(
        stages=(
            Stage(lead_time=3, capacity=100, holding=0.15, backlog=0.10, initial=100),
            Stage(lead_time=5, capacity=90, holding=0.10, backlog=0.075, initial=100),
            Stage(lead_time=10, capacity=80, holding=0.05, backlog=0.05, unit=0.5, initial=200),
        ),
        price=2.0,
        lost_sales=lost_sales,
        lost_between=lost_sales,
        discount=0.97,
    )


def serial_observation_names(spec: SerialSpec, season: int = 1) -> tuple[str, ...]:
    n = len(spec.stages)
    names = [f"position_{i}" for i in range(n)]
    names += [f"on_hand_{i}" for i in range(n)]
    names += [f"owed_by_{i}" for i in range(1, n)]  # what stage i still owes stage i - 1
    names.append("customer_backlog")
    for i, stage in enumerate(spec.stages):
        names += [f"pipeline_{i}_{k}" for k in range(1, stage.lead_time)]
    if season > 1:
        names.append("phase")
    return tuple(names)


class SerialTwin:
    """`copies` independent copies of the chain `spec`; `step(orders)` takes (copies, stages)."""

    def __init__(self, spec: SerialSpec, demand: Demand, *, copies: int = 1) -> None:
        if not isinstance(copies, int) or copies < 1:
            raise InvalidInputError(f"copies must be an integer >= 1, got {copies!r}")
        if not isinstance(demand, Demand):
            raise InvalidInputError(f"demand must implement keel.rl.spec.Demand, got {type(demand).__name__}")
        self.spec, self.demand, self.copies = spec, demand, copies
        self.stages = len(spec.stages)
        self.season = int(demand.season)
        self.observation_names = serial_observation_names(spec, self.season)
        big = np.iinfo(np.int64).max // 4
        self._cap = np.array([[s.capacity if s.capacity is not None else big] for s in spec.stages], dtype=np.int64)
        self._holding = np.array([s.holding for s in spec.stages])
        self._backlog_rate = np.array([s.backlog for s in spec.stages])
        self._unit = np.array([s.unit for s in spec.stages])
        self._stream = DemandStream(demand, copies)
        self.reset(seed=0)

    @property
    def observation_size(self) -> int:
        return len(self.observation_names)

    def reset(self, seed: int | None = None, demand: ArrayLike | None = None) -> NDArray[np.float64]:
        """As InventoryTwin.reset: `demand` (periods, copies) fixes the customers' demand."""
        self._stream.reset(seed, demand)
        c, n = self.copies, self.stages
        self.t = 0
        self.on_hand = np.array([[s.initial] for s in self.spec.stages], dtype=np.int64) * np.ones(c, dtype=np.int64)
        self.owed = np.zeros((n, c), dtype=np.int64)  # owed[i]: what stage i + 1 (or the outside) owes stage i
        self.customer_backlog = np.zeros(c, dtype=np.int64)
        self.pipes = [np.zeros((max(s.lead_time, 1), c), dtype=np.int64) for s in self.spec.stages]
        return self.observe()

    def positions(self) -> NDArray[np.int64]:
        """Installation positions, shape (stages, copies)."""
        transit = np.stack(
            [p[: s.lead_time - 1].sum(axis=0) for p, s in zip(self.pipes, self.spec.stages, strict=True)]
        )
        owes = np.vstack([self.customer_backlog[None, :], self.owed[:-1]])  # what stage i owes downstream
        pos: NDArray[np.int64] = self.on_hand + transit + self.owed - owes
        return pos

    def observe(self) -> NDArray[np.float64]:
        cols = [*self.positions(), *self.on_hand, *self.owed[:-1], self.customer_backlog]
        for p, s in zip(self.pipes, self.spec.stages, strict=True):
            cols.extend(p[: s.lead_time - 1])
        if self.season > 1:
            cols.append(np.full(self.copies, self.t % self.season))
        return np.stack(cols, axis=1).astype(np.float64)

    def step(self, orders: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[str, NDArray[np.int64]]]:
        """One period for every copy; `orders` has shape (copies, stages)."""
        spec, n = self.spec, self.stages
        q = check_orders(orders, (self.copies, n), self._cap.T).T  # (stages, copies)
        request = q + self.owed
        available = np.vstack([self.on_hand[1:], np.full((1, self.copies), np.iinfo(np.int64).max // 4)])
        shipped = np.minimum(np.minimum(request, self._cap), available)
        short_between = request - shipped  # stage i + 1's failure to deliver to stage i
        self.on_hand[1:] -= shipped[:-1]
        self.owed = np.zeros_like(short_between) if spec.lost_between else short_between
        for i, s in enumerate(spec.stages):
            if s.lead_time == 0:
                self.on_hand[i] += shipped[i]
            else:
                self.pipes[i][-1] = shipped[i]
        d = self._stream.at(self.t)
        need = d + self.customer_backlog
        sold = np.minimum(self.on_hand[0], need)
        self.on_hand[0] -= sold
        unmet = need - sold
        self.customer_backlog = np.zeros_like(unmet) if spec.lost_sales else unmet
        cost = (
            self._holding @ self.on_hand
            + self._backlog_rate[0] * unmet
            + self._backlog_rate[1:] @ short_between[:-1]
            + self._unit @ shipped
            - spec.price * sold  # revenue when delivered (a backlogged sale pays when it is served)
        )
        end_stock = self.on_hand.T.copy()
        self.t += 1
        for i, s in enumerate(spec.stages):  # next period's arrivals
            if s.lead_time > 0:
                pipe = self.pipes[i]
                self.on_hand[i] += pipe[0]
                pipe[:-1] = pipe[1:].copy()
                pipe[-1] = 0
        info = {
            "on_hand": end_stock,
            "shipped": shipped.T.copy(),
            "ordered": q.T.copy(),
            "demand": d.copy(),
            "sold": sold,
            "unmet": unmet,
        }
        return self.observe(), np.asarray(cost, dtype=np.float64), info
