"""The exact optimum of a single-item inventory twin, and the exact cost of classic policies on it.

Values in, values out; numpy and scipy only. The timing is spec.py's (arrival, order, demand, costs
on the end-of-period position), so these figures are what the simulators converge to.

Two Markov chains, both solved by relative value iteration (RVI) with the span of V_{n+1} - V_n as
the bound on the gain (Odoni's bounds: the optimal cost per period lies between its min and max):
- backorders: the state collapses to the inventory position x; ordering up to y >= x costs
  G(y) = E[h (y - D)^+ + p (D - y)^+] with D the demand over lead_time + 1 periods (charged when the
  order lands; the timing makes this exact, not an approximation) plus the fixed cost; x' = y - d.
  Without fixed cost or capacity the optimum is the closed form: the newsvendor on lead-time demand.
  With a fixed cost the optimum is an (s, S) policy, read off the DP table.
- lost sales with lead time L >= 1: the state is (on-hand after arrival, the L - 1 orders still in
  transit, oldest first); the Bellman update is a tensordot over the on-hand left after demand, a
  fancy-index gather for the pipeline shift and a min over the order, all vectorised. The state
  space is truncated at a high quantile of lead-time demand; a state past the bound is clipped to it.

Seasonal demand and perishability are outside this module: they raise, pointing at simulation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from keel.errors import InvalidInputError
from keel.rl.spec import Demand, InventorySpec

__all__ = ["Optimum", "PolicyCost", "optimum", "base_stock_cost", "s_S_cost", "best_base_stock", "best_s_S"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_TAIL = 1e-9


@dataclass(frozen=True)
class Optimum:
    """The optimal cost per period of a twin and the policy that attains it.

    `policy` is the order quantity per state: for backorders indexed by inventory position
    `x - offset`; for lost sales by (on-hand, pipeline...) with lead time >= 1 (on-hand after the
    arrival, pipeline oldest first). `order(on_hand, pipeline)` reads it for you."""

    cost: float  # per period: the midpoint of the RVI bounds (exact for the closed form)
    gap_bound: float  # upper minus lower bound on the cost: |cost - true optimum| <= gap_bound / 2
    method: str
    iterations: int
    seconds: float
    lost_sales: bool
    policy: IntArray = field(compare=False, repr=False)
    offset: int = 0  # backorders: policy[x - offset] is the order at inventory position x
    base_stock: int | None = None  # when the optimum is a base-stock (order-up-to) policy
    s: int | None = None  # when it is an (s, S) policy: order up to S when the position is <= s
    S: int | None = None

    def order(self, on_hand: int, pipeline: tuple[int, ...] = ()) -> int:
        """The optimal order given net stock after this period's arrival and the orders in transit."""
        if not self.lost_sales:
            x = int(np.clip(on_hand + sum(pipeline) - self.offset, 0, self.policy.size - 1))
            return int(self.policy[x])
        if len(pipeline) != self.policy.ndim - 1:
            raise InvalidInputError(
                f"pipeline must hold the {self.policy.ndim - 1} orders still in transit after this "
                f"period's arrival (lead time - 1), got {len(pipeline)}"
            )
        top = np.array(self.policy.shape) - 1
        idx = np.minimum(np.array((on_hand, *pipeline)), top)
        return int(self.policy[tuple(idx)])


@dataclass(frozen=True)
class PolicyCost:
    """The exact long-run cost per period of a classic policy on the twin."""

    policy: str  # "base-stock" or "(s,S)"
    params: tuple[int, ...]  # (S,) or (s, S)
    cost: float
    gap_bound: float  # 0 for a closed form
    iterations: int


def _check(spec: InventorySpec, demand: Demand) -> FloatArray:
    if demand.season != 1:
        raise InvalidInputError(
            f"the DP needs stationary demand, got a seasonal model (season {demand.season}): "
            "evaluate seasonal twins by simulation"
        )
    if spec.shelf_life is not None:
        raise InvalidInputError("the DP does not cover perishable stock (shelf_life): evaluate it by simulation")
    return demand.pmf(0, tail=_TAIL)


def _lead_pmf(pmf: FloatArray, periods: int) -> FloatArray:
    out = pmf
    for _ in range(periods - 1):
        out = np.convolve(out, pmf)
    return out


def _quantile(pmf: FloatArray, q: float) -> int:
    return int(np.searchsorted(np.cumsum(pmf), q))


