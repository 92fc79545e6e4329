"""Pipelines of per-feature scalers, reduced to one affine map `x * scale + offset` so the C code never
scales: the linear and MLP generators fold it into their first weights (`W * scale`, `W @ offset + b`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.errors import InvalidInputError, NotFittedError

_SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler")


@dataclass(frozen=True)
class Unwrapped:
    estimator: Any  # the pipeline's last step (or the model itself)
    scale: np.ndarray | None  # per input feature; None when there was no scaler
    offset: np.ndarray | None
    steps: tuple[str, ...]  # the scalers folded, in order, for the build notes


def unwrap(model: Any) -> Unwrapped:
    """Split `model` into its final estimator and the folded affine map of the scalers before it."""
    if type(model).__name__ != "Pipeline":
        return Unwrapped(model, None, None, ())
    steps = list(model.steps)
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None
    folded: list[str] = []
    for step_name, step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        a, b = _scaler_affine(step_name, step)
        # Composition: the next scaler sees x*scale + offset, so (x*s + o)*a + b.
        scale, offset = (a, b) if scale is None or offset is None else (scale * a, offset * a + b)
        folded.append(f"{step_name} ({type(step).__name__})")
    return Unwrapped(steps[-1][1], scale, offset, tuple(folded))


def _scaler_affine(step_name: str, step: Any) -> tuple[np.ndarray, np.ndarray]:
    kind = type(step).__name__
    if kind not in _SCALERS:
        raise InvalidInputError(
            f"pipeline step {step_name!r} ({kind}) cannot be folded into C weights: only "
            f"{', '.join(_SCALERS)} may come before the model; fit the model without it, or "
            "apply that step before calling the C function"
        )
    if not hasattr(step, "n_features_in_"):
        raise NotFittedError(f"pipeline step {step_name!r} ({kind}) is not fitted; fit the pipeline first")
    n = int(step.n_features_in_)
    if kind == "StandardScaler":
        std = np.ones(n) if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
        mean = np.zeros(n) if step.mean_ is None else np.asarray(step.mean_, dtype=np.float64)
        return 1.0 / std, -mean / std
    if kind == "MinMaxScaler":
        if step.clip:
            raise InvalidInputError(
                f"pipeline step {step_name!r} is a MinMaxScaler(clip=True), which is not linear and "
                "cannot be folded into weights; refit it with clip=False"
            )
        return np.asarray(step.scale_, dtype=np.float64), np.asarray(step.min_, dtype=np.float64)
    return 1.0 / np.asarray(step.scale_, dtype=np.float64), np.zeros(n)


def fold_first(weight: np.ndarray, bias: np.ndarray, u: Unwrapped) -> tuple[np.ndarray, np.ndarray]:
    """Fold the affine map into a dense layer `x @ weight + bias` (weight shaped (n_in, n_out))."""
    if u.scale is None or u.offset is None:
        return weight, bias
    return weight * u.scale[:, None], bias + u.offset @ weight
