"""Scoring policies on a twin with common random numbers, and tuning the classic policies.

`evaluate` draws the whole demand matrix (periods, copies) from `seed` first, so every policy
evaluated with the same seed, copies and periods faces exactly the same demand; `compare` then
gives the paired difference, whose standard error is far smaller than either cost's. The standard
error is honest about the autocorrelation within a copy: a copy's average over the periods after
`warmup` is one independent observation, and SE = std(per-copy averages) / sqrt(copies).

Several policies are evaluated in one simulation (`evaluate_many`): the demand matrix is tiled so
each policy drives its own block of copies, which is what makes grid searches cheap. A search picks
its winner on seed `seed` and reports it re-evaluated on an independent seed (seed + 1), so the
reported cost carries no selection bias.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from keel.errors import InvalidInputError
from keel.rl.inventory import InventoryTwin
from keel.rl.policies import SS, BaseStock, CappedBaseStock, EchelonBaseStock, SeasonalBaseStock
from keel.rl.serial import SerialTwin
from keel.rl.spec import Demand, InventorySpec, SerialSpec

__all__ = [
    "ClassicSearch",
    "Comparison",
    "Evaluation",
    "best_classic",
    "best_serial_base_stock",
    "compare",
    "evaluate",
    "evaluate_many",
]


class Twin(Protocol):
    copies: int
    demand: Demand

    def reset(self, seed: int | None = None, demand: ArrayLike | None = None) -> NDArray[np.float64]: ...

    def step(self, orders: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[str, Any]]: ...


TwinSource = Twin | Callable[[int], Twin]


@dataclass(frozen=True)
class Evaluation:
    """A policy's mean cost per period over `copies` copies of `periods` periods (the first `warmup`
    not counted), with its standard error."""

    policy: str
    cost: float
    se: float
    copies: int
    periods: int
    warmup: int
    seed: int
    per_copy: NDArray[np.float64] = field(repr=False, compare=False)  # each copy's average cost


@dataclass(frozen=True)
class Comparison:
    """`a` minus `b`, paired copy by copy (same demand), with the standard error of the difference."""

    a: str
    b: str
    difference: float
    se: float


@dataclass(frozen=True)
class ClassicSearch:
    """The best policy of each classic family (re-evaluated on an independent seed) and the overall
    best family's name."""

    policies: dict[str, Any]
    evaluations: dict[str, Evaluation]
    best: str

    @property
    def best_policy(self) -> Any:
        return self.policies[self.best]

    @property
    def best_evaluation(self) -> Evaluation:
        return self.evaluations[self.best]


def _act(policy: Any) -> Callable[[NDArray[np.float64]], Any]:
    if hasattr(policy, "act"):
        return policy.act  # type: ignore[no-any-return]
    if callable(policy):
        return policy  # type: ignore[no-any-return]
    raise InvalidInputError(
        f"a policy needs an act(observations) method or must be callable, got {type(policy).__name__}"
    )


def _check_run(periods: int, copies: int, warmup: int) -> None:
    if not isinstance(periods, int) or not isinstance(warmup, int) or warmup < 0 or periods <= warmup:
        raise InvalidInputError(f"need integers periods > warmup >= 0, got periods={periods!r}, warmup={warmup!r}")
    if not isinstance(copies, int) or copies < 2:
        raise InvalidInputError(f"copies must be an integer >= 2 (the standard error needs two), got {copies!r}")


def evaluate_many(
    twin: Callable[[int], Twin], policies: Sequence[Any], *, periods: int, copies: int, warmup: int = 0, seed: int = 0
) -> list[Evaluation]:
    """Every policy on the same demand, in one simulation of len(policies) * copies copies;
    `twin(n)` builds a twin of n copies."""
    _check_run(periods, copies, warmup)
    if not policies:
        raise InvalidInputError("evaluate_many needs at least one policy")
    k = len(policies)
    sim = twin(k * copies)
    matrix = np.asarray(sim.demand.sample(np.random.default_rng(seed), periods, copies), dtype=np.int64)
    obs = sim.reset(demand=np.tile(matrix, (1, k)))
    acts = [_act(p) for p in policies]
    total = np.zeros(k * copies)
    for t in range(periods):
        orders = np.concatenate([np.asarray(a(obs[i * copies : (i + 1) * copies])) for i, a in enumerate(acts)])
        obs, cost, _ = sim.step(orders)
        if t >= warmup:
            total += cost
    per = (total / (periods - warmup)).reshape(k, copies)
    return [
        Evaluation(
            repr(p), float(row.mean()), float(row.std(ddof=1) / np.sqrt(copies)), copies, periods, warmup, seed, row
        )
        for p, row in zip(policies, per, strict=True)
    ]


