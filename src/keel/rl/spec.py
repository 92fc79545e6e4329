"""What an inventory twin is, as plain frozen values: the system (`InventorySpec`, `SerialSpec`), its
costs, and its demand (`Demand`). The environments (inventory.py, serial.py), the exact optimum
(dp.py), the classic policies (policies.py) and the demand fitting (demand.py) all read these, so
that a twin fitted from a dataset version, a reference case from a paper and a test case are the
same kind of value.

Timing of one period, shared by every part of keel.rl (the DP and the simulators must agree):
  1. the order placed `lead_time` periods ago arrives (lead time 0: this period's order arrives now);
  2. the policy sees the state and orders `q` (0 <= q <= capacity); a fixed cost is paid if q > 0;
  3. demand `d` is drawn and served from on-hand stock; the unmet part is backordered (or lost);
  4. costs are charged on the end-of-period position: holding on on-hand stock, the penalty on the
     units backordered at the end of the period (backorders) or lost this period (lost sales);
  5. with perishability, stock older than `shelf_life` periods is discarded (oldest served first).
With backorders, lead time L and base-stock level S this makes the cost E[h (S - D)^+ + p (D - S)^+]
with D the demand over L + 1 periods: the textbook newsvendor on lead-time demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from keel.errors import InvalidInputError

__all__ = ["Costs", "Demand", "InventorySpec", "SerialSpec", "Stage"]


@dataclass(frozen=True)
class Costs:
    """Per-period costs: holding per unit on hand at the end of a period, the penalty per unit short
    (backordered at the end of the period, or lost), a fixed cost per order placed, a price per unit
    ordered (0 by default: it changes no decision under backorders)."""

    holding: float = 1.0
    penalty: float = 9.0
    fixed_order: float = 0.0
    unit: float = 0.0

    def __post_init__(self) -> None:
        for name in ("holding", "penalty", "fixed_order", "unit"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise InvalidInputError(f"costs.{name} must be a finite number >= 0, got {value!r}")


@runtime_checkable
class Demand(Protocol):
    """A demand model: non-negative integer demand per period, possibly seasonal (period t's
    distribution depends on t % season)."""

    @property
    def season(self) -> int:
        """1 for a stationary model; else the length of the seasonal cycle in periods."""
        ...

    def mean(self, t: int = 0) -> float:
        """The expected demand in period t."""
        ...

    def pmf(self, t: int = 0, *, tail: float = 1e-9) -> NDArray[np.float64]:
        """P(demand = k) for k = 0..K in period t, truncated where the tail beyond K is below `tail`
        (the last entry carries the remaining mass, so it sums to 1): what the DP enumerates."""
        ...

    def sample(self, rng: np.random.Generator, periods: int, copies: int, *, start: int = 0) -> NDArray[np.int64]:
        """Demand for periods start .. start + periods - 1 of `copies` independent copies, shape
        (periods, copies). Drawing a whole horizon at once is what makes common random numbers
        cheap: two policies evaluated on the same matrix face the same demand."""
        ...


@dataclass(frozen=True)
class InventorySpec:
    """A single-item, periodic-review inventory system."""

    lead_time: int = 2
    costs: Costs = field(default_factory=Costs)
    lost_sales: bool = False  # else: unmet demand is backordered
    capacity: int | None = None  # the most that can be ordered in one period
    shelf_life: int | None = None  # periods a unit keeps; None: it never perishes
    max_order: int = 200  # the action space's upper bound when there is no capacity (and the DP's)

    def __post_init__(self) -> None:
        if isinstance(self.lead_time, bool) or not isinstance(self.lead_time, int) or self.lead_time < 0:
            raise InvalidInputError(f"lead_time must be an integer >= 0 (periods), got {self.lead_time!r}")
        if self.capacity is not None and (not isinstance(self.capacity, int) or self.capacity < 1):
            raise InvalidInputError(f"capacity must be an integer >= 1 (units per period), got {self.capacity!r}")
        if self.shelf_life is not None and (not isinstance(self.shelf_life, int) or self.shelf_life < 1):
            raise InvalidInputError(f"shelf_life must be an integer >= 1 (periods), got {self.shelf_life!r}")
        if not isinstance(self.max_order, int) or self.max_order < 1:
            raise InvalidInputError(f"max_order must be an integer >= 1, got {self.max_order!r}")

    @property
    def order_limit(self) -> int:
        """The largest order the twin accepts in one period."""
        return self.capacity if self.capacity is not None else self.max_order


@dataclass(frozen=True)
class Stage:
    """One stage of a serial supply chain (stage 0 is the retailer, facing customer demand; stage
    i > 0 supplies stage i - 1; the last stage orders from an unlimited outside supplier)."""

    lead_time: int
    capacity: int | None = None
    holding: float = 0.0
    backlog: float = 0.0  # per unit of this stage's unmet orders (the retailer's: per unit of unmet demand)
    unit: float = 0.0  # price per unit ordered by this stage
    initial: int = 0  # on-hand stock at the start


@dataclass(frozen=True)
class SerialSpec:
    """A multi-echelon serial chain. `lost_sales` applies to the retailer's customers; between stages
    unmet orders are backlogged (or lost, as in or-gym's InvManagement-v1, with `lost_between`)."""

    stages: tuple[Stage, ...]
    price: float = 0.0  # revenue per unit sold to customers (or-gym's profit view); 0: costs only
    lost_sales: bool = False
    lost_between: bool = False
    discount: float = 1.0

    def __post_init__(self) -> None:
        if len(self.stages) < 2:
            raise InvalidInputError(f"a serial chain needs at least 2 stages, got {len(self.stages)}")
        for i, s in enumerate(self.stages):
            if s.lead_time < 0 or min(s.holding, s.backlog, s.unit) < 0 or s.initial < 0:
                raise InvalidInputError(f"stages[{i}]: lead times, costs and initial stock must be >= 0, got {s}")
