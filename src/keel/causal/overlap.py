"""Overlap (positivity) report: how far the treated and control propensity distributions share support,
and how many units the weighting effectively keeps.

An estimate from weights is only as good as its overlap; this report travels with every
propensity-based `Estimate` so a reader sees the problem instead of a confident number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from keel.errors import InvalidInputError

__all__ = ["OverlapReport", "overlap_report", "balancing_weights"]

Estimand = Literal["ate", "att", "atc"]
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)

# Below these the report warns: a few units carry the estimate.
_MAX_SHARE_OUTSIDE = 0.05
_MIN_ESS_FRACTION = 0.10
_EXTREME = 0.01


@dataclass(frozen=True)
class OverlapReport:
    """Propensity distributions by arm, common support, and effective sample sizes after weighting.

    `histogram_edges` has one more entry than each count tuple. `common_support` is the min-max
    rule: from the larger of the two arms' minima to the smaller of their maxima. `ess_*` is Kish's
    effective sample size (sum w)^2 / sum w^2 under the estimand's weights.
    """

    estimand: str
    n_treated: int
    n_control: int
    quantiles: tuple[float, ...]
    treated_quantiles: tuple[float, ...]
    control_quantiles: tuple[float, ...]
    histogram_edges: tuple[float, ...]
    treated_counts: tuple[int, ...]
    control_counts: tuple[int, ...]
    common_support: tuple[float, float]
    n_outside_support: int
    share_outside_support: float
    ess_treated: float
    ess_control: float
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.warnings


def balancing_weights(
    propensity: npt.NDArray[np.float64], treated: npt.NDArray[np.bool_], estimand: Estimand
) -> npt.NDArray[np.float64]:
    """Unnormalised weights that balance the arms for the estimand (ATT weights for ATT, not ATE's)."""
    e = propensity
    # np.where evaluates both branches: a control at e = 1 must not warn about a treated-only division.
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimand == "ate":
            return np.where(treated, 1.0 / e, 1.0 / (1.0 - e))
        if estimand == "att":
            return np.where(treated, 1.0, e / (1.0 - e))
        if estimand == "atc":
            return np.where(treated, (1.0 - e) / e, 1.0)
    raise InvalidInputError(f"Unknown estimand {estimand!r}; use 'ate', 'att' or 'atc'.")


def _ess(weights: npt.NDArray[np.float64]) -> float:
    total = float(weights.sum())
    return total * total / float((weights * weights).sum()) if weights.size else 0.0


def overlap_report(
    propensity: npt.ArrayLike, treated: npt.ArrayLike, *, estimand: Estimand = "ate", bins: int = 20
) -> OverlapReport:
    """Summarise overlap of estimated propensities `propensity` between the arms given by `treated` (0/1).

    >>> overlap_report([0.2, 0.4, 0.5, 0.7], [0, 1, 0, 1]).n_outside_support
    2
    """
    e = np.asarray(propensity, dtype=float)
    t = np.asarray(treated).astype(bool)
    if e.shape != t.shape or e.ndim != 1:
        raise InvalidInputError(f"propensity and treated must be 1-d of one length; got {e.shape} and {t.shape}.")
    if not np.all((e >= 0.0) & (e <= 1.0)):
        raise InvalidInputError("Propensities must lie between 0 and 1 for an overlap report.")
    if t.all() or not t.any():
        raise InvalidInputError("Overlap needs treated and control units; one arm is empty.")
    e_t, e_c = e[t], e[~t]
    low, high = max(e_t.min(), e_c.min()), min(e_t.max(), e_c.max())
    outside = int(((e < low) | (e > high)).sum())
    edges = np.linspace(0.0, 1.0, bins + 1)
    weights = balancing_weights(e, t, estimand)
    report_warnings = _warnings(e, t, outside, weights, estimand)
    return OverlapReport(
        estimand=estimand,
        n_treated=int(t.sum()),
        n_control=int((~t).sum()),
        quantiles=QUANTILES,
        treated_quantiles=tuple(float(v) for v in np.quantile(e_t, QUANTILES)),
        control_quantiles=tuple(float(v) for v in np.quantile(e_c, QUANTILES)),
        histogram_edges=tuple(float(v) for v in edges),
        treated_counts=tuple(int(c) for c in np.histogram(e_t, bins=edges)[0]),
        control_counts=tuple(int(c) for c in np.histogram(e_c, bins=edges)[0]),
        common_support=(float(low), float(high)),
        n_outside_support=outside,
        share_outside_support=outside / e.size,
        ess_treated=_ess(weights[t]),
        ess_control=_ess(weights[~t]),
        warnings=report_warnings,
    )


def _warnings(
    e: npt.NDArray[np.float64], t: npt.NDArray[np.bool_], outside: int, weights: npt.NDArray[np.float64], estimand: str
) -> tuple[str, ...]:
    found = []
    if outside / e.size > _MAX_SHARE_OUTSIDE:
        found.append(f"{outside} of {e.size} units ({outside / e.size:.1%}) lie outside the common support")
    for name, mask in (("treated", t), ("control", ~t)):
        ess, n = _ess(weights[mask]), int(mask.sum())
        if ess < _MIN_ESS_FRACTION * n:
            found.append(
                f"{estimand.upper()} weights leave the {name} arm an effective sample of {ess:.1f} of {n} units"
            )
    # Only the side the estimand divides by matters: ATT weights never divide by e, ATC's never by 1 - e.
    low = int((e < _EXTREME).sum()) if estimand != "att" else 0
    high = int((e > 1 - _EXTREME).sum()) if estimand != "atc" else 0
    if low + high:
        found.append(f"{low + high} units have propensities below {_EXTREME} or above {1 - _EXTREME}")
    return tuple(found)
