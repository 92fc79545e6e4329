"""What-if answers from a structural causal model fitted on a DAG with additive noise.

`fit_scm(data, graph)` fits one mechanism per node in topological order: a root keeps its
empirical distribution; any other node is a regression on its parents (linear, quadratic, gradient
boosting, or "auto": whichever has the lowest 3-fold CV error) plus additive noise, the fitted residuals.
`model.what_if(intervene, outcome, kind)` then answers:

- "counterfactual": for every observed unit, abduct its residuals, apply the intervention, and
  propagate with the same residuals; per-row values and their mean effect.
- "interventional": draw new units (rows of the data, each with its own residuals, so root values
  and noise keep their joint distribution), apply the intervention, and propagate.

The interval is a percentile bootstrap: `n_resamples` refits of every mechanism on resampled rows,
done once at fit time together with each refit's residuals for every row, so an answer is only
the propagation through the nodes downstream of the intervention (10,000 rows in well under 1 s).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from keel.causal.graph import CausalGraph, causal_graph
from keel.errors import InvalidInputError

__all__ = ["StructuralCausalModel", "WhatIfResult", "fit_scm"]

Array = NDArray[np.float64]
Intervention = float | str | Callable[[Array], ArrayLike]
_INTERVAL_UNITS = 2_000
_OP = re.compile(r"^\s*([*+\-/=]?)\s*([0-9.eE+\-]+)\s*$")


class _Columns(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True)
class _Mechanism:
    """f(parents) for one node: a linear map or a boosted model."""

    parents: tuple[str, ...]
    coef: Array | None = None
    intercept: float = 0.0
    model: Any = None
    quadratic: bool = False

    def predict(self, pa: Array) -> Array:
        if self.model is not None:
            return np.asarray(self.model.predict(pa), dtype=np.float64)
        assert self.coef is not None  # a (quadratic) linear mechanism always has coefficients
        feats = _quadratic(pa) if self.quadratic else pa
        return np.asarray(feats @ self.coef + self.intercept, dtype=np.float64)


def _quadratic(pa: Array) -> Array:
    """Parents, their squares and pairwise products: smooth curvature that, unlike trees, extrapolates."""
    i, j = np.triu_indices(pa.shape[1])
    return np.column_stack([pa, pa[:, i] * pa[:, j]])


@dataclass(frozen=True)
class _Fit:
    """One set of mechanisms (full data or one bootstrap resample) and each row's residuals under it."""

    rows: NDArray[np.intp]  # rows it was fitted on (the units interventional answers draw from)
    mechanisms: Mapping[str, _Mechanism]
    residuals: Mapping[str, Array]  # node -> residual of every observed row under these mechanisms


@dataclass(frozen=True, eq=False)
class WhatIfResult:
    outcome: str
    kind: str  # "interventional" | "counterfactual"
    intervene: Mapping[str, str]  # node -> the intervention in words
    mean_effect: float  # mean outcome with the intervention minus without
    interval: tuple[float, float]
    level: float
    n_resamples: int  # bootstrap refits behind the interval
    baseline_mean: float
    intervened_mean: float
    values: Array | None  # counterfactual outcome per observed row (None for interventional)
    effects: Array | None  # counterfactual minus factual outcome per observed row

    def summary(self) -> dict[str, Any]:
        """The answer without its per-row arrays, as JSON-able values (the CLI's --json, the API)."""
        low, high = self.interval
        return {
            "outcome": self.outcome,
            "kind": self.kind,
            "intervene": dict(self.intervene),
            "mean_effect": float(self.mean_effect),
            "interval": [float(low), float(high)],
            "level": float(self.level),
            "n_resamples": int(self.n_resamples),
            "baseline_mean": float(self.baseline_mean),
            "intervened_mean": float(self.intervened_mean),
        }