def evaluate(
    twin: TwinSource, policy: Any, *, periods: int, copies: int | None = None, warmup: int = 0, seed: int = 0
) -> Evaluation:
    """`policy` on `twin` (a twin, or a function of the number of copies that builds one); the
    same seed, copies and periods give the same demand matrix for every policy."""
    if callable(twin) and not hasattr(twin, "step"):
        n = 256 if copies is None else copies
        factory: Callable[[int], Twin] = twin
    else:
        inst: Twin = twin  # type: ignore[assignment]
        if copies is not None and copies != inst.copies:
            raise InvalidInputError(
                f"the twin has {inst.copies} copies but copies={copies}; pass a factory or drop copies"
            )
        n = inst.copies
        factory = lambda c: inst  # noqa: E731
    return evaluate_many(factory, [policy], periods=periods, copies=n, warmup=warmup, seed=seed)[0]


def compare(a: Evaluation, b: Evaluation) -> Comparison:
    """The paired difference a - b; both must come from the same seed, copies, periods and warmup."""
    if (a.seed, a.copies, a.periods, a.warmup) != (b.seed, b.copies, b.periods, b.warmup):
        raise InvalidInputError(
            "a paired comparison needs both evaluations on the same demand: same seed, copies, periods and warmup; "
            f"got {(a.seed, a.copies, a.periods, a.warmup)} and {(b.seed, b.copies, b.periods, b.warmup)}"
        )
    diff = a.per_copy - b.per_copy
    return Comparison(a.policy, b.policy, float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(a.copies)))


def _lead_quantiles(spec: InventorySpec, demand: Demand, probs: Sequence[float]) -> list[int]:
    """Quantiles of demand over lead_time + 1 periods (seasonal: the phases' pmfs averaged)."""
    pmfs = [demand.pmf(t) for t in range(max(int(demand.season), 1))]
    width = max(len(p) for p in pmfs)
    one = np.mean([np.pad(p, (0, width - len(p))) for p in pmfs], axis=0)
    dist = one
    for _ in range(spec.lead_time):
        dist = np.convolve(dist, one)
    cdf = np.cumsum(dist)
    return [int(np.searchsorted(cdf, q)) for q in probs]


