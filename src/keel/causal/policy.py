"""Which intervention for whom: multi-action doubly robust policy learning as a shallow tree.

`learn_policy(frame, treatment, outcome, covariates)` takes a treatment with K >= 2 discrete
actions (one of them the baseline, "do nothing"), and:

1. cross-fits the nuisances over seeded folds: an outcome model per action, mu_k(x), and a
   multinomial propensity e_k(x) (logistic regression on standardised covariates, checked for
   convergence), in a fixed action and column order;
2. forms the doubly robust scores Gamma[i, k] = mu_k(x_i) + 1{T_i = k} (Y_i - mu_k(x_i)) / e_k(x_i),
   whose column means estimate the value of giving everyone action k. Propensities are never
   clipped: one at 0 is an error, and extreme weights are reported in `notes`;
3. finds the tree of the given depth maximising the summed scores, by exact search over a
   quantile grid of each policy feature (`_policy_search.py`), with a minimum leaf size;
4. values the policy honestly: the tree is refitted without each fold and evaluated on it, so
   every unit's score comes from a tree that never saw it; the interval is normal, from those
   per-unit scores. The tree returned is the one fitted on all units.

The tree itself (`PolicyTree`, `_policy_tree.py`) is a pure-Python value stored as plain JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from keel.causal._policy_search import search_tree, threshold_grid
from keel.causal._policy_tree import Action, PolicyNode, PolicyTree
from keel.causal._prep import POSITIVITY_EPS, _numeric, fit_model
from keel.errors import InvalidInputError

__all__ = ["PolicyTree", "PolicyNode", "PolicyResult", "PolicyValue", "learn_policy", "dr_scores"]

FloatArray = npt.NDArray[np.float64]
_Z95 = 1.959963984540054
_EXTREME_WEIGHT = 20.0  # 1/e above this (propensity below 5 %) is worth a note


@dataclass(frozen=True)
class PolicyValue:
    """A mean outcome (or gain) with its standard error and 95 % interval."""

    value: float
    stderr: float
    low: float
    high: float

    @classmethod
    def of(cls, scores: FloatArray) -> PolicyValue:
        value, se = float(np.mean(scores)), float(np.std(scores, ddof=1) / np.sqrt(scores.size))
        return cls(value, se, value - _Z95 * se, value + _Z95 * se)

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "stderr": self.stderr, "low": self.low, "high": self.high}


@dataclass(frozen=True, eq=False)
class PolicyResult:
    """A learned policy, its out-of-sample value, and what treating everyone alike would give."""

    tree: PolicyTree
    value: PolicyValue  # mean outcome under the policy, out of fold
    action_values: Mapping[Action, PolicyValue]  # mean outcome if everyone got that action
    gain: PolicyValue  # the policy's value minus the baseline's (paired, out of fold)
    shares: Mapping[Action, float]  # share of units the tree recommends each action for
    treatment: str
    outcome: str
    covariates: tuple[str, ...]
    n: int
    n_folds: int
    min_leaf: int
    seed: int
    interval_method: str
    notes: tuple[str, ...]
    scores: FloatArray = field(repr=False)  # Gamma, n x K, columns in `tree.actions` order

    @property
    def best_single_action(self) -> Action:
        return max(self.action_values, key=lambda a: self.action_values[a].value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the per-unit scores)."""
        return {
            "tree": self.tree.to_dict(),
            "rules": self.tree.rules(),
            "value": self.value.to_dict(),
            "action_values": {str(a): v.to_dict() for a, v in self.action_values.items()},
            "gain": self.gain.to_dict(),
            "shares": {str(a): s for a, s in self.shares.items()},
            "baseline": self.tree.baseline,
            "treatment": self.treatment,
            "outcome": self.outcome,
            "covariates": list(self.covariates),
            "n": self.n,
            "n_folds": self.n_folds,
            "min_leaf": self.min_leaf,
            "seed": self.seed,
            "interval_method": self.interval_method,
            "notes": list(self.notes),
        }