@dataclass(frozen=True, eq=False)
class StructuralCausalModel:
    graph: Mapping[str, tuple[str, ...]]  # node -> parents
    order: tuple[str, ...]  # topological order
    mechanisms: Mapping[str, str]  # node -> "root" | "linear" | "quadratic" | "boosting"
    n: int
    n_resamples: int
    seed: int
    _data: Mapping[str, Array] = field(repr=False)
    _fits: tuple[_Fit, ...] = field(repr=False)  # [0] on all rows, then the resamples

    def what_if(
        self,
        intervene: Mapping[str, Intervention],
        outcome: str,
        *,
        kind: Literal["interventional", "counterfactual"] = "interventional",
        n_samples: int = 10_000,
        level: float = 0.95,
    ) -> WhatIfResult:
        """The effect on `outcome` of setting (5), shifting ("+5"), scaling ("*1.1") or mapping (f) nodes."""
        ops = {node: _parse_intervention(node, spec) for node, spec in dict(intervene).items()}
        affected = self._check_question(ops, outcome, kind, n_samples, level)
        rng = np.random.default_rng(self.seed)
        cf = kind == "counterfactual"
        units = np.arange(self.n) if cf else rng.choice(self._fits[0].rows, size=n_samples)
        point_delta = self._propagate(self._fits[0], units, ops, affected, outcome) - self._data[outcome][units]
        point = float(np.mean(point_delta))
        # The resamples are evaluated on at most _INTERVAL_UNITS units, which keeps an answer fast
        # with tree mechanisms. Counterfactual: the same units for every refit, and each refit's
        # estimate is the point estimate plus its deviation from the full fit on those units (a
        # control variate: the units are fixed, only the mechanisms vary). Interventional: fresh
        # units from each resample's rows, so the interval also carries the sampling of units (a
        # little wider than with n_samples units: conservative).
        subset = rng.choice(self.n, size=min(self.n, _INTERVAL_UNITS), replace=False) if cf else None
        effects: list[float] = []
        for fit in self._fits[1:]:
            if subset is not None:
                delta = self._propagate(fit, subset, ops, affected, outcome) - self._data[outcome][subset]
                effects.append(point + float(np.mean(delta) - np.mean(point_delta[subset])))
            else:
                draw = rng.choice(fit.rows, size=min(n_samples, _INTERVAL_UNITS))
                delta = self._propagate(fit, draw, ops, affected, outcome) - self._data[outcome][draw]
                effects.append(float(np.mean(delta)))
        alpha = (1 - level) / 2
        lo, hi = np.quantile(effects, [alpha, 1 - alpha]) if effects else (np.nan, np.nan)
        base = float(np.mean(self._data[outcome][units]))
        return WhatIfResult(
            outcome=outcome,
            kind=kind,
            intervene={node: words for node, (_, words) in ops.items()},
            mean_effect=point,
            interval=(float(lo), float(hi)),
            level=level,
            n_resamples=self.n_resamples,
            baseline_mean=base,
            intervened_mean=base + point,
            values=self._data[outcome] + point_delta if cf else None,
            effects=point_delta if cf else None,
        )

    def _propagate(
        self,
        fit: _Fit,
        units: NDArray[np.intp],
        ops: Mapping[str, tuple[Callable[[Array], Array], str]],
        affected: set[str],
        outcome: str,
    ) -> Array:
        values: dict[str, Array] = {}
        for node in self.order:
            if node not in affected:
                values[node] = self._data[node][units]
                continue
            mech = fit.mechanisms.get(node)
            if mech is None:  # a root: its natural value is the unit's own
                natural = self._data[node][units]
            else:
                pa = np.column_stack([values[p] for p in mech.parents])
                natural = mech.predict(pa) + fit.residuals[node][units]
            values[node] = ops[node][0](natural) if node in ops else natural
        return values[outcome]

    def _check_question(
        self, ops: Mapping[str, Any], outcome: str, kind: str, n_samples: int, level: float
    ) -> set[str]:
        if not ops:
            raise InvalidInputError("intervene is empty; name at least one node, e.g. {'x': '*1.1'}")
        unknown = sorted(set(ops) - set(self.order))
        if unknown or outcome not in self.order:
            names = unknown if unknown else [outcome]
            raise InvalidInputError(f"unknown node(s) {names}; the graph has {list(self.order)}")
        if kind not in ("interventional", "counterfactual"):
            raise InvalidInputError(f"kind must be 'interventional' or 'counterfactual', got {kind!r}")
        if not 0 < level < 1 or n_samples < 1:
            raise InvalidInputError(f"level must be in (0, 1) and n_samples >= 1, got {level!r} and {n_samples!r}")
        g = _dag(self.graph)
        affected = set(ops).union(*(g.descendants(node) for node in ops))
        if outcome not in affected:
            raise InvalidInputError(
                f"outcome {outcome!r} is not downstream of {sorted(ops)} in the graph, so the intervention "
                "cannot change it; intervene on one of its ancestors "
                f"{sorted(g.ancestors(outcome)) or '(it has none)'}"
            )
        return affected