def _rvi(
    bellman: Callable[[FloatArray], tuple[FloatArray, IntArray]], v: FloatArray, tol: float, max_iter: int
) -> tuple[float, float, int, IntArray]:
    """Relative value iteration: returns (lower, upper, iterations, policy)."""
    for it in range(1, max_iter + 1):
        tv, act = bellman(v)
        diff = tv - v
        lo, hi = float(diff.min()), float(diff.max())
        v = tv - tv.flat[0]  # subtracting a reference state's value keeps V bounded
        if hi - lo < tol:
            return lo, hi, it, act
    raise InvalidInputError(
        f"relative value iteration did not converge in {max_iter} iterations (span {hi - lo:.3g}): "
        "raise max_iter or tol"
    )


# -- backorders: the inventory-position chain ------------------------------------------------------


@dataclass(frozen=True)
class _Chain1D:
    lo: int
    g: FloatArray  # G(y) for y = lo .. hi
    idx: IntArray  # idx[y, d] = index of y - d, clipped
    pmf: FloatArray
    fixed: float
    cap: int | None

    def expected(self, v: FloatArray) -> FloatArray:
        return self.g + v[self.idx] @ self.pmf


def _chain_1d(spec: InventorySpec, pmf: FloatArray, bounds: tuple[int, int] | None) -> _Chain1D:
    h, p = spec.costs.holding, spec.costs.penalty
    lead = _lead_pmf(pmf, spec.lead_time + 1)
    dmax = pmf.size - 1
    if bounds is None:
        # below: an optimal order never leaves the position under 0, so one period's demand is the
        # furthest it falls (capacity can leave it lower: allow a few periods); above: lead-time
        # demand's tail plus room for an (s, S) batch
        top = _quantile(lead, 1 - 1e-7)
        batch = int(np.ceil(3 * np.sqrt(2 * spec.costs.fixed_order * float(np.arange(pmf.size) @ pmf) / max(h, 1e-9))))
        low = -dmax - 1 if spec.capacity is None else -4 * dmax
        bounds = (low, top + batch + dmax // 2)
    lo, hi = bounds
    y = np.arange(lo, hi + 1)
    k = np.arange(lead.size)
    over = np.maximum(y[:, None] - k[None, :], 0)
    under = np.maximum(k[None, :] - y[:, None], 0)
    g = (h * over + p * under) @ lead
    idx = np.clip(y[:, None] - np.arange(pmf.size)[None, :] - lo, 0, y.size - 1)
    return _Chain1D(lo=lo, g=g, idx=idx.astype(np.int64), pmf=pmf, fixed=spec.costs.fixed_order, cap=spec.capacity)


def _best_up(hv: FloatArray, cap: int | None) -> tuple[FloatArray, IntArray]:
    """For each x: min over y in (x, x + cap] of hv[y] and its argmin (inf past the top)."""
    n = hv.size
    width = n if cap is None else cap
    padded = np.r_[hv[1:], np.full(width, np.inf)]
    windows = sliding_window_view(padded, width)[:n]
    arg = windows.argmin(axis=1)
    return windows[np.arange(n), arg], (np.arange(n) + 1 + arg).astype(np.int64)


def _bellman_1d(chain: _Chain1D) -> Callable[[FloatArray], tuple[FloatArray, IntArray]]:
    def step(v: FloatArray) -> tuple[FloatArray, IntArray]:
        hv = chain.expected(v)
        up, target = _best_up(hv, chain.cap)
        order = chain.fixed + up < hv
        states = np.arange(hv.size)
        return np.where(order, chain.fixed + up, hv), np.where(order, target - states, 0).astype(np.int64)

    return step


def _evaluate_1d(chain: _Chain1D, up_to: IntArray, tol: float, max_iter: int) -> tuple[float, float, int]:
    """RVI for a fixed policy: `up_to[x]` is the index ordered up to from state index x."""
    ordered = up_to > np.arange(up_to.size)

    def step(v: FloatArray) -> tuple[FloatArray, IntArray]:
        return chain.expected(v)[up_to] + chain.fixed * ordered, up_to

    lo, hi, it, _ = _rvi(step, np.zeros(up_to.size), tol, max_iter)
    return lo, hi, it


# -- lost sales: (on-hand, pipeline) ----------------------------------------------------------------


@dataclass(frozen=True)
class _ChainLS:
    shape: tuple[int, ...]  # (Y + 1, Q + 1, ..., Q + 1): on-hand, then lead_time - 1 pipeline slots
    cost: FloatArray  # expected holding + penalty by on-hand after arrival
    left: FloatArray  # left[y, z] = P((y - D)^+ = z)
    nxt: IntArray  # nxt[z, q1] = clip(z + q1): the next on-hand
    order_cost: FloatArray  # by order q


def _chain_ls(spec: InventorySpec, pmf: FloatArray, bounds: tuple[int, int] | None) -> _ChainLS:
    h, p, c = spec.costs.holding, spec.costs.penalty, spec.costs
    if bounds is None:
        lead = _lead_pmf(pmf, spec.lead_time + 1)
        top = _quantile(lead, 1 - 1e-6) + int(
            np.ceil(np.sqrt(2 * c.fixed_order * float(np.arange(pmf.size) @ pmf) / max(h, 1e-9)))
        )
        bounds = (top, min(spec.order_limit, top))
    ymax, qmax = bounds
    qmax = min(qmax, spec.order_limit)
    y = np.arange(ymax + 1)
    d = np.arange(pmf.size)
    rest = np.maximum(y[:, None] - d[None, :], 0)
    lost = np.maximum(d[None, :] - y[:, None], 0)
    cost = (h * rest + p * lost) @ pmf
    left = np.zeros((ymax + 1, ymax + 1))
    np.add.at(left, (np.repeat(y, d.size), rest.ravel()), np.tile(pmf, y.size))
    nxt = np.minimum(y[:, None] + np.arange(qmax + 1)[None, :], ymax).astype(np.int64)
    q = np.arange(qmax + 1)
    order_cost = c.fixed_order * (q > 0) + c.unit * q
    shape = (ymax + 1,) + (qmax + 1,) * (spec.lead_time - 1)
    return _ChainLS(shape=shape, cost=cost, left=left, nxt=nxt, order_cost=order_cost)


def _ls_expected(chain: _ChainLS, v: FloatArray) -> FloatArray:
    """a[y, q1, ..., q] = E[V(next state)] + order cost, for every state and order q."""
    # The next state is (z + q1, q2, ..., q_{L-1}, q): indexing V's first axis with nxt[z, q1]
    # leaves V's pipeline axes in place, which are exactly (q2, ..., q) - the shift is free.
    # Lead time 1 is the same with no pipeline: nxt[z, q] and V's own axis gone.
    gathered = v[chain.nxt]  # [z, q1, q2, ..., q]
    a = np.tensordot(chain.left, gathered, axes=(1, 0))
    extra = chain.cost.reshape((-1,) + (1,) * (a.ndim - 1)) + chain.order_cost
    return a + extra


def _bellman_ls(chain: _ChainLS) -> Callable[[FloatArray], tuple[FloatArray, IntArray]]:
    def step(v: FloatArray) -> tuple[FloatArray, IntArray]:
        a = _ls_expected(chain, v)
        act = a.argmin(axis=-1)
        return np.take_along_axis(a, act[..., None], axis=-1)[..., 0], act.astype(np.int64)

    return step


def _evaluate_ls(chain: _ChainLS, act: IntArray, tol: float, max_iter: int) -> tuple[float, float, int]:
    """RVI for a fixed order table: only the chosen order's successors are gathered (a flat index
    per state and on-hand-left z), so one step costs states x z, not states x z x orders."""
    grids = np.meshgrid(*[np.arange(n) for n in chain.shape], indexing="ij")
    z = np.arange(chain.shape[0]).reshape((1,) * len(chain.shape) + (-1,))
    if len(chain.shape) == 1:
        flat = chain.nxt[z, act[..., None]]
    else:
        head = chain.nxt[z, grids[1][..., None]]
        rest = [g[..., None] + 0 * z for g in grids[2:]] + [act[..., None] + 0 * z]
        flat = np.ravel_multi_index((head, *rest), chain.shape)
    left = chain.left.reshape((chain.shape[0],) + (1,) * (len(chain.shape) - 1) + (chain.shape[0],))
    fixed = chain.cost.reshape((-1,) + (1,) * (len(chain.shape) - 1)) + chain.order_cost[act]

    def step(v: FloatArray) -> tuple[FloatArray, IntArray]:
        return (left * v.ravel()[flat]).sum(axis=-1) + fixed, act

    lo, hi, it, _ = _rvi(step, np.zeros(chain.shape), tol, max_iter)
    return lo, hi, it


def _ls_policy_table(chain: _ChainLS, s: int, big_s: int) -> IntArray:
    """Orders of an (s, S) policy on the inventory position y + pipeline (base-stock: s = S - 1)."""
    grids = np.meshgrid(*[np.arange(n) for n in chain.shape], indexing="ij")
    position = sum(grids, np.zeros(chain.shape, dtype=np.int64))
    qmax = chain.order_cost.size - 1
    q = np.where(position <= s, np.clip(big_s - position, 0, qmax), 0)
    return q.astype(np.int64)


# -- public ----------------------------------------------------------------------------------------


def optimum(
    spec: InventorySpec,
    demand: Demand,
    *,
    tol: float = 1e-7,
    max_iter: int = 20_000,
    bounds: tuple[int, int] | None = None,
) -> Optimum:
    """The optimal cost per period and policy. `bounds`: backorders (lowest, highest inventory
    position); lost sales (highest on-hand, largest order); the defaults cover the demand's tail."""
    pmf = _check(spec, demand)
    start = time.perf_counter()
    if not spec.lost_sales:
        return _optimum_backorders(spec, demand, pmf, tol, max_iter, bounds, start)
    if spec.lead_time == 0:
        raise InvalidInputError(
            "lost sales with lead time 0 is a newsvendor every period: use lead_time >= 1, or backorders"
        )
    chain = _chain_ls(spec, pmf, bounds)
    lo, hi, it, act = _rvi(_bellman_ls(chain), np.zeros(chain.shape), tol, max_iter)
    return Optimum(
        cost=(lo + hi) / 2,
        gap_bound=hi - lo,
        method=f"relative value iteration over {int(np.prod(chain.shape))} states (on-hand, pipeline)",
        iterations=it,
        seconds=time.perf_counter() - start,
        lost_sales=True,
        policy=act,
    )


def _optimum_backorders(
    spec: InventorySpec,
    demand: Demand,
    pmf: FloatArray,
    tol: float,
    max_iter: int,
    bounds: tuple[int, int] | None,
    start: float,
) -> Optimum:
    chain = _chain_1d(spec, pmf, bounds)
    unit = spec.costs.unit * demand.mean(0)  # every unit demanded is ordered once: a constant
    if spec.costs.fixed_order == 0 and spec.capacity is None:
        level = int(np.argmin(chain.g))
        x = np.arange(chain.g.size)
        table = np.maximum(level - x, 0).astype(np.int64)
        return Optimum(
            cost=float(chain.g[level]) + unit,
            gap_bound=0.0,
            method="closed form: newsvendor on lead-time demand",
            iterations=0,
            seconds=time.perf_counter() - start,
            lost_sales=False,
            policy=table,
            offset=chain.lo,
            base_stock=level + chain.lo,
        )
    lo, hi, it, act = _rvi(_bellman_1d(chain), np.zeros(chain.g.size), tol, max_iter)
    ordering = np.flatnonzero(act > 0)
    s_val = big_s = base = None
    if spec.capacity is None and ordering.size:
        # the DP's table is (s, S): order up to one level from every position at or below s
        targets = np.unique(ordering + act[ordering])
        if targets.size == 1 and np.all(np.diff(ordering) == 1) and ordering[0] == 0:
            s_val, big_s = int(ordering[-1]) + chain.lo, int(targets[0]) + chain.lo
            base = big_s if spec.costs.fixed_order == 0 else None
    return Optimum(
        cost=(lo + hi) / 2 + unit,
        gap_bound=hi - lo,
        method=f"relative value iteration over {chain.g.size} inventory positions",
        iterations=it,
        seconds=time.perf_counter() - start,
        lost_sales=False,
        policy=act,
        offset=chain.lo,
        base_stock=base,
        s=s_val,
        S=big_s,
    )


def s_S_cost(
    spec: InventorySpec, demand: Demand, s: int, S: int, *, tol: float = 1e-7, max_iter: int = 20_000
) -> PolicyCost:
    """The exact cost per period of ordering up to S (at most the capacity) whenever the inventory
    position is at or below s, evaluated on the same chain as the optimum."""
    if S <= s:
        raise InvalidInputError(f"an (s, S) policy needs S > s, got s={s}, S={S}")
    pmf = _check(spec, demand)
    if spec.lost_sales:
        if spec.lead_time == 0:
            raise InvalidInputError("lost sales with lead time 0: use lead_time >= 1")
        chain = _chain_ls(spec, pmf, None)
        lo, hi, it = _evaluate_ls(chain, _ls_policy_table(chain, s, S), tol, max_iter)
        return PolicyCost("(s,S)", (s, S), (lo + hi) / 2, hi - lo, it)
    chain1 = _chain_1d(spec, pmf, None)
    x = np.arange(chain1.g.size) + chain1.lo
    cap = spec.capacity if spec.capacity is not None else x.size  # no overflow: x + cap stays an int64
    up_to = np.where(x <= s, np.minimum(np.maximum(S, x), x + cap), x)
    up_idx = np.clip(up_to - chain1.lo, 0, x.size - 1).astype(np.int64)
    lo, hi, it = _evaluate_1d(chain1, up_idx, tol, max_iter)
    return PolicyCost("(s,S)", (s, S), (lo + hi) / 2 + spec.costs.unit * demand.mean(0), hi - lo, it)


def base_stock_cost(
    spec: InventorySpec, demand: Demand, level: int, *, tol: float = 1e-7, max_iter: int = 20_000
) -> PolicyCost:
    """The exact cost per period of the base-stock (order-up-to) policy at `level` (capped at the
    capacity): the closed form G(level) under backorders without fixed cost or capacity."""
    pmf = _check(spec, demand)
    if not spec.lost_sales and spec.capacity is None:
        chain = _chain_1d(spec, pmf, None)
        i = int(np.clip(level - chain.lo, 0, chain.g.size - 1))
        # every period orders (demand is never zero for long), but count the fixed cost exactly
        fixed = spec.costs.fixed_order * (1.0 - float(pmf[0]))
        cost = float(chain.g[i]) + fixed + spec.costs.unit * demand.mean(0)
        return PolicyCost("base-stock", (level,), cost, 0.0, 0)
    r = s_S_cost(spec, demand, level - 1, level, tol=tol, max_iter=max_iter)
    return PolicyCost("base-stock", (level,), r.cost, r.gap_bound, r.iterations)


def best_base_stock(spec: InventorySpec, demand: Demand, *, tol: float = 1e-7) -> PolicyCost:
    """The best base-stock level, exactly. The search starts at the backorder newsvendor level (the
    closed form; lost sales and capacity only lower the best level) and walks downhill one unit at
    a time: the cost is unimodal in the level for these chains."""
    pmf = _check(spec, demand)
    chain = _chain_1d(spec, pmf, None)
    level = int(np.argmin(chain.g)) + chain.lo
    best = base_stock_cost(spec, demand, level, tol=tol)
    if not spec.lost_sales and spec.capacity is None:
        return best
    for direction in (-1, 1):
        while True:
            cur = base_stock_cost(spec, demand, best.params[0] + direction, tol=tol)
            if cur.cost >= best.cost:
                break
            best = cur
    return best


def best_s_S(spec: InventorySpec, demand: Demand, *, tol: float = 1e-7) -> PolicyCost:
    """The best (s, S) policy: read off the DP's optimum when it has that form (backorders without
    capacity); otherwise a local search over (s, S) one unit at a time from the best base-stock
    level, with S raised by the economic order quantity when there is a fixed cost."""
    if not spec.lost_sales and spec.capacity is None:
        opt = optimum(spec, demand, tol=tol)
        if opt.s is not None and opt.S is not None:
            return s_S_cost(spec, demand, opt.s, opt.S, tol=tol)
    base = best_base_stock(spec, demand, tol=tol)
    level = base.params[0]
    best = PolicyCost("(s,S)", (level - 1, level), base.cost, base.gap_bound, base.iterations)
    if spec.costs.fixed_order == 0:
        return best  # without a fixed cost nothing is gained by batching
    eoq = int(round(np.sqrt(2 * spec.costs.fixed_order * demand.mean(0) / max(spec.costs.holding, 1e-9))))
    seen: dict[tuple[int, int], PolicyCost] = {}
    point = (level - 1, level + eoq)
    best = s_S_cost(spec, demand, *point, tol=tol)
    improved = True
    while improved:
        improved = False
        s0, s1 = best.params
        for cand in ((s0 - 1, s1), (s0 + 1, s1), (s0, s1 - 1), (s0, s1 + 1)):
            if cand[0] < 0 or cand[1] <= cand[0] or cand in seen:
                continue
            seen[cand] = s_S_cost(spec, demand, *cand, tol=tol)
            if seen[cand].cost < best.cost:
                best, improved = seen[cand], True
    return best
