"""A bootstrap interval computed in chunks, so that a job can send each chunk to its executor (a Ray
task each, with KEEL_EXECUTOR=ray) and report progress as chunks finish.

Resample `b` draws its rows from its own stream `default_rng([seed, b])`, stratified by arm: the
values do not depend on how the resamples are split into chunks, so the interval is the same on one
core or on a cluster. Every resample refits every model of the estimator (no cached propensity).

Pure: a frame in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from keel.causal._prep import Data, prepare
from keel.causal.estimators import (
    ESTIMATORS,
    _check_estimand,
    _default_propensity,
    _ipw_value,
    _regression_value,
    aipw,
    dml,
)
from keel.errors import InvalidInputError

__all__ = ["BootstrapInterval", "bootstrap_chunk", "bootstrap_interval", "chunks"]


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap 95 % interval of one estimator's effect."""

    estimator: str
    estimand: str
    value: float  # on the full data
    stderr: float  # the standard deviation of the resampled values
    ci_low: float
    ci_high: float
    n_boot: int
    seed: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "estimand": self.estimand,
            "value": self.value,
            "stderr": self.stderr,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "method": self.method,
        }


def chunks(n_boot: int, parts: int) -> list[tuple[int, int]]:
    """(start, count) of each chunk: `n_boot` resamples cut into at most `parts` near-equal chunks."""
    if n_boot < 20:
        raise InvalidInputError(
            f"n_boot={n_boot} is too few resamples for an interval; use at least 20 (200 is usual)."
        )
    parts = max(1, min(int(parts), n_boot))
    edges = np.linspace(0, n_boot, parts + 1).astype(int)
    return [(int(a), int(b - a)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def point_value(data: Data, estimator: str, estimand: str, seed: int) -> float:
    """The estimator's effect on prepared data (no interval)."""
    target = _check_estimand(estimand)
    if estimator == "regression":
        return _regression_value(data, LinearRegression(), target, seed)
    if estimator == "ipw":
        return _ipw_value(data, _default_propensity(), target, None, seed)
    frame = pd.DataFrame(data.x, columns=list(data.covariates))
    frame[data.treatment], frame[data.outcome] = data.t.astype(int), data.y
    fit = aipw if estimator == "aipw" else dml
    return float(fit(frame, data.treatment, data.outcome, list(data.covariates), estimand=target, seed=seed).value)


def bootstrap_chunk(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    *,
    estimator: str,
    estimand: str,
    seed: int,
    start: int,
    count: int,
) -> list[float]:
    """The estimates on resamples start .. start + count - 1 (each from its own seeded stream)."""
    if estimator not in ESTIMATORS:
        raise InvalidInputError(f"Unknown estimator {estimator!r}; choose from {list(ESTIMATORS)}.")
    data = prepare(frame, treatment, outcome, covariates)
    treated, control = np.flatnonzero(data.t), np.flatnonzero(~data.t)
    values = []
    for b in range(start, start + count):
        rng = np.random.default_rng([seed, b])
        rows = np.concatenate([rng.choice(treated, treated.size), rng.choice(control, control.size)])
        values.append(point_value(data.take(rows), estimator, estimand, seed))
    return values


def bootstrap_interval(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    values: Sequence[float],
    *,
    estimator: str,
    estimand: str,
    seed: int,
) -> BootstrapInterval:
    """The interval from every chunk's `values` (in resample order), around the full-data estimate."""
    if len(values) < 20:
        raise InvalidInputError(f"{len(values)} resamples are too few for an interval; use at least 20.")
    data = prepare(frame, treatment, outcome, covariates)
    array = np.asarray(values, dtype=float)
    low, high = np.quantile(array, [0.025, 0.975])
    return BootstrapInterval(
        estimator=estimator,
        estimand=estimand,
        value=point_value(data, estimator, estimand, seed),
        stderr=float(array.std(ddof=1)),
        ci_low=float(low),
        ci_high=float(high),
        n_boot=int(array.size),
        seed=seed,
        method=f"percentile bootstrap, {array.size} resamples stratified by arm, every model refitted",
    )