def fit_scm(
    data: _Columns,
    graph: Mapping[str, Sequence[str]] | CausalGraph,
    *,
    mechanism: Literal["auto", "linear", "quadratic", "boosting"] | Mapping[str, str] = "auto",
    n_resamples: int = 50,
    seed: int = 0,
) -> StructuralCausalModel:
    """Fit a mechanism per node of `graph` ({node: [parents]} or a CausalGraph) on the columns of `data`."""
    if isinstance(graph, CausalGraph):
        graph = {node: graph.parents(node) for node in graph.nodes}
    parents = {str(k): tuple(str(p) for p in v) for k, v in graph.items()}
    order = _topological(_dag(parents))  # raises InvalidInputError naming a cycle
    parents = {node: parents.get(node, ()) for node in order}
    cols = _columns(data, order)
    n = len(cols[order[0]])
    kinds = _mechanism_kinds(mechanism, parents, cols, seed)
    if n_resamples < 0:
        raise InvalidInputError(f"n_resamples must be >= 0, got {n_resamples}")
    rng = np.random.default_rng(seed)
    samples = [np.arange(n)] + [rng.integers(0, n, size=n) for _ in range(n_resamples)]
    fits = tuple(_fit_all(cols, parents, kinds, rows, seed) for rows in samples)
    return StructuralCausalModel(
        graph=parents, order=order, mechanisms=kinds, n=n, n_resamples=n_resamples, seed=seed, _data=cols, _fits=fits
    )


def _dag(parents: Mapping[str, Sequence[str]]) -> CausalGraph:
    return causal_graph(parents, orient="parents")


