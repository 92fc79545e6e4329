"""Demand models for inventory twins and their fit to a sales history. Values in, values out.

Three families implement the `Demand` protocol of spec.py: `Poisson`, `NegativeBinomial` (variance
mean + mean^2 / dispersion) and `Empirical` (a probability table per seasonal phase). Seasonality is
a multiplicative factor per phase of a cycle of `season` periods: period t's mean is the base mean
times `seasonal[t % season]`.

`fit_demand` chooses among them by AIC and says why in a sentence. Choices, on purpose:
- seasonal factors come from the classical multiplicative decomposition (ratio of each value to
  its centred moving average of one cycle, averaged per phase, normalised to mean 1), so a trend
  does not masquerade as seasonality; they are kept only when a Kruskal-Wallis test across phases
  rejects "no seasonal difference" at 1 %;
- the level is stationary: a history with a trend should be cut to its recent part (`recent=`),
  because a twin with the mean of ten years of growth would under-order today;
- goodness of fit of the parametric families is Pearson's dispersion statistic against chi-square
  with n - k degrees of freedom (the check that tells Poisson from over-dispersed demand); the
  empirical model reproduces the history by construction, so it gets no such test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import optimize, special, stats

from keel.errors import InvalidInputError
from keel.rl.spec import Demand

__all__ = [
    "Poisson",
    "NegativeBinomial",
    "Empirical",
    "Candidate",
    "DemandFit",
    "ScaledSeries",
    "fit_demand",
    "scale_to_units",
    "SEASONS",
]

FloatArray = NDArray[np.float64]
SEASONS = {"hour": 24, "day": 7, "week": 52, "month": 12, "quarter": 4, "year": 1}
_SEASONAL_ALPHA = 0.01
_MIN_PERIODS = 8


def _factors(seasonal: Sequence[float] | None) -> tuple[float, ...] | None:
    if seasonal is None:
        return None
    out = tuple(float(f) for f in seasonal)
    if len(out) < 2 or not all(np.isfinite(f) and f > 0 for f in out):
        raise InvalidInputError(f"seasonal factors must be at least 2 finite numbers > 0, got {seasonal!r}")
    return out


def _finish_pmf(pmf: FloatArray, tail_mass: float) -> FloatArray:
    out = np.asarray(pmf, dtype=np.float64).copy()
    out[-1] += max(tail_mass, 0.0)  # the last entry carries the rest, so the DP's mass sums to 1
    normalised: FloatArray = out / out.sum()
    return normalised


@dataclass(frozen=True)
class Poisson:
    """Poisson demand with mean `rate` (times the seasonal factor of the period's phase)."""

    rate: float
    seasonal: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not np.isfinite(self.rate) or self.rate <= 0:
            raise InvalidInputError(f"Poisson rate must be a finite number > 0, got {self.rate!r}")
        object.__setattr__(self, "seasonal", _factors(self.seasonal))

    @property
    def season(self) -> int:
        return 1 if self.seasonal is None else len(self.seasonal)

    def mean(self, t: int = 0) -> float:
        return self.rate * (1.0 if self.seasonal is None else self.seasonal[t % self.season])

    def pmf(self, t: int = 0, *, tail: float = 1e-9) -> FloatArray:
        lam = self.mean(t)
        top = int(stats.poisson.isf(tail, lam))
        return _finish_pmf(stats.poisson.pmf(np.arange(top + 1), lam), float(stats.poisson.sf(top, lam)))

    def sample(self, rng: np.random.Generator, periods: int, copies: int, *, start: int = 0) -> NDArray[np.int64]:
        lam = np.array([self.mean(t) for t in range(start, start + periods)])
        return rng.poisson(lam[:, None], size=(periods, copies)).astype(np.int64)


@dataclass(frozen=True, init=False)
class NegativeBinomial:
    """Negative binomial demand: mean `mean` (times the seasonal factor), variance mean + mean^2 /
    `dispersion` (large dispersion: close to Poisson)."""

    level: float  # the base mean (`mean(t)` is the method the Demand protocol names)
    dispersion: float
    seasonal: tuple[float, ...] | None = None

    def __init__(self, mean: float, dispersion: float, seasonal: Sequence[float] | None = None) -> None:
        if not np.isfinite(mean) or mean <= 0:
            raise InvalidInputError(f"negative binomial mean must be a finite number > 0, got {mean!r}")
        if not np.isfinite(dispersion) or dispersion <= 0:
            raise InvalidInputError(f"dispersion must be a finite number > 0, got {dispersion!r}")
        object.__setattr__(self, "level", float(mean))
        object.__setattr__(self, "dispersion", float(dispersion))
        object.__setattr__(self, "seasonal", _factors(seasonal))

    @property
    def season(self) -> int:
        return 1 if self.seasonal is None else len(self.seasonal)

    def mean(self, t: int = 0) -> float:
        return self.level * (1.0 if self.seasonal is None else self.seasonal[t % self.season])

    def _p(self, t: int) -> float:
        return self.dispersion / (self.dispersion + self.mean(t))

    def pmf(self, t: int = 0, *, tail: float = 1e-9) -> FloatArray:
        r, p = self.dispersion, self._p(t)
        top = int(stats.nbinom.isf(tail, r, p))
        return _finish_pmf(stats.nbinom.pmf(np.arange(top + 1), r, p), float(stats.nbinom.sf(top, r, p)))

    def sample(self, rng: np.random.Generator, periods: int, copies: int, *, start: int = 0) -> NDArray[np.int64]:
        p = np.array([self._p(t) for t in range(start, start + periods)])
        return rng.negative_binomial(self.dispersion, p[:, None], size=(periods, copies)).astype(np.int64)


@dataclass(frozen=True, repr=False)
class Empirical:
    """A probability table per seasonal phase: `probabilities[j][k]` = P(demand = k) in phase j
    (one row: stationary). Build it from a history with `Empirical.from_values`."""

    probabilities: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        rows = [np.asarray(r, dtype=np.float64) for r in self.probabilities]
        if not rows or any(r.size == 0 or np.any(r < 0) or not np.isclose(r.sum(), 1.0) for r in rows):
            raise InvalidInputError("each row of probabilities must be non-negative and sum to 1")

    def __repr__(self) -> str:
        return f"Empirical(season={self.season}, support=0..{max(len(r) for r in self.probabilities) - 1})"

    @classmethod
    def from_values(cls, values: Sequence[int] | NDArray[Any], season: int = 1) -> Empirical:
        """The empirical distribution of `values` per phase (t % season) of the history."""
        arr = np.asarray(values, dtype=np.int64)
        top = int(arr.max())
        rows = []
        for j in range(season):
            counts = np.bincount(arr[j::season], minlength=top + 1).astype(np.float64)
            rows.append(tuple(float(v) for v in counts / counts.sum()))
        return cls(tuple(rows))

    @property
    def season(self) -> int:
        return len(self.probabilities)

    def mean(self, t: int = 0) -> float:
        row = np.asarray(self.probabilities[t % self.season])
        return float(np.arange(row.size) @ row)

    def pmf(self, t: int = 0, *, tail: float = 1e-9) -> FloatArray:
        return np.asarray(self.probabilities[t % self.season], dtype=np.float64).copy()

    def sample(self, rng: np.random.Generator, periods: int, copies: int, *, start: int = 0) -> NDArray[np.int64]:
        u = rng.random((periods, copies))
        out = np.empty((periods, copies), dtype=np.int64)
        for i, t in enumerate(range(start, start + periods)):
            cdf = np.cumsum(self.pmf(t))
            out[i] = np.minimum(np.searchsorted(cdf, u[i], side="right"), cdf.size - 1)
        return out


@dataclass(frozen=True)
class Candidate:
    """One family fitted to the history: its likelihood, AIC and goodness of fit."""

    family: str
    model: Demand = field(compare=False)
    log_likelihood: float
    n_params: int
    aic: float
    gof_test: str
    gof_statistic: float
    gof_p_value: float


@dataclass(frozen=True)
class DemandFit:
    """The chosen demand model, every candidate's fit, the seasonality and why this choice."""

    model: Demand = field(compare=False)
    family: str
    candidates: tuple[Candidate, ...]
    n_periods: int
    season: int  # the cycle tested (1: none tested)
    seasonal: bool  # whether the factors were kept
    seasonal_factors: tuple[float, ...] | None
    seasonality_method: str
    seasonality_p_value: float | None
    reason: str


@dataclass(frozen=True)
class ScaledSeries:
    """A non-integer series turned into whole units: units = round(values * factor)."""

    units: NDArray[np.int64] = field(compare=False)
    factor: float
    max_rounding_error: float  # in units
    note: str


def scale_to_units(values: Sequence[float] | NDArray[Any] | pd.Series, factor: float) -> ScaledSeries:
    """Whole units from a series in other units (money, thousands): `round(values * factor)`, rounding
    half to even. E.g. fpp2's a10 is in millions of dollars; `factor=1000` gives thousands of units
    at a nominal dollar a unit."""
    if not np.isfinite(factor) or factor <= 0:
        raise InvalidInputError(f"factor must be a finite number > 0, got {factor!r}")
    arr = _as_float(values)
    _refuse_gaps(arr)  # rounding NaN to an integer gives garbage, not a gap
    scaled = arr * factor
    units = np.rint(scaled).astype(np.int64)
    err = float(np.max(np.abs(scaled - units))) if arr.size else 0.0
    note = (
        f"values multiplied by {factor:g} and rounded to the nearest whole unit (half to even); "
        f"largest rounding error {err:.3f} units"
    )
    return ScaledSeries(units=units, factor=float(factor), max_rounding_error=err, note=note)


def _as_float(values: Sequence[float] | NDArray[Any] | pd.Series) -> FloatArray:
    if isinstance(values, pd.Series):
        index = values.index
        if isinstance(index, (pd.DatetimeIndex, pd.PeriodIndex)) and len(index) >= 3:
            as_dt = index.to_timestamp() if isinstance(index, pd.PeriodIndex) else index
            if pd.infer_freq(as_dt) is None:
                raise InvalidInputError(
                    "the demand series has missing or irregular periods in its time index: "
                    "reindex to a regular frequency and fill the gaps (with 0 if no sales is what they mean)"
                )
        values = values.to_numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"demand values must be numbers: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidInputError(f"demand values must be one series (1-D), got shape {arr.shape}")
    return arr


def _refuse_gaps(arr: FloatArray) -> None:
    missing = np.flatnonzero(~np.isfinite(arr))
    if missing.size:
        raise InvalidInputError(
            f"demand has {missing.size} missing values (gaps), first at position {int(missing[0])}: "
            "fill them (with 0 if no sales is what they mean) or cut the history after the last gap"
        )


def _check_counts(values: Sequence[float] | NDArray[Any] | pd.Series) -> NDArray[np.int64]:
    arr = _as_float(values)
    if arr.size < _MIN_PERIODS:
        raise InvalidInputError(f"demand history too short: {arr.size} periods, need at least {_MIN_PERIODS}")
    _refuse_gaps(arr)
    negative = np.flatnonzero(arr < 0)
    if negative.size:
        raise InvalidInputError(
            f"demand has {negative.size} negative values, first {float(arr[negative[0]])!r} at position "
            f"{int(negative[0])}: returns are not demand; remove or net them out first"
        )
    fractional = np.flatnonzero(arr != np.round(arr))
    if fractional.size:
        raise InvalidInputError(
            f"demand must be whole units for count models, got {float(arr[fractional[0]])!r} at position "
            f"{int(fractional[0])}: convert with scale_to_units(values, factor) (e.g. factor=1000 for "
            "a series in thousands), which rounds and states the rounding"
        )
    if not np.any(arr > 0):
        raise InvalidInputError("demand is zero in every period: there is nothing to fit")
    return arr.astype(np.int64)


def _resolve_season(period: str | None, season: int | None) -> int:
    if season is not None:
        if isinstance(season, bool) or not isinstance(season, int) or season < 1:
            raise InvalidInputError(f"season must be an integer >= 1 (periods per cycle), got {season!r}")
        return season
    if period is None:
        return 1
    key = period.lower().rstrip("s").removesuffix("ly").replace("dai", "day")
    if key not in SEASONS:
        raise InvalidInputError(f"unknown period {period!r}: use one of {sorted(SEASONS)} or pass season=")
    return SEASONS[key]


def _seasonal_factors(y: FloatArray, season: int) -> tuple[FloatArray, float]:
    """Classical multiplicative decomposition: ratio to the centred moving average of one cycle,
    averaged per phase, normalised to mean 1; and the Kruskal-Wallis p-value across phases."""
    if season % 2 == 0:  # a 2 x season moving average centres an even window
        kernel = np.r_[0.5, np.ones(season - 1), 0.5] / season
    else:
        kernel = np.ones(season) / season
    trend = np.convolve(y, kernel, mode="valid")
    half = (kernel.size - 1) // 2
    idx = np.arange(half, half + trend.size)
    ok = trend > 0
    ratios, phases = y[idx][ok] / trend[ok], idx[ok] % season
    groups = [ratios[phases == j] for j in range(season)]
    if any(g.size == 0 for g in groups):
        return np.ones(season), 1.0
    factors = np.array([g.mean() for g in groups])
    factors = np.maximum(factors, 1e-3)
    factors /= factors.mean()
    try:
        p = float(stats.kruskal(*groups).pvalue)
    except ValueError:  # every ratio identical: no evidence of seasonality
        p = 1.0
    return factors, p if np.isfinite(p) else 1.0


def _fit_poisson(y: NDArray[np.int64], f: FloatArray, k_season: int) -> Candidate:
    rate = float(y.sum() / f.sum())
    mu: FloatArray = rate * f
    ll = float(np.sum(stats.poisson.logpmf(y, mu)))
    k = 1 + k_season
    stat = float(np.sum((y - mu) ** 2 / mu))
    dof = max(y.size - k, 1)
    return Candidate(
        family="poisson",
        model=Poisson(rate),
        log_likelihood=ll,
        n_params=k,
        aic=2 * k - 2 * ll,
        gof_test=f"Pearson dispersion, chi-square with {dof} degrees of freedom",
        gof_statistic=stat,
        gof_p_value=float(stats.chi2.sf(stat, dof)),
    )


def _nb_loglik(y: NDArray[np.int64], mu: FloatArray, r: float) -> float:
    return float(
        np.sum(
            special.gammaln(y + r)
            - special.gammaln(r)
            - special.gammaln(y + 1)
            + r * np.log(r / (r + mu))
            + y * np.log(mu / (r + mu))
        )
    )


def _fit_negbin(y: NDArray[np.int64], f: FloatArray, k_season: int) -> tuple[float, float, Candidate]:
    m0 = float(y.sum() / f.sum())

    def nll(theta: FloatArray) -> float:
        return -_nb_loglik(y, np.exp(theta[0]) * f, float(np.exp(theta[1])))

    # the dispersion is capped at e^14: beyond it the model is Poisson to many digits
    res = optimize.minimize(nll, x0=np.array([np.log(m0), 1.0]), method="L-BFGS-B", bounds=[(None, None), (-8, 14)])
    mean, r = float(np.exp(res.x[0])), float(np.exp(res.x[1]))
    mu = mean * f
    ll = -float(res.fun)
    k = 2 + k_season
    stat = float(np.sum((y - mu) ** 2 / (mu + mu**2 / r)))
    dof = max(y.size - k, 1)
    cand = Candidate(
        family="negbin",
        model=NegativeBinomial(mean, r),
        log_likelihood=ll,
        n_params=k,
        aic=2 * k - 2 * ll,
        gof_test=f"Pearson dispersion, chi-square with {dof} degrees of freedom",
        gof_statistic=stat,
        gof_p_value=float(stats.chi2.sf(stat, dof)),
    )
    return mean, r, cand


def _fit_empirical(y: NDArray[np.int64], season: int) -> Candidate:
    model = Empirical.from_values(y, season)
    ll, k = 0.0, 0
    for j in range(season):
        part = y[j::season]
        _, counts = np.unique(part, return_counts=True)
        ll += float(np.sum(counts * np.log(counts / part.size)))
        # the model is a table over the observed range, each cell estimated (zeros included), so
        # it pays for every cell: otherwise a history of large, all-distinct counts (sales in
        # units) would win by AIC with one spike per observation
        k += int(part.max() - part.min())
    return Candidate(
        family="empirical",
        model=model,
        log_likelihood=ll,
        n_params=k,
        aic=2 * k - 2 * ll,
        gof_test="none: the empirical model reproduces the history by construction",
        gof_statistic=float("nan"),
        gof_p_value=float("nan"),
    )


def fit_demand(
    values: Sequence[float] | NDArray[Any] | pd.Series,
    *,
    period: str | None = None,
    season: int | None = None,
    candidates: Sequence[str] = ("poisson", "negbin", "empirical"),
    recent: int | None = None,
) -> DemandFit:
    """Fit each candidate family to a history of whole-unit demand per period and keep the one with
    the lowest AIC. `season` (or `period`: 'month' -> 12, 'week' -> 52, 'day' -> 7, ...) names the
    cycle tested for seasonality; `recent` fits only the last `recent` periods (a trended history)."""
    unknown = set(candidates) - {"poisson", "negbin", "empirical"}
    if unknown or not candidates:
        raise InvalidInputError(f"candidates must be among 'poisson', 'negbin', 'empirical', got {candidates!r}")
    y = _check_counts(values)
    if recent is not None:
        if recent < _MIN_PERIODS:
            raise InvalidInputError(f"recent must be at least {_MIN_PERIODS} periods, got {recent!r}")
        y = y[-recent:]
    s = _resolve_season(period, season)
    factors: FloatArray | None = None
    p_season: float | None = None
    method = "none: no seasonal cycle given (pass period= or season=)"
    if s > 1:
        if y.size < 2 * s:
            raise InvalidInputError(
                f"demand history too short for a seasonal fit: {y.size} periods, need at least two "
                f"cycles of {s} ({2 * s} periods); pass season=1 to fit without seasonality"
            )
        est, p_season = _seasonal_factors(y.astype(np.float64), s)
        kept = p_season < _SEASONAL_ALPHA
        factors = est if kept else None
        method = (
            f"ratio to a centred {s}-period moving average, averaged per phase and normalised to mean 1; "
            f"Kruskal-Wallis across the {s} phases p = {p_season:.3g} "
            + ("< 0.01: kept" if kept else ">= 0.01: not significant, dropped")
        )
    f = np.ones(y.size) if factors is None else factors[np.arange(y.size) % s]
    k_season = 0 if factors is None else s - 1
    season_tuple = None if factors is None else tuple(float(v) for v in factors)
    fitted: list[Candidate] = []
    if "poisson" in candidates:
        c = _fit_poisson(y, f, k_season)
        fitted.append(_with_model(c, Poisson(float(y.sum() / f.sum()), season_tuple)))
    if "negbin" in candidates:
        mean, r, c = _fit_negbin(y, f, k_season)
        fitted.append(_with_model(c, NegativeBinomial(mean, r, season_tuple)))
    if "empirical" in candidates:
        fitted.append(_fit_empirical(y, 1 if factors is None else s))
    best = min(fitted, key=lambda c: c.aic)
    return DemandFit(
        model=best.model,
        family=best.family,
        candidates=tuple(fitted),
        n_periods=int(y.size),
        season=s,
        seasonal=factors is not None,
        seasonal_factors=season_tuple,
        seasonality_method=method,
        seasonality_p_value=p_season,
        reason=_reason(best, fitted, factors is not None, s),
    )


def _with_model(c: Candidate, model: Demand) -> Candidate:
    return Candidate(c.family, model, c.log_likelihood, c.n_params, c.aic, c.gof_test, c.gof_statistic, c.gof_p_value)


def _reason(best: Candidate, fitted: list[Candidate], seasonal: bool, s: int) -> str:
    others = sorted((c for c in fitted if c is not best), key=lambda c: c.aic)
    vs = "; ".join(f"{c.family} AIC {c.aic:.1f}" for c in others)
    text = f"{best.family} has the lowest AIC ({best.aic:.1f}" + (f"; {vs})" if vs else ")")
    if np.isfinite(best.gof_p_value):
        verdict = "consistent with" if best.gof_p_value >= 0.05 else "a poor fit to"
        text += f" and its dispersion test (p = {best.gof_p_value:.3g}) finds it {verdict} the history"
    text += f", with a seasonal factor for each of {s} phases" if seasonal else ", without seasonality"
    return text + "."
