"""The single-item inventory twin, vectorised over copies: one `step(orders)` advances `copies`
independent systems at once with a handful of NumPy operations, so simulating 1,024 copies costs
about as much as simulating one in plain Python.

The period follows spec.py's timing exactly (arrival, order, demand, costs, expiry). The state of
copy c is kept as integer arrays:

    stock[a, c]    units on hand that have already been held a periods (a = 0 .. ages - 1; one
                   bucket when nothing perishes)
    backlog[c]     units backordered (always 0 under lost sales)
    pipe[k, c]     the order that arrives in k + 1 periods (k = 0 .. L - 2); the row L - 1 is the
                   slot the order placed this period occupies until the end of the period

The observation of a copy (float64, `observation_names` gives the layout) is, in order:

    position                   net inventory + outstanding orders: what every classic policy reads
    net_inventory | on_hand    (not perishable) on hand - backlog under backorders, else on hand
    on_hand_age_0 ..           (perishable) on hand by age, then `backlog` under backorders
    pipeline_1 .. pipeline_L-1 outstanding orders, pipeline_k arriving in k periods
    phase                      t % season, only when the demand is seasonal

Units arriving while there is a backlog serve the backlog first, so on-hand stock and a backlog
are never both positive in an observation; demand is served oldest stock first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from keel.errors import InvalidInputError
from keel.rl.spec import Demand, InventorySpec

__all__ = ["DemandStream", "InventoryTwin", "check_orders", "observation_names"]

_BLOCK = 256  # periods of demand drawn at a time when no matrix is given


def observation_names(spec: InventorySpec, season: int = 1) -> tuple[str, ...]:
    """The observation layout of a twin of `spec` whose demand has cycle length `season`."""
    names = ["position"]
    if spec.shelf_life is None:
        names.append("on_hand" if spec.lost_sales else "net_inventory")
    else:
        names.extend(f"on_hand_age_{a}" for a in range(spec.shelf_life))
        if not spec.lost_sales:
            names.append("backlog")
    names.extend(f"pipeline_{k}" for k in range(1, spec.lead_time))
    if season > 1:
        names.append("phase")
    return tuple(names)


def check_orders(orders: ArrayLike, shape: tuple[int, ...], limit: NDArray[np.int64] | int) -> NDArray[np.int64]:
    """Orders as integers of `shape`, rounded to whole units and clipped to `limit`; negative,
    non-finite or misshapen orders are errors, not silently repaired (a policy that orders -3 has a
    bug worth seeing)."""
    arr = np.asarray(orders)
    if arr.shape != shape:
        if arr.size == int(np.prod(shape)) and arr.ndim <= len(shape) + 1:
            arr = arr.reshape(shape)  # (copies, 1) from a Box action is fine
        else:
            raise InvalidInputError(f"orders must have shape {shape} (one per copy), got {arr.shape}")
    if arr.dtype.kind not in "iuf" and arr.dtype != np.bool_:
        raise InvalidInputError(f"orders must be numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InvalidInputError("orders must be finite; got NaN or infinity")
        arr = np.rint(arr)
    if (arr < 0).any():
        raise InvalidInputError(f"orders must be >= 0 units, got {arr.min()}: a policy may not return stock")
    return np.minimum(arr.astype(np.int64), limit)


class InventoryTwin:
    """`copies` independent copies of the system `spec` facing `demand`. `reset` starts every copy
    with `initial` units on hand and nothing on order; `step(orders)` returns the observations,
    the cost of the period per copy (>= 0; a reward is its negative) and an info dict of arrays."""

    def __init__(self, spec: InventorySpec, demand: Demand, *, copies: int = 1, initial: int = 0) -> None:
        if not isinstance(copies, int) or copies < 1:
            raise InvalidInputError(f"copies must be an integer >= 1, got {copies!r}")
        if not isinstance(initial, int) or initial < 0:
            raise InvalidInputError(f"initial stock must be an integer >= 0, got {initial!r}")
        if not isinstance(demand, Demand):
            raise InvalidInputError(f"demand must implement keel.rl.spec.Demand, got {type(demand).__name__}")
        self.spec, self.demand, self.copies, self.initial = spec, demand, copies, initial
        self.season = int(demand.season)
        self.observation_names = observation_names(spec, self.season)
        self._ages = spec.shelf_life or 1
        self._stream = DemandStream(demand, copies)
        self.reset(seed=0)

    @property
    def observation_size(self) -> int:
        return len(self.observation_names)

    def reset(self, seed: int | None = None, demand: ArrayLike | None = None) -> NDArray[np.float64]:
        """Start every copy afresh. `seed` seeds the demand draws (None: continue the generator
        already in use; a new twin's is seeded 0, so an unseeded run is still reproducible); `demand`, a (periods, copies) matrix of non-negative
        integers, replaces the draws: what lets two policies face the same demand."""
        self._stream.reset(seed, demand)
        c = self.copies
        self.t = 0
        self.stock = np.zeros((self._ages, c), dtype=np.int64)
        self.stock[0] = self.initial
        self.backlog = np.zeros(c, dtype=np.int64)
        self.pipe = np.zeros((max(self.spec.lead_time, 1), c), dtype=np.int64)
        return self.observe()

    def position(self) -> NDArray[np.int64]:
        """The inventory position per copy: on hand - backlog + outstanding orders."""
        outstanding = self.pipe[:-1].sum(axis=0) if self.spec.lead_time > 1 else 0
        pos: NDArray[np.int64] = self.stock.sum(axis=0) - self.backlog + outstanding
        return pos

    def observe(self) -> NDArray[np.float64]:
        """The observations, shape (copies, observation_size), laid out as `observation_names`."""
        spec = self.spec
        cols: list[Any] = [self.position()]
        if spec.shelf_life is None:
            cols.append(self.stock[0] if spec.lost_sales else self.stock[0] - self.backlog)
        else:
            cols.extend(self.stock)
            if not spec.lost_sales:
                cols.append(self.backlog)
        cols.extend(self.pipe[: spec.lead_time - 1])
        if self.season > 1:
            cols.append(np.full(self.copies, self.t % self.season))
        return np.stack(cols, axis=1).astype(np.float64)

    def _receive(self, arrival: NDArray[np.int64]) -> None:
        served = np.minimum(self.backlog, arrival)  # a backlog takes arriving units first
        self.backlog -= served
        self.stock[0] += arrival - served

    def step(self, orders: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[str, NDArray[np.int64]]]:
        """One period for every copy; `orders` (copies,) are rounded and clipped to the capacity."""
        spec, costs = self.spec, self.spec.costs
        q = check_orders(orders, (self.copies,), spec.order_limit)
        cost = costs.fixed_order * (q > 0) + costs.unit * q
        if spec.lead_time == 0:
            self._receive(q)
        else:
            self.pipe[-1] = q
        d = self._stream.at(self.t)
        need = d + self.backlog  # the backlog is 0 after arrivals unless stock ran out
        if self._ages == 1:
            sold = np.minimum(self.stock[0], need)
            self.stock[0] -= sold
        else:
            left = need.copy()
            for a in range(self._ages - 1, -1, -1):  # oldest first; the age axis is tiny
                take = np.minimum(self.stock[a], left)
                self.stock[a] -= take
                left -= take
            sold = need - left
        short = need - sold
        on_hand = self.stock.sum(axis=0)
        if spec.lost_sales:
            lost, self.backlog = short, np.zeros_like(short)
            cost = cost + costs.holding * on_hand + costs.penalty * lost
        else:
            lost, self.backlog = np.zeros_like(short), short
            cost = cost + costs.holding * on_hand + costs.penalty * short
        if spec.shelf_life is not None:
            expired = self.stock[-1].copy()
            self.stock[1:] = self.stock[:-1].copy()
            self.stock[0] = 0
        else:
            expired = np.zeros_like(q)
        end_backlog = self.backlog.copy()  # what the penalty was charged on, before the next arrival
        self.t += 1
        if spec.lead_time > 0:  # next period's arrival: the order placed lead_time periods ago
            arrival = self.pipe[0].copy()
            self.pipe[:-1] = self.pipe[1:].copy()
            self.pipe[-1] = 0
            self._receive(arrival)
        info = {
            "on_hand": on_hand,
            "backlog": end_backlog,
            "lost": lost,
            "ordered": q,
            "demand": d.copy(),
            "expired": expired,
        }
        return self.observe(), np.asarray(cost, dtype=np.float64), info


class DemandStream:
    """The demand a twin's copies face, period by period: rows of a matrix given to `reset`, or
    drawn from the model in blocks of _BLOCK periods (cheap, and the same for every policy since
    the generator serves nothing else)."""

    def __init__(self, demand: Demand, copies: int) -> None:
        self.demand, self.copies = demand, copies
        self._rng: np.random.Generator | None = None
        self._matrix: NDArray[np.int64] | None = None
        self._given, self._start = False, 0

    def reset(self, seed: int | None, matrix: ArrayLike | None) -> None:
        if seed is not None or self._rng is None:
            self._rng = np.random.default_rng(seed)
        self._given, self._start = matrix is not None, 0
        self._matrix = None if matrix is None else _demand_matrix(matrix, self.copies)

    def at(self, t: int) -> NDArray[np.int64]:
        """Period t's demand, one per copy."""
        if self._given:
            assert self._matrix is not None
            if t >= self._matrix.shape[0]:
                raise InvalidInputError(
                    f"the demand matrix given to reset covers {self._matrix.shape[0]} periods; step {t + 1} "
                    "needs more: pass a longer matrix or reset"
                )
            row: NDArray[np.int64] = self._matrix[t]
            return row
        if self._matrix is None or t >= self._start + self._matrix.shape[0]:
            assert self._rng is not None
            self._start = t
            self._matrix = np.asarray(self.demand.sample(self._rng, _BLOCK, self.copies, start=t), dtype=np.int64)
        drawn: NDArray[np.int64] = self._matrix[t - self._start]
        return drawn


def _demand_matrix(demand: ArrayLike, copies: int) -> NDArray[np.int64]:
    arr = np.asarray(demand)
    if arr.ndim == 1 and copies == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != copies:
        raise InvalidInputError(f"a demand matrix must have shape (periods, {copies}), got {arr.shape}")
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.rint(arr))):
        raise InvalidInputError("demand must be whole units (integers)")
    if (arr < 0).any():
        raise InvalidInputError(f"demand must be >= 0, got {arr.min()}")
    return arr.astype(np.int64)
