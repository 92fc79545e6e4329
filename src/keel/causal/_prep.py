"""Checked, copied arrays for the estimators, and nuisance-model fitting that fails loudly.

The frame is read once into fresh float arrays in the frame's column order (never set or hash
order), so estimators cannot mutate the caller's data and the same inputs give the same numbers
in every process.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keel.errors import InvalidInputError

__all__ = ["Data", "prepare", "fit_model", "predict_proba1", "POSITIVITY_EPS"]

# A propensity this close to 0 or 1 makes a weight of ~1e10: report it, never clip it silently.
POSITIVITY_EPS = 1e-10

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Data:
    treatment: str
    outcome: str
    covariates: tuple[str, ...]
    t: BoolArray
    y: FloatArray
    x: FloatArray

    def take(self, rows: npt.NDArray[np.intp]) -> Data:
        return Data(self.treatment, self.outcome, self.covariates, self.t[rows], self.y[rows], self.x[rows])


def prepare(frame: pd.DataFrame, treatment: str, outcome: str, covariates: Sequence[str]) -> Data:
    """Validate the columns and return copies; raises InvalidInputError naming the problem."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"Expected a pandas DataFrame, got {type(frame).__name__}.")
    if isinstance(covariates, str):
        raise InvalidInputError(f"covariates must be a list of column names, got the string {covariates!r}.")
    columns = [str(column) for column in frame.columns]
    wanted = [treatment, outcome, *covariates]
    missing = [name for name in dict.fromkeys(wanted) if name not in columns]
    if missing:
        raise InvalidInputError(f"Column(s) {missing} are not in the frame; columns: {columns}.")
    if treatment in covariates or outcome in covariates:
        raise InvalidInputError("The treatment and the outcome cannot also be covariates.")
    chosen = set(covariates)
    ordered = tuple(name for name in columns if name in chosen)  # frame order, not the caller's
    t = _binary_treatment(frame[treatment], treatment)
    y = _numeric(frame[outcome], outcome, "outcome")
    x = np.column_stack([_numeric(frame[name], name, "covariate") for name in ordered]) if ordered else None
    # With no covariates (a randomised design) the models see one constant column: intercept-only fits.
    return Data(treatment, outcome, ordered, t, y, x if x is not None else np.zeros((len(frame), 1)))


def _binary_treatment(column: pd.Series, name: str) -> BoolArray:
    if column.isna().any():
        raise InvalidInputError(
            f"Treatment {name!r} has {int(column.isna().sum())} missing value(s); drop or fill them."
        )
    values = sorted(pd.unique(column).tolist(), key=repr)
    if not set(values) <= {0, 1, True, False}:
        shown = values[:6]
        raise InvalidInputError(
            f"Treatment {name!r} is not binary (values {shown}{' ...' if len(values) > 6 else ''}); this estimator "
            "needs 0/1 or True/False. Recode it, e.g. frame[name] > threshold."
        )
    t = column.to_numpy(dtype=bool, copy=True)
    if t.all() or not t.any():
        raise InvalidInputError(
            f"Treatment {name!r} has no variation (every row is {int(t[0])}); an effect needs treated and "
            "untreated units."
        )
    return t


def _numeric(column: pd.Series, name: str, role: str) -> FloatArray:
    if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
        raise InvalidInputError(f"The {role} {name!r} has dtype {column.dtype}; encode it as numbers (one-hot).")
    values = column.to_numpy(dtype=float, copy=True, na_value=np.nan)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise InvalidInputError(
            f"The {role} {name!r} has {bad} missing or infinite value(s); drop or impute those rows first."
        )
    return values


def fit_model(model: Any, x: FloatArray, y: npt.NDArray[Any], *, role: str, seed: int) -> Any:
    """Fit a clone of `model` on standardised `x`; raise when it reports non-convergence."""
    estimator = clone(model)
    if "random_state" in estimator.get_params() and estimator.get_params()["random_state"] is None:
        estimator.set_params(random_state=seed)
    pipeline = make_pipeline(StandardScaler(), estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pipeline.fit(x, y)
    failed = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    if failed:
        raise InvalidInputError(
            f"The {role} model {type(estimator).__name__} did not converge on the standardised covariates "
            f"({failed[0].message}); raise its max_iter, regularise it, or pass a different model."
        )
    return pipeline


def predict_proba1(model: Any, x: FloatArray) -> FloatArray:
    return np.asarray(model.predict_proba(x)[:, 1], dtype=float)