def learn_policy(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    features: Sequence[str] | None = None,
    baseline: Action | None = None,
    depth: int = 2,
    min_leaf: int | None = None,
    n_thresholds: int = 32,
    n_folds: int = 5,
    outcome_model: Any = None,
    propensity_model: Any = None,
    seed: int = 0,
) -> PolicyResult:
    """Learn a depth-`depth` policy tree on `features` (default: the covariates) from DR scores.

    `baseline` is the "no one" action (default: the first action in sorted order); `min_leaf`
    defaults to max(20, 2 % of the rows). Raises InvalidInputError naming what is wrong.
    """
    if not isinstance(depth, int) or not 1 <= depth <= 3:
        raise InvalidInputError(f"depth must be 1, 2 or 3, got {depth!r}; deeper trees stop reading as rules.")
    if not isinstance(n_thresholds, int) or n_thresholds < 1:
        raise InvalidInputError(f"n_thresholds must be a positive integer, got {n_thresholds!r}.")
    chosen = list(covariates) if features is None else list(features)
    codes, actions, x, y = _prepare(frame, treatment, outcome, covariates, n_folds)
    base = _baseline(actions, baseline)
    policy_x = _features(frame, chosen, treatment, outcome)
    leaf = max(20, len(y) // 50) if min_leaf is None else min_leaf
    if not isinstance(leaf, int) or leaf < 1:
        raise InvalidInputError(f"min_leaf must be a positive integer, got {min_leaf!r}.")
    gamma, notes = _gamma(codes, len(actions), x, y, n_folds, outcome_model, propensity_model, seed)
    grids = threshold_grid(policy_x, n_thresholds)
    tree = PolicyTree(tuple(chosen), actions, actions[base], search_tree(policy_x, gamma, depth, leaf, grids))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed + 1).split(policy_x, codes)
    chosen_oof = np.empty(len(y), dtype=np.intp)
    for train, test in folds:
        # Thresholds from the training rows only: the held-out fold must not shape its own tree.
        fold_grids = threshold_grid(policy_x[train], n_thresholds)
        nodes = search_tree(policy_x[train], gamma[train], depth, leaf, fold_grids)
        fold_tree = PolicyTree(tree.features, actions, tree.baseline, nodes)
        chosen_oof[test] = _action_codes(fold_tree, frame.iloc[test])
    rows = np.arange(len(y))
    policy_scores = gamma[rows, chosen_oof]
    final = _action_codes(tree, frame)
    return PolicyResult(
        tree=tree,
        value=PolicyValue.of(policy_scores),
        action_values={a: PolicyValue.of(gamma[:, k]) for k, a in enumerate(actions)},
        gain=PolicyValue.of(policy_scores - gamma[:, base]),
        shares={a: float(np.mean(final == k)) for k, a in enumerate(actions)},
        treatment=treatment,
        outcome=outcome,
        covariates=tuple(c for c in frame.columns if c in set(covariates)),
        n=len(y),
        n_folds=n_folds,
        min_leaf=leaf,
        seed=seed,
        interval_method=(
            f"out of fold: the tree refitted without each of {n_folds} folds and evaluated on it; normal 95% "
            "from the per-unit doubly robust scores"
        ),
        notes=tuple(notes),
        scores=gamma,
    )


def dr_scores(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    n_folds: int = 5,
    outcome_model: Any = None,
    propensity_model: Any = None,
    seed: int = 0,
) -> tuple[tuple[Action, ...], FloatArray, tuple[str, ...]]:
    """The actions (sorted), the cross-fitted doubly robust scores (n x K, in that order) and notes."""
    codes, actions, x, y = _prepare(frame, treatment, outcome, covariates, n_folds)
    gamma, notes = _gamma(codes, len(actions), x, y, n_folds, outcome_model, propensity_model, seed)
    return actions, gamma, tuple(notes)


def _gamma(
    codes: npt.NDArray[np.intp],
    k: int,
    x: FloatArray,
    y: FloatArray,
    n_folds: int,
    outcome_model: Any,
    propensity_model: Any,
    seed: int,
) -> tuple[FloatArray, list[str]]:
    """Gamma[i, a] = mu_a(x_i) + 1{T_i = a} (Y_i - mu_a(x_i)) / e_a(x_i), every nuisance out of fold."""
    o_model = outcome_model if outcome_model is not None else _default_outcome_model()
    p_model = propensity_model if propensity_model is not None else LogisticRegression(max_iter=1000)
    mu, e = np.empty((len(y), k)), np.empty((len(y), k))
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, codes):
        fitted = fit_model(p_model, x[train], codes[train], role="propensity", seed=seed)
        proba = np.asarray(fitted.predict_proba(x[test]), dtype=np.float64)
        classes = [int(c) for c in fitted.classes_]
        if classes != list(range(k)):
            raise InvalidInputError(f"The propensity model saw actions {classes} in a fold; expected all {k}.")
        e[test] = proba
        for a in range(k):
            arm = train[codes[train] == a]
            model = fit_model(o_model, x[arm], y[arm], role=f"outcome (action {a})", seed=seed)
            mu[test, a] = model.predict(x[test])
    observed = e[np.arange(len(y)), codes]
    if (observed < POSITIVITY_EPS).any():
        raise InvalidInputError(
            f"{int((observed < POSITIVITY_EPS).sum())} unit(s) got an estimated propensity of 0 for the action "
            "they received, so their weights are unbounded (no overlap); restrict the data to comparable units."
        )
    onehot = np.eye(k, dtype=bool)[codes]
    gamma = mu + onehot * ((y[:, None] - mu) / np.where(onehot, e, 1.0))
    return np.asarray(gamma, dtype=np.float64), _weight_notes(observed, n_folds, seed)