def _search(
    run: Callable[[list[Any]], list[Evaluation]],
    make: Callable[..., Any],
    lows: list[int],
    highs: list[int],
    points: int = 7,
) -> tuple[Any, Evaluation]:
    """Coarse to fine over an integer box: a grid of about `points` values per axis, then a grid of
    half the step around the best point, down to step 1. Invalid combinations are skipped."""
    steps = [max(1, (hi - lo) // (points - 1)) for lo, hi in zip(lows, highs, strict=True)]
    centre: list[int] | None = None
    best: tuple[Any, Evaluation, list[int]] | None = None
    while True:
        axes = []
        for j, (lo, hi, st) in enumerate(zip(lows, highs, steps, strict=True)):
            if centre is None:
                axes.append(list(range(lo, hi + 1, st)))
            else:
                axes.append([v for v in range(centre[j] - 2 * st, centre[j] + 2 * st + 1, st) if v >= 0])
        grid = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(axes), -1).T
        candidates: list[Any] = []
        coords: list[list[int]] = []
        for point in grid:
            try:
                candidates.append(make(*[int(v) for v in point]))
            except InvalidInputError:
                continue
            coords.append([int(v) for v in point])
        evals = run(candidates)
        i = int(np.argmin([e.cost for e in evals]))
        if best is None or evals[i].cost < best[1].cost:
            best = (candidates[i], evals[i], coords[i])
        centre = best[2]  # the search's own coordinates, whatever the policy's parameters are
        if max(steps) == 1:
            return best[0], best[1]
        steps = [max(1, st // 2) for st in steps]


def _seasonal_levels(spec: InventorySpec, demand: Demand) -> list[int]:
    """Per phase p, the newsvendor level on the demand of periods p .. p + lead time (what an order
    placed in phase p must cover): the critical ratio penalty / (penalty + holding)."""
    ratio = spec.costs.penalty / max(spec.costs.penalty + spec.costs.holding, 1e-12)
    levels = []
    for p in range(demand.season):
        dist = demand.pmf(p)
        for t in range(p + 1, p + spec.lead_time + 1):
            dist = np.convolve(dist, demand.pmf(t))
        levels.append(int(np.searchsorted(np.cumsum(dist), ratio)))
    return levels


def _best_seasonal(
    run: Callable[[list[Any]], list[Evaluation]], spec: InventorySpec, demand: Demand, level: int
) -> Any:
    """The per-phase newsvendor levels, shifted together by the offset that costs least on the twin
    (with common random numbers): the seasonal counterpart of the base-stock search."""
    levels = _seasonal_levels(spec, demand)
    spread = max(4, int(0.3 * max(level, 1)))

    def make(shift: int) -> SeasonalBaseStock:
        return SeasonalBaseStock(tuple(max(0, v + shift - spread) for v in levels))

    best, _ = _search(run, make, [0], [2 * spread])
    return best


def best_classic(
    spec: InventorySpec, demand: Demand, *, periods: int = 1000, copies: int = 256, warmup: int = 50, seed: int = 0
) -> ClassicSearch:
    """The best base-stock, (s, S) and capped base-stock policies on the twin of `spec`, searched
    with common random numbers around the quantiles of lead-time demand."""

    def factory(n: int) -> Twin:
        return InventoryTwin(spec, demand, copies=n)

    def run(cands: list[Any]) -> list[Evaluation]:
        return evaluate_many(factory, cands, periods=periods, copies=copies, warmup=warmup, seed=seed)

    lo, hi = _lead_quantiles(spec, demand, [0.2, 0.999])
    mean = float(np.mean([demand.mean(t) for t in range(max(int(demand.season), 1))]))
    base, _ = _search(run, BaseStock, [lo], [hi + 1], points=12)
    cap_hi = spec.order_limit if spec.capacity is not None else max(2, int(np.ceil(3 * mean)))
    capped, _ = _search(run, CappedBaseStock, [max(0, base.level - 5), max(1, int(mean))], [base.level + 15, cap_hi])
    # (s, S) as (s, S - s): the order quantity scale is the economic order quantity
    eoq = np.sqrt(2 * max(spec.costs.fixed_order, spec.costs.holding) * max(mean, 1.0) / max(spec.costs.holding, 1e-9))
    ss, _ = _search(run, lambda s, q: SS(s, s + q), [max(-1, lo - int(mean)), 1], [base.level, max(4, int(3 * eoq))])
    found = {"base-stock": base, "(s,S)": ss, "capped base-stock": capped}
    if demand.season > 1:
        found["seasonal base-stock"] = _best_seasonal(run, spec, demand, base.level)
    fresh = evaluate_many(factory, list(found.values()), periods=periods, copies=copies, warmup=warmup, seed=seed + 1)
    evaluations = dict(zip(found, fresh, strict=True))
    return ClassicSearch(found, evaluations, min(evaluations, key=lambda k: evaluations[k].cost))


def best_serial_base_stock(
    spec: SerialSpec,
    demand: Demand,
    *,
    periods: int = 500,
    copies: int = 128,
    warmup: int = 50,
    seed: int = 0,
    sweeps: int = 3,
) -> tuple[EchelonBaseStock, Evaluation]:
    """The best per-stage echelon base-stock levels by coordinate search: each sweep tries every
    stage's level on a grid around the current one (the others fixed), steps 8, 4, 2, 1 ... ."""

    def factory(n: int) -> Twin:
        return SerialTwin(spec, demand, copies=n)

    mean = float(np.mean([demand.mean(t) for t in range(max(int(demand.season), 1))]))
    leads = np.cumsum([s.lead_time for s in spec.stages])
    levels = [int(round(mean * (lead + 1) + 2 * np.sqrt(mean * (lead + 1)))) for lead in leads]
    step = max(1, int(np.sqrt(mean * (leads[-1] + 1)) // 2))
    best_eval: Evaluation | None = None
    for _ in range(sweeps):
        for i in range(len(levels)):
            tries = sorted({max(0, levels[i] + k * step) for k in range(-4, 5)})
            cands = [EchelonBaseStock(tuple(levels[:i] + [v] + levels[i + 1 :])) for v in tries]
            evals = evaluate_many(factory, cands, periods=periods, copies=copies, warmup=warmup, seed=seed)
            j = int(np.argmin([e.cost for e in evals]))
            levels[i], best_eval = tries[j], evals[j]
        step = max(1, step // 2)
    policy = EchelonBaseStock(tuple(levels))
    assert best_eval is not None
    return policy, evaluate_many(factory, [policy], periods=periods, copies=copies, warmup=warmup, seed=seed + 1)[0]
