"""Uplift and Qini curves: how much of the effect a targeting score captures, versus random targeting.

Units are sorted by the score (highest first: CATE, a policy's expected gain) and the curves
give, for each share of the population targeted, the incremental outcome gained, per unit of
the whole population:

    uplift(phi) = (mean_Y_treated(top) - mean_Y_control(top)) * n_top / n
    qini(phi)   = (sum_Y_treated(top) - sum_Y_control(top) * n_t(top) / n_c(top)) / n

With `dr_scores` (per-unit doubly robust effects, e.g. Gamma[:, a] - Gamma[:, baseline] from
`keel.causal.policy.dr_scores`), both curves are the cumulative sum of the scores / n, which
corrects for confounded assignment; raw outcomes are right for a randomised experiment.
The random-targeting line goes straight from 0 to the curve's end; AUUC is the area under the
uplift curve over shares in [0, 1] and the Qini coefficient the area between the Qini curve and
its random line (positive: the score targets better than chance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from keel.errors import InvalidInputError

__all__ = ["UpliftCurve", "uplift_curve"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class UpliftCurve:
    """Points of the uplift and Qini curves at `shares` of the population targeted."""

    shares: tuple[float, ...]
    uplift: tuple[float, ...]
    qini: tuple[float, ...]
    random_uplift: tuple[float, ...]
    random_qini: tuple[float, ...]
    auuc: float
    auuc_random: float
    qini_coefficient: float
    n: int
    method: str  # "outcomes" | "dr_scores"

    @property
    def auuc_lift(self) -> float:
        """AUUC above random targeting (positive: the score beats chance)."""
        return self.auuc - self.auuc_random

    def to_dict(self) -> dict[str, Any]:
        return {
            "shares": list(self.shares),
            "uplift": list(self.uplift),
            "qini": list(self.qini),
            "random_uplift": list(self.random_uplift),
            "random_qini": list(self.random_qini),
            "auuc": self.auuc,
            "auuc_random": self.auuc_random,
            "auuc_lift": self.auuc_lift,
            "qini_coefficient": self.qini_coefficient,
            "n": self.n,
            "method": self.method,
        }


def uplift_curve(
    score: ArrayLike,
    treatment: ArrayLike | None = None,
    outcome: ArrayLike | None = None,
    *,
    dr_scores: ArrayLike | None = None,
    treated: Any = 1,
    control: Any = 0,
    n_points: int = 100,
) -> UpliftCurve:
    """The curves of `score` from observed `treatment` and `outcome` (rows whose treatment is neither
    `treated` nor `control` are left out: one action versus the baseline), or from `dr_scores`."""
    s = _finite("score", score)
    if not isinstance(n_points, int) or n_points < 2:
        raise InvalidInputError(f"n_points must be an integer >= 2, got {n_points!r}.")
    if dr_scores is not None:
        if treatment is not None or outcome is not None:
            raise InvalidInputError("Give dr_scores, or treatment and outcome, not both.")
        psi = _finite("dr_scores", dr_scores)
        _same_length(s, psi)
        uplift = qini = _cumulative_dr(s, psi, n_points)
        method = "dr_scores"
    else:
        if treatment is None or outcome is None:
            raise InvalidInputError("uplift_curve needs treatment and outcome (or dr_scores).")
        t_raw = np.asarray(treatment).ravel()
        y = _finite("outcome", outcome)
        _same_length(s, t_raw, y)
        keep = (t_raw == treated) | (t_raw == control)
        t = np.asarray(t_raw[keep] == treated, dtype=bool)
        if t.all() or not t.any():
            raise InvalidInputError(
                f"uplift_curve needs units with treatment {treated!r} and with {control!r}; "
                f"found {int(t.sum())} and {int((~t).sum())}."
            )
        s, y = s[keep], y[keep]
        uplift, qini = _cumulative_outcomes(s, t, y, n_points)
        method = "outcomes"
    shares = np.linspace(0.0, 1.0, n_points + 1)
    random_uplift, random_qini = shares * uplift[-1], shares * qini[-1]
    return UpliftCurve(
        shares=tuple(shares.tolist()),
        uplift=tuple(uplift.tolist()),
        qini=tuple(qini.tolist()),
        random_uplift=tuple(random_uplift.tolist()),
        random_qini=tuple(random_qini.tolist()),
        auuc=_area(shares, uplift),
        auuc_random=_area(shares, random_uplift),
        qini_coefficient=_area(shares, qini - random_qini),
        n=int(s.size),
        method=method,
    )


def _cut_points(n: int, n_points: int) -> npt.NDArray[np.intp]:
    return np.asarray(np.round(np.linspace(0, n, n_points + 1)), dtype=np.intp)


def _ranking(s: FloatArray) -> npt.NDArray[np.intp]:
    return np.argsort(-s, kind="mergesort")  # stable: ties keep their input order, deterministic


def _cumulative_dr(s: FloatArray, psi: FloatArray, n_points: int) -> FloatArray:
    sums = np.concatenate([[0.0], np.cumsum(psi[_ranking(s)])])
    return np.asarray(sums[_cut_points(s.size, n_points)] / s.size, dtype=np.float64)


def _cumulative_outcomes(
    s: FloatArray, t: npt.NDArray[np.bool_], y: FloatArray, n_points: int
) -> tuple[FloatArray, FloatArray]:
    order = _ranking(s)
    t, y = t[order], y[order]
    cut = _cut_points(s.size, n_points)
    n_t = np.concatenate([[0], np.cumsum(t)])[cut].astype(float)
    n_c = np.concatenate([[0], np.cumsum(~t)])[cut].astype(float)
    y_t = np.concatenate([[0.0], np.cumsum(np.where(t, y, 0.0))])[cut]
    y_c = np.concatenate([[0.0], np.cumsum(np.where(t, 0.0, y))])[cut]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Until both arms appear among the targeted units there is no contrast: the curve is 0 there.
        both = (n_t > 0) & (n_c > 0)
        uplift = np.where(both, (y_t / n_t - y_c / n_c) * (n_t + n_c), 0.0) / s.size
        qini = np.where(both, y_t - y_c * n_t / n_c, 0.0) / s.size
    return np.asarray(uplift, dtype=np.float64), np.asarray(qini, dtype=np.float64)


def _area(x: FloatArray, y: FloatArray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _finite(name: str, values: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numeric: {exc}") from None
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise InvalidInputError(f"{name} has {bad} missing or infinite value(s); drop or impute them first.")
    if arr.size < 2:
        raise InvalidInputError(f"{name} needs at least 2 units, got {arr.size}.")
    return arr


def _same_length(*arrays: npt.NDArray[Any]) -> None:
    lengths = [a.size for a in arrays]
    if len(set(lengths)) != 1:
        raise InvalidInputError(f"score, treatment/outcome or dr_scores differ in length: {lengths}.")