def _weight_notes(observed: FloatArray, n_folds: int, seed: int) -> list[str]:
    weights = 1.0 / observed
    ess = float(weights.sum() ** 2 / (weights**2).sum())
    notes = [
        f"nuisances cross-fitted over {n_folds} stratified folds (seed {seed}); propensities not clipped",
        f"inverse propensity weights of the received actions: max {weights.max():.3g}, effective sample size "
        f"{ess:.0f} of {weights.size}",
    ]
    extreme = int((weights > _EXTREME_WEIGHT).sum())
    if extreme:
        notes.append(
            f"{extreme} unit(s) have a weight above {_EXTREME_WEIGHT:g} (propensity below "
            f"{1 / _EXTREME_WEIGHT:.0%}): overlap is thin there and the scores are noisy"
        )
    return notes


def _default_outcome_model() -> Any:
    return GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8)


def _action_codes(tree: PolicyTree, frame: pd.DataFrame) -> npt.NDArray[np.intp]:
    leaves = tree.leaves(frame)
    per_leaf = np.asarray([n.action if n.action is not None else -1 for n in tree.nodes], dtype=np.intp)
    return np.asarray(per_leaf[leaves], dtype=np.intp)


def _prepare(
    frame: pd.DataFrame, treatment: str, outcome: str, covariates: Sequence[str], n_folds: int
) -> tuple[npt.NDArray[np.intp], tuple[Action, ...], FloatArray, FloatArray]:
    """Integer action codes (sorted actions), the actions, covariates (frame order) and outcome, as copies."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"Expected a pandas DataFrame, got {type(frame).__name__}.")
    if isinstance(covariates, str):
        raise InvalidInputError(f"covariates must be a list of column names, got the string {covariates!r}.")
    columns = [str(c) for c in frame.columns]
    missing = [c for c in dict.fromkeys([treatment, outcome, *covariates]) if c not in columns]
    if missing:
        raise InvalidInputError(f"Column(s) {missing} are not in the frame; columns: {columns}.")
    if treatment in covariates or outcome in covariates:
        raise InvalidInputError("The treatment and the outcome cannot also be covariates.")
    if not isinstance(n_folds, int) or n_folds < 2:
        raise InvalidInputError(f"n_folds must be an integer >= 2, got {n_folds!r}.")
    codes, actions = _actions(frame[treatment], treatment, n_folds)
    y = _numeric(frame[outcome], outcome, "outcome")
    wanted = set(covariates)
    ordered = [c for c in columns if c in wanted]
    x = np.column_stack([_numeric(frame[c], c, "covariate") for c in ordered]) if ordered else np.zeros((len(y), 1))
    return codes, actions, x, y


def _actions(column: pd.Series, name: str, n_folds: int) -> tuple[npt.NDArray[np.intp], tuple[Action, ...]]:
    if column.isna().any():
        raise InvalidInputError(f"Treatment {name!r} has {int(column.isna().sum())} missing value(s); drop them.")
    raw = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(column).tolist()]
    values: list[Action] = []
    for v in raw:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise InvalidInputError(
                f"Treatment {name!r} has the value {v!r}; actions must be integers or strings (recode it)."
            )
        values.append(v)
    if len({type(v) for v in values}) > 1:
        raise InvalidInputError(f"Treatment {name!r} mixes numbers and strings; recode it to one type.")
    actions = tuple(sorted(set(values)))
    if len(actions) < 2:
        raise InvalidInputError(f"Treatment {name!r} has one action only ({actions[0]!r}); a policy needs >= 2.")
    lookup = {a: i for i, a in enumerate(actions)}
    codes = np.asarray([lookup[int(v) if isinstance(v, float) else v] for v in column.tolist()], dtype=np.intp)
    counts = np.bincount(codes, minlength=len(actions))
    needed = max(2 * n_folds, 10)
    small = {actions[i]: int(c) for i, c in enumerate(counts) if c < needed}
    if small:
        raise InvalidInputError(
            f"Too few rows per action in {name!r}: {small}; each action needs at least {needed} for "
            f"{n_folds}-fold cross-fitting. Merge rare actions or collect more data."
        )
    return codes, actions


def _baseline(actions: tuple[Action, ...], baseline: Action | None) -> int:
    if baseline is None:
        return 0
    if baseline not in actions:
        raise InvalidInputError(f"baseline {baseline!r} is not one of the actions {list(actions)}.")
    return actions.index(baseline)


def _features(frame: pd.DataFrame, features: list[str], treatment: str, outcome: str) -> FloatArray:
    if not features:
        raise InvalidInputError("A policy tree needs at least one feature to split on; pass features=[...].")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise InvalidInputError(f"Policy feature(s) {missing} are not in the frame.")
    if treatment in features or outcome in features:
        raise InvalidInputError("The treatment and the outcome cannot be policy features.")
    if len(set(features)) != len(features):
        raise InvalidInputError(f"Policy features repeat a column: {features}.")
    return np.column_stack([_numeric(frame[f], f, "policy feature") for f in features])
