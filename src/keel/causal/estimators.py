"""Average effects of a binary treatment: regression adjustment, inverse propensity weighting, AIPW
(doubly robust) and double machine learning, each for the ATE, ATT and ATC, each with an interval.

Choices that differ from DoWhy's defaults, on purpose (issue 13 measured each):
- propensities are never clipped: `trim=(low, high)` drops units explicitly and `Estimate.trimming`
  says how many; a propensity at 0 or 1 without trimming is an error, not a silent clip;
- ATT and ATC use their own weights (controls weighted e/(1-e) for the ATT), not the ATE's;
- covariates are standardised inside every nuisance model, in the frame's column order, and a
  model that does not converge raises instead of returning a number;
- every random choice (folds, bootstrap resamples, model seeds) comes from `seed`, so the same
  inputs give the same numbers in every process whatever PYTHONHASHSEED is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import StratifiedKFold

from keel.causal._prep import POSITIVITY_EPS, BoolArray, Data, FloatArray, fit_model, predict_proba1, prepare
from keel.causal.overlap import Estimand, OverlapReport, balancing_weights, overlap_report
from keel.errors import InvalidInputError

__all__ = [
    "Estimate",
    "Trimming",
    "Comparison",
    "ESTIMATORS",
    "regression_adjustment",
    "ipw",
    "aipw",
    "dml",
    "compare_estimators",
    "summarise",
]

ESTIMATORS = ("regression", "ipw", "aipw", "dml")
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Trimming:
    """Which units an explicit `trim=(low, high)` dropped; `bounds` is None when nothing was trimmed."""

    bounds: tuple[float, float] | None
    n_dropped_treated: int = 0
    n_dropped_control: int = 0

    @property
    def n_dropped(self) -> int:
        return self.n_dropped_treated + self.n_dropped_control


@dataclass(frozen=True)
class Estimate:
    """One estimate of an average effect with its 95 % interval and how it was obtained."""

    estimand: str
    estimator: str
    value: float
    stderr: float
    ci_low: float
    ci_high: float
    interval_method: str
    n: int
    trimming: Trimming
    treatment: str
    outcome: str
    covariates: tuple[str, ...]
    overlap: OverlapReport | None = None
    notes: tuple[str, ...] = ()

    def covers(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


@dataclass(frozen=True)
class Comparison:
    """Several estimator families on one question; disagreement is flagged, never averaged away."""

    estimates: tuple[Estimate, ...]
    disagreements: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def agree(self) -> bool:
        return not self.disagreements


def _default_propensity() -> Any:
    return LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200)


def _check_estimand(estimand: str) -> Estimand:
    if estimand not in ("ate", "att", "atc"):
        raise InvalidInputError(f"Unknown estimand {estimand!r}; use 'ate', 'att' or 'atc'.")
    return estimand  # type: ignore[return-value]


def _check_trim(trim: tuple[float, float] | None) -> tuple[float, float] | None:
    if trim is None:
        return None
    low, high = (float(v) for v in trim)
    if not 0.0 < low < high < 1.0:
        raise InvalidInputError(f"trim must be (low, high) with 0 < low < high < 1; got {trim!r}.")
    return low, high


def _trim(e: FloatArray, t: BoolArray, bounds: tuple[float, float] | None) -> tuple[BoolArray, Trimming]:
    if bounds is None:
        return np.ones(e.shape, dtype=bool), Trimming(None)
    keep = (e >= bounds[0]) & (e <= bounds[1])
    if not (keep & t).any() or not (keep & ~t).any():
        raise InvalidInputError(f"Trimming to propensities in {list(bounds)} leaves one arm empty; widen the bounds.")
    return keep, Trimming(bounds, int((~keep & t).sum()), int((~keep & ~t).sum()))


def _check_positivity(e: FloatArray, estimand: Estimand, estimator: str) -> None:
    # The ATT never divides by e and the ATC never by 1 - e, so only the side that matters is checked.
    at_one = int((e > 1 - POSITIVITY_EPS).sum()) if estimand != "atc" else 0
    at_zero = int((e < POSITIVITY_EPS).sum()) if estimand != "att" else 0
    if at_one or at_zero:
        raise InvalidInputError(
            f"{estimator}: {at_zero + at_one} unit(s) have an estimated propensity of 0 or 1, so the "
            f"{estimand.upper()} weights are unbounded (no overlap). Pass trim=(0.01, 0.99) to drop them "
            "explicitly, or restrict the data to comparable units."
        )


def _trim_note(trimming: Trimming, estimand: str) -> tuple[str, ...]:
    if trimming.bounds is None:
        return ()
    return (
        f"trimmed {trimming.n_dropped} unit(s) ({trimming.n_dropped_treated} treated, {trimming.n_dropped_control} "
        f"control) with propensity outside {list(trimming.bounds)}; the {estimand.upper()} refers to the units kept",
    )


def _bootstrap(
    data: Data, statistic: Callable[[Data], float], n_boot: int, seed: int
) -> tuple[float, float, float, str]:
    """Stratified (by arm) percentile bootstrap: (stderr, low, high, method)."""
    if n_boot < 20:
        raise InvalidInputError(
            f"n_boot={n_boot} is too few resamples for an interval; use at least 20 (200 is usual)."
        )
    rng = np.random.default_rng(seed)
    treated, control = np.flatnonzero(data.t), np.flatnonzero(~data.t)
    values = np.empty(n_boot)
    for b in range(n_boot):
        rows = np.concatenate([rng.choice(treated, treated.size), rng.choice(control, control.size)])
        values[b] = statistic(data.take(rows))
    low, high = np.quantile(values, [0.025, 0.975])
    method = f"percentile bootstrap, {n_boot} resamples stratified by arm, every model refitted"
    return float(values.std(ddof=1)), float(low), float(high), method


def _regression_value(data: Data, model: Any, estimand: Estimand, seed: int) -> float:
    t, y, x = data.t, data.y, data.x
    m1 = fit_model(model, x[t], y[t], role="treated outcome", seed=seed).predict(x)
    m0 = fit_model(model, x[~t], y[~t], role="control outcome", seed=seed).predict(x)
    if estimand == "att":
        return float(np.mean(y[t] - m0[t]))
    if estimand == "atc":
        return float(np.mean(m1[~t] - y[~t]))
    return float(np.mean(m1 - m0))


def regression_adjustment(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    estimand: str = "ate",
    outcome_model: Any = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Estimate:
    """Estimate by outcome models fitted per arm (linear by default), with a bootstrap interval."""
    target = _check_estimand(estimand)
    data = prepare(frame, treatment, outcome, covariates)
    model = outcome_model if outcome_model is not None else LinearRegression()
    value = _regression_value(data, model, target, seed)
    stderr, low, high, method = _bootstrap(data, lambda d: _regression_value(d, model, target, seed), n_boot, seed)
    return Estimate(
        target,
        "regression",
        value,
        stderr,
        low,
        high,
        method,
        int(data.t.size),
        Trimming(None),
        treatment,
        outcome,
        data.covariates,
    )


def _ipw_value(data: Data, model: Any, estimand: Estimand, bounds: tuple[float, float] | None, seed: int) -> float:
    e = predict_proba1(fit_model(model, data.x, data.t, role="propensity", seed=seed), data.x)
    keep, _ = _trim(e, data.t, bounds)
    e, t, y = e[keep], data.t[keep], data.y[keep]
    _check_positivity(e, estimand, "ipw")
    w = balancing_weights(e, t, estimand)
    # Normalised (Hajek) means per arm: the raw Horvitz-Thompson sum is unstable when weights are large.
    return float(np.sum(w[t] * y[t]) / np.sum(w[t]) - np.sum(w[~t] * y[~t]) / np.sum(w[~t]))


def ipw(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    estimand: str = "ate",
    propensity_model: Any = None,
    trim: tuple[float, float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Estimate:
    """Estimate by inverse propensity weighting (normalised; ATT/ATC weights for ATT/ATC), bootstrap interval."""
    target, bounds = _check_estimand(estimand), _check_trim(trim)
    data = prepare(frame, treatment, outcome, covariates)
    model = propensity_model if propensity_model is not None else _default_propensity()
    e = predict_proba1(fit_model(model, data.x, data.t, role="propensity", seed=seed), data.x)
    keep, trimming = _trim(e, data.t, bounds)
    _check_positivity(e[keep], target, "ipw")
    value = _ipw_value(data, model, target, bounds, seed)
    stderr, low, high, method = _bootstrap(data, lambda d: _ipw_value(d, model, target, bounds, seed), n_boot, seed)
    report = overlap_report(e[keep], data.t[keep], estimand=target)
    return Estimate(
        target,
        "ipw",
        value,
        stderr,
        low,
        high,
        method,
        int(keep.sum()),
        trimming,
        treatment,
        outcome,
        data.covariates,
        report,
        _trim_note(trimming, target),
    )


def _dr_score(
    t: BoolArray, y: FloatArray, e: FloatArray, m0: FloatArray, m1: FloatArray, estimand: Estimand
) -> tuple[float, float]:
    """Doubly robust point estimate and its influence-function standard error."""
    ti = t.astype(float)
    if estimand == "ate":
        phi = m1 - m0 + ti * (y - m1) / e - (1 - ti) * (y - m0) / (1 - e)
        value = float(phi.mean())
        influence = phi - value
    elif estimand == "att":
        share = ti.mean()
        numerator = ti * (y - m0) - (1 - ti) * e / (1 - e) * (y - m0)
        value = float(numerator.mean() / share)
        influence = (numerator - ti * value) / share
    else:
        share = (1 - ti).mean()
        numerator = (1 - ti) * (m1 - y) + ti * (1 - e) / e * (y - m1)
        value = float(numerator.mean() / share)
        influence = (numerator - (1 - ti) * value) / share
    return value, float(np.sqrt(np.mean(influence**2) / t.size))


def _dr_estimate(
    data: Data,
    nuisances: tuple[FloatArray, FloatArray, FloatArray],
    estimand: Estimand,
    bounds: tuple[float, float] | None,
    estimator: str,
    notes: tuple[str, ...],
) -> Estimate:
    e, m0, m1 = nuisances
    keep, trimming = _trim(e, data.t, bounds)
    _check_positivity(e[keep], estimand, estimator)
    t, y = data.t[keep], data.y[keep]
    value, stderr = _dr_score(t, y, e[keep], m0[keep], m1[keep], estimand)
    report = overlap_report(e[keep], t, estimand=estimand)
    return Estimate(
        estimand,
        estimator,
        value,
        stderr,
        value - _Z95 * stderr,
        value + _Z95 * stderr,
        "influence function, normal 95%",
        int(keep.sum()),
        trimming,
        data.treatment,
        data.outcome,
        data.covariates,
        report,
        (*notes, *_trim_note(trimming, estimand)),
    )


def aipw(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    estimand: str = "ate",
    propensity_model: Any = None,
    outcome_model: Any = None,
    trim: tuple[float, float] | None = None,
    seed: int = 0,
) -> Estimate:
    """Augmented IPW (doubly robust) with parametric nuisances fitted in-sample; influence-function interval."""
    target, bounds = _check_estimand(estimand), _check_trim(trim)
    data = prepare(frame, treatment, outcome, covariates)
    p_model = propensity_model if propensity_model is not None else _default_propensity()
    o_model = outcome_model if outcome_model is not None else LinearRegression()
    t, y, x = data.t, data.y, data.x
    e = predict_proba1(fit_model(p_model, x, t, role="propensity", seed=seed), x)
    m1 = fit_model(o_model, x[t], y[t], role="treated outcome", seed=seed).predict(x)
    m0 = fit_model(o_model, x[~t], y[~t], role="control outcome", seed=seed).predict(x)
    return _dr_estimate(data, (e, m0, m1), target, bounds, "aipw", ())


def dml(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    estimand: str = "ate",
    propensity_model: Any = None,
    outcome_model: Any = None,
    folds: int = 5,
    trim: tuple[float, float] | None = None,
    seed: int = 0,
) -> Estimate:
    """Double machine learning: the doubly robust score with nuisances cross-fitted over `folds` seeded folds.

    Default nuisances: gradient boosting for the outcome, logistic regression for the propensity.
    """
    target, bounds = _check_estimand(estimand), _check_trim(trim)
    data = prepare(frame, treatment, outcome, covariates)
    if not 2 <= folds <= min(int(data.t.sum()), int((~data.t).sum())):
        raise InvalidInputError(f"folds={folds} must be at least 2 and at most the size of the smaller arm.")
    p_model = propensity_model if propensity_model is not None else _default_propensity()
    o_model = outcome_model if outcome_model is not None else _default_dml_outcome()
    t, y, x = data.t, data.y, data.x
    e, m0, m1 = np.empty(t.size), np.empty(t.size), np.empty(t.size)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, t):
        tt, yt, xt = t[train], y[train], x[train]
        e[test] = predict_proba1(fit_model(p_model, xt, tt, role="propensity", seed=seed), x[test])
        m1[test] = fit_model(o_model, xt[tt], yt[tt], role="treated outcome", seed=seed).predict(x[test])
        m0[test] = fit_model(o_model, xt[~tt], yt[~tt], role="control outcome", seed=seed).predict(x[test])
    note = f"nuisances cross-fitted over {folds} stratified folds (seed {seed})"
    return _dr_estimate(data, (e, m0, m1), target, bounds, "dml", (note,))


def _default_dml_outcome() -> Any:
    return GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8)


def compare_estimators(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    estimand: str = "ate",
    estimators: Sequence[str] = ESTIMATORS,
    trim: tuple[float, float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Comparison:
    """Run several estimator families and flag every pair whose 95 % intervals do not overlap."""
    unknown = [name for name in estimators if name not in ESTIMATORS]
    if unknown or not estimators:
        raise InvalidInputError(f"Unknown estimator(s) {unknown or list(estimators)}; choose from {list(ESTIMATORS)}.")
    args = (frame, treatment, outcome, covariates)
    runs: dict[str, Callable[[], Estimate]] = {
        "regression": lambda: regression_adjustment(*args, estimand=estimand, n_boot=n_boot, seed=seed),
        "ipw": lambda: ipw(*args, estimand=estimand, trim=trim, n_boot=n_boot, seed=seed),
        "aipw": lambda: aipw(*args, estimand=estimand, trim=trim, seed=seed),
        "dml": lambda: dml(*args, estimand=estimand, trim=trim, seed=seed),
    }
    return summarise(tuple(runs[name]() for name in dict.fromkeys(estimators)))


def summarise(estimates: Sequence[Estimate]) -> Comparison:
    """Flag every pair of estimates whose 95 % intervals do not overlap, and gather overlap warnings."""
    disagreements = []
    for i, a in enumerate(estimates):
        for b in estimates[i + 1 :]:
            if a.ci_high < b.ci_low or b.ci_high < a.ci_low:
                disagreements.append(
                    f"{a.estimator} ({a.value:.4g}, 95% [{a.ci_low:.4g}, {a.ci_high:.4g}]) and {b.estimator} "
                    f"({b.value:.4g}, 95% [{b.ci_low:.4g}, {b.ci_high:.4g}]) disagree: their intervals do not overlap"
                )
    notes: dict[str, None] = {}
    for estimate in estimates:
        for warning in estimate.overlap.warnings if estimate.overlap else ():
            notes.setdefault(f"overlap ({estimate.estimator}): {warning}")
    return Comparison(tuple(estimates), tuple(disagreements), tuple(notes))
