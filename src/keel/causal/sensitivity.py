"""Sensitivity to an unobserved confounder: how an estimate would move if a confounder we did not
measure explained a share of the residual variance of the treatment and of the outcome.

Cinelli & Hazlett (2020), "Making sense of sensitivity", section 4: for a regression (or a partially
linear) estimate with standard error `se` on `dof` residual degrees of freedom, a confounder with
partial R2 `r2_t` with the treatment and `r2_y` with the outcome biases the estimate by at most

    |bias| = se * sqrt(dof) * sqrt(r2_y * r2_t / (1 - r2_t))

and the adjusted standard error is se * sqrt((1 - r2_y) / (1 - r2_t)) * sqrt(dof / (dof - 1)).
The sweep reports the estimate moved towards zero by that bound (the harmful direction) over a grid
of both partial R2s, with the adjusted 95 % intervals, and the robustness values of the estimate
and of its interval limit. For AIPW or DML estimates the bound is the same formula applied to their
standard error: an approximation, said so in `method`.

Pure: numbers in, a frozen `Sensitivity` out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keel.causal.estimators import Estimate
from keel.causal.refute import robustness_value
from keel.errors import InvalidInputError

__all__ = ["GRID", "Sensitivity", "sensitivity_sweep"]

GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)  # partial R2 values swept on both axes
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Sensitivity:
    """The estimate adjusted for an unobserved confounder over a grid of partial R2s.

    `adjusted[i][j]`, `ci_low[i][j]`, `ci_high[i][j]`: for partial R2 `r2_treatment[i]` with the
    treatment and `r2_outcome[j]` with the outcome. `robustness_value`: the partial R2 (with both)
    that moves the estimate to 0; `robustness_value_ci`: the one that moves its 95 % limit to 0.
    `sign_flip_at`: the smallest grid cell (r2_treatment, r2_outcome), by their sum, whose adjusted
    interval covers 0, or None when none does.
    """

    estimator: str
    estimand: str
    estimate: float
    stderr: float
    dof: int
    r2_treatment: tuple[float, ...]
    r2_outcome: tuple[float, ...]
    adjusted: tuple[tuple[float, ...], ...]
    ci_low: tuple[tuple[float, ...], ...]
    ci_high: tuple[tuple[float, ...], ...]
    robustness_value: float
    robustness_value_ci: float
    sign_flip_at: tuple[float, float] | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists for tuples; a non-finite number as None)."""
        return {
            "estimator": self.estimator,
            "estimand": self.estimand,
            "estimate": _finite(self.estimate),
            "stderr": _finite(self.stderr),
            "dof": self.dof,
            "r2_treatment": list(self.r2_treatment),
            "r2_outcome": list(self.r2_outcome),
            "adjusted": [[_finite(v) for v in row] for row in self.adjusted],
            "ci_low": [[_finite(v) for v in row] for row in self.ci_low],
            "ci_high": [[_finite(v) for v in row] for row in self.ci_high],
            "robustness_value": _finite(self.robustness_value),
            "robustness_value_ci": _finite(self.robustness_value_ci),
            "sign_flip_at": None if self.sign_flip_at is None else list(self.sign_flip_at),
            "method": self.method,
        }


def sensitivity_sweep(
    estimate: Estimate, *, grid: Sequence[float] = GRID, grid_outcome: Sequence[float] | None = None
) -> Sensitivity:
    """The omitted-variable-bias sweep of `estimate` (see the module text) over `grid` (partial R2 with
    the treatment) and `grid_outcome` (with the outcome; default the same grid)."""
    r2_t = _grid(grid, "grid")
    r2_y = _grid(grid if grid_outcome is None else grid_outcome, "grid_outcome")
    value, se = float(estimate.value), float(estimate.stderr)
    if not (math.isfinite(value) and math.isfinite(se) and se > 0):
        raise InvalidInputError(
            f"The {estimate.estimator} estimate has no finite standard error ({se}); a sensitivity sweep needs one."
        )
    dof = max(int(estimate.n) - len(estimate.covariates) - 2, 2)
    direction = 1.0 if value >= 0 else -1.0  # the harmful confounder pulls the estimate towards zero
    adjusted, lows, highs = [], [], []
    flip: tuple[float, float] | None = None
    for a in r2_t:
        row, low, high = [], [], []
        for b in r2_y:
            bias = se * math.sqrt(dof) * math.sqrt(b * a / (1.0 - a))
            moved = value - direction * bias
            se_adj = se * math.sqrt((1.0 - b) / (1.0 - a)) * math.sqrt(dof / (dof - 1))
            row.append(moved)
            low.append(moved - _Z95 * se_adj)
            high.append(moved + _Z95 * se_adj)
            if low[-1] <= 0.0 <= high[-1] and (flip is None or a + b < sum(flip)):
                flip = (a, b)
        adjusted.append(tuple(row))
        lows.append(tuple(low))
        highs.append(tuple(high))
    t_stat = value / se
    method = "omitted-variable-bias bound (Cinelli & Hazlett 2020)"
    if estimate.estimator != "regression":
        method += f"; applied to the {estimate.estimator} standard error, an approximation outside regression"
    return Sensitivity(
        estimator=estimate.estimator,
        estimand=estimate.estimand,
        estimate=value,
        stderr=se,
        dof=dof,
        r2_treatment=r2_t,
        r2_outcome=r2_y,
        adjusted=tuple(adjusted),
        ci_low=tuple(lows),
        ci_high=tuple(highs),
        robustness_value=robustness_value(t_stat, dof),
        robustness_value_ci=robustness_value(t_stat, dof, alpha=0.05),
        sign_flip_at=flip,
        method=method,
    )


def _grid(values: Sequence[float], name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or any(not (0.0 <= v < 1.0) for v in out):
        raise InvalidInputError(f"{name} must be partial R2 values in [0, 1); got {list(values)}")
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