def _topological(g: CausalGraph) -> tuple[str, ...]:
    """Kahn's order, the smallest name first among the ready nodes: the same order in every process."""
    waiting = {node: len(g.parents(node)) for node in g.nodes}
    ready = [node for node, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for child in g.children(node):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    return tuple(order)


def _columns(data: _Columns, order: Sequence[str]) -> dict[str, Array]:
    cols: dict[str, Array] = {}
    missing = []
    for node in order:
        try:
            raw = data[node]
        except (KeyError, IndexError, ValueError):
            missing.append(node)
            continue
        try:
            cols[node] = np.asarray(raw, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"column {node!r} is not numeric ({exc}); encode it as numbers first") from exc
    if missing:
        raise InvalidInputError(f"the graph names node(s) {missing} that are not columns of the data")
    lengths = {len(v) for v in cols.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise InvalidInputError(f"the columns must have the same, non-zero length; got lengths {sorted(lengths)}")
    for node, col in cols.items():
        if not np.all(np.isfinite(col)):
            raise InvalidInputError(f"column {node!r} has missing or infinite values; drop or impute them first")
    return cols


def _mechanism_kinds(
    mechanism: str | Mapping[str, str], parents: Mapping[str, tuple[str, ...]], cols: Mapping[str, Array], seed: int
) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for node, pas in parents.items():
        want = mechanism.get(node, "auto") if isinstance(mechanism, Mapping) else mechanism
        if want not in ("auto", "linear", "quadratic", "boosting"):
            raise InvalidInputError(
                f"mechanism for {node!r} must be 'auto', 'linear', 'quadratic' or 'boosting', got {want!r}"
            )
        if not pas:
            kinds[node] = "root"
        elif want != "auto":
            kinds[node] = want
        else:
            kinds[node] = _choose(np.column_stack([cols[p] for p in pas]), cols[node], seed)
    return kinds


def _choose(X: Array, y: Array, seed: int) -> str:
    """The mechanism with the lowest 3-fold CV squared error; the simpler one unless another is 2 % better.

    Trees cannot extrapolate (a "*1.5" intervention leaves the fitted range), so boosting has to
    earn its place against the linear and quadratic forms.
    """
    folds = np.random.default_rng(seed).integers(0, 3, size=len(y))
    err = {"linear": 0.0, "quadratic": 0.0, "boosting": 0.0}
    for k in range(3):
        tr, te = folds != k, folds == k
        for kind in err:
            m = _fit_one(kind, (), X[tr], y[tr], seed)
            err[kind] += float(np.sum((y[te] - m.predict(X[te])) ** 2))
    best = "linear"
    for kind in ("quadratic", "boosting"):
        if err[kind] < 0.98 * err[best]:
            best = kind
    return best


def _fit_one(kind: str, pas: tuple[str, ...], X: Array, y: Array, seed: int) -> _Mechanism:
    if kind in ("linear", "quadratic"):
        quad = kind == "quadratic"
        A = np.column_stack([_quadratic(X) if quad else X, np.ones(len(X))])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        return _Mechanism(pas, coef=np.asarray(coef[:-1]), intercept=float(coef[-1]), quadratic=quad)
    from lightgbm import LGBMRegressor

    model = LGBMRegressor(
        n_estimators=100,
        learning_rate=0.1,
        num_leaves=15,
        min_child_samples=20,
        random_state=seed,
        n_jobs=1,
        deterministic=True,
        verbose=-1,
    )
    return _Mechanism(pas, model=model.fit(X, y))


def _fit_all(
    cols: Mapping[str, Array],
    parents: Mapping[str, tuple[str, ...]],
    kinds: Mapping[str, str],
    rows: NDArray[np.intp],
    seed: int,
) -> _Fit:
    mechanisms: dict[str, _Mechanism] = {}
    residuals: dict[str, Array] = {}
    for node, pas in parents.items():
        if not pas:
            continue
        X = np.column_stack([cols[p] for p in pas])
        mech = _fit_one(kinds[node], pas, X[rows], cols[node][rows], seed)
        mechanisms[node] = mech
        residuals[node] = cols[node] - mech.predict(X)  # every row's noise under this refit (abduction)
    return _Fit(rows=rows, mechanisms=mechanisms, residuals=residuals)


def _parse_intervention(node: str, spec: Intervention) -> tuple[Callable[[Array], Array], str]:
    if callable(spec):

        def apply(v: Array) -> Array:
            out = np.broadcast_to(np.asarray(spec(v), dtype=np.float64), v.shape)
            return np.array(out)

        return apply, f"{getattr(spec, '__name__', 'function')}({node})"
    if isinstance(spec, bool):
        raise InvalidInputError(
            f"intervention on {node!r} must be a number, '*k', '+k', '-k' or a function, got a bool"
        )
    if isinstance(spec, int | float | np.number):
        value = float(spec)
        return (lambda v: np.full_like(v, value)), f"set to {value:g}"
    match = _OP.match(spec) if isinstance(spec, str) else None
    try:
        k = float(match.group(2)) if match else None
    except ValueError:
        k = None
    if match is None or k is None:
        raise InvalidInputError(
            f"intervention on {node!r} must be a number (set), '*1.1' (scale), '+5' / '-5' (shift), "
            f"'/2' (divide) or a function of the natural value; got {spec!r}"
        )
    op = match.group(1)
    if op == "*":
        return (lambda v: v * k), f"scaled by {k:g}"
    if op == "/":
        if k == 0:
            raise InvalidInputError(f"intervention on {node!r} divides by zero")
        return (lambda v: v / k), f"divided by {k:g}"
    if op in "+-" and op:
        step = k if op == "+" else -k
        return (lambda v: v + step), f"shifted by {step:+g}"
    return (lambda v: np.full_like(v, k)), f"set to {k:g}"
