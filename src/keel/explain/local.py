"""LIME, on request: a local linear surrogate around one row, reproducible with a seed, with a
stability score (how well the top features agree when only the seed changes).

LIME samples perturbations at random, so two runs can rank features differently (RECIPES.md: with
5,000 samples the top five agree about 78 % of the time on average). Each explanation therefore
carries `stability`: the mean pairwise overlap (Jaccard) of the top-k feature sets over `seeds`
runs; 1.0 means every seed named the same features. Tabular LIME is Keel's own, vectorised (lime's
sampling distribution, drawn as a scrambled Sobol' design; its kernel and ridge surrogate), and grows
its sample until the top-k set is stable; its
`stability` is estimated from the surrogate's sampling covariance. Text LIME runs the `lime` package
`seeds` times at a fixed sample size.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError

__all__ = ["LimeExplanation", "lime_tabular", "lime_text"]


@dataclass(frozen=True)
class LimeExplanation:
    weights: dict[str, float]  # feature (or word) -> local linear weight, largest |weight| first
    intercept: float
    score: float  # R2 of the local surrogate
    target: Any
    seed: int
    stability: float  # mean pairwise Jaccard overlap of the top-k sets over the seeds
    top: tuple[str, ...]
    samples: int = 0  # perturbations the surrogate was fitted on (tabular: grown until the top-k set is stable)
    converged: bool | None = None  # tabular: the top-k set was stable before the cap; text: None (fixed sample)


def _stability(tops: list[set[str]]) -> float:
    pairs = list(combinations(tops, 2))
    if not pairs:
        return 1.0
    return float(np.mean([len(a & b) / max(len(a | b), 1) for a, b in pairs]))


# Adaptive sample size. The top-k set is what users read, and its run-to-run noise falls as 1/sqrt(n);
# how many samples it needs depends on the row: where the k-th and (k+1)-th weights are far apart ~1,000
# do, where they are close lime's fixed 5,000 leave them swapping places from seed to seed. So we draw
# rounds (num_samples, then triple the total each round, up to max_samples), refit, and stop once two
# runs at this size would name the same top-k set with an expected Jaccard >= STOP_STABILITY
# (estimated from the fit, no model calls). Each round is a model call with a fixed cost (~8 ms for a
# scikit-learn pipeline), so few large rounds beat many small ones. The cap is low on purpose: the rows
# that reach it are near ties that no sample size separates (on credit_data 16,000 samples left them
# as unstable as 6,000), and a higher cap spent most of the time on them. Measured on credit_data
# (bench/explain.py --only-lime, seeds 0..4): 0.95-0.96 mean top-5 Jaccard with ~3,800 samples a run;
# 0.85 per run is enough because a run stops at the first size that clears it and the rest end above.
STOP_STABILITY = 0.85
MAX_SAMPLES = 6144
GROWTH = 3.0
_STABILITY_DRAWS = 256


@dataclass(frozen=True)
class _Perturber:
    """LIME's tabular sampling, vectorised. Each column independently takes the value of a random
    background row (so bins and categories come with their training frequencies, as lime samples
    them; values within a bin are the background's rather than lime's truncated normal); the
    interpretable feature is 1 when the value falls in the explained row's quartile bin (numeric;
    missing values are a bin of their own) or equals its category.

    The picks come from a scrambled Sobol' sequence rather than independent draws: per column, one
    coordinate decides "same bin or not" (with the background's share) and a second which row, in
    value order, within that side. Every perturbation still has lime's distribution (so the
    surrogate estimates the same thing), but the sample covers the bins and the values within them
    evenly; on credit_data this halves the variance of the weights, mostly from the within-bin values."""

    same: np.ndarray  # (rows, features) bool: the background value is in the explained row's bin
    sides: tuple[tuple[np.ndarray, np.ndarray], ...]  # per column: (same-bin rows, other rows), each in value order

    @classmethod
    def of(cls, pool: pd.DataFrame) -> _Perturber:
        """From the background's rows followed by the explained row (the last row of `pool`)."""
        same = np.empty((len(pool) - 1, pool.shape[1]), dtype=bool)
        sides = []
        for j, c in enumerate(pool.columns):
            if pd.api.types.is_numeric_dtype(pool[c]):
                values = pool[c].to_numpy(dtype=np.float64, na_value=np.nan)
                col, v = values[:-1], values[-1]
                if np.isnan(v):
                    same[:, j] = np.isnan(col)
                else:
                    present = col[~np.isnan(col)]
                    edges = np.unique(np.percentile(present, [25, 50, 75])) if len(present) else np.array([])
                    same[:, j] = ~np.isnan(col) & (np.searchsorted(edges, col) == np.searchsorted(edges, v))
            else:  # categories as text, so a missing category is one of them (as in the codec)
                _, values = np.unique(pool[c].astype(str).to_numpy(), return_inverse=True)
                col = values[:-1]
                same[:, j] = col == values[-1]
            order = np.argsort(col, kind="stable")  # NaN last
            sides.append((order[same[order, j]], order[~same[order, j]]))
        return cls(same, tuple(sides))

    def draw(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Perturbations from points u in [0, 1)^(2 features): (background row per cell, interpretable 0/1 features)."""
        rows, d = self.same.shape
        pick = np.empty((len(u), d), dtype=np.int64)
        for j, (inside, outside) in enumerate(self.sides):
            z = u[:, j] < len(inside) / rows
            for side, mask in ((inside, z), (outside, ~z)):
                if len(side):
                    pick[mask, j] = side[np.minimum((u[mask, d + j] * len(side)).astype(np.int64), len(side) - 1)]
        return pick, self.same[pick, np.arange(d)].astype(np.float64)


def _surrogate(
    Z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float = 1.0
) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Weighted ridge (lime's Ridge(alpha=1)): coefficients, intercept, weighted R2 and the
    coefficients' heteroscedasticity-robust (sandwich) covariance, for the stopping rule."""
    sw = w / w.sum()
    zm, ym = sw @ Z, float(sw @ y)
    Zc, yc = Z - zm, y - ym
    Zw = Zc * w[:, None]
    Ainv = np.linalg.inv(Zw.T @ Zc + alpha * np.eye(Z.shape[1]))
    beta = Ainv @ (Zw.T @ yc)
    r = yc - Zc @ beta
    S = Zw * r[:, None]
    total = float(w @ yc**2)
    score = 1.0 - float(w @ r**2) / total if total > 0 else 1.0
    return beta, ym - float(zm @ beta), score, Ainv @ (S.T @ S) @ Ainv


def _estimated_stability(beta: np.ndarray, cov: np.ndarray, top: int, rng: np.random.Generator) -> float:
    """Expected top-k Jaccard between two runs that differ only in their seed, from the coefficients'
    sampling distribution (normal, sandwich covariance): no model calls."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)  # clipped: rounding can leave tiny negative eigenvalues
    draws = (
        beta + rng.standard_normal((2 * _STABILITY_DRAWS, len(beta))) @ (vectors * np.sqrt(np.clip(values, 0, None))).T
    )
    tops = np.argsort(-np.abs(draws), axis=1, kind="stable")[:, :top]
    member = np.zeros(draws.shape, dtype=bool)
    np.put_along_axis(member, tops, True, axis=1)
    a, b = member[0::2], member[1::2]
    return float(np.mean((a & b).sum(1) / np.maximum((a | b).sum(1), 1)))


def lime_tabular(
    model: Any,
    row: pd.DataFrame,
    background: pd.DataFrame,
    *,
    target: Any = None,
    classes: list[Any] | None = None,
    top: int = 5,
    seed: int = 0,
    seeds: int = 5,
    num_samples: int = 1024,
    max_samples: int = MAX_SAMPLES,
) -> LimeExplanation:
    """LIME for one row of a tabular model (any model with predict_proba, or predict for regressors).

    Samples are drawn in rounds, `num_samples` first, then triple the total each round up to
    `max_samples`, until the top-k set is stable (`samples` and `converged` in the result). `stability` estimates the mean
    top-k Jaccard over `seeds` runs that differ only in their seed (1.0 for one), from the
    surrogate's sampling covariance rather than by rerunning the model."""
    if len(row) != 1:
        raise InvalidInputError(f"LIME explains one row at a time, got {len(row)}")
    if num_samples < 100 or max_samples < num_samples:
        raise InvalidInputError(f"num_samples must be >= 100 and <= max_samples, got {num_samples} and {max_samples}")
    columns = list(row.columns)
    index = _class_index(classes, target)
    # Perturbations are built from the original cells (the background's rows, then the row itself),
    # taken column by column with their dtypes: no decoding of codes per round (a third of the time
    # outside the model before), and the model sees categories and integers exactly as trained.
    pool = pd.concat([background[columns], row], ignore_index=True)
    sampler = _Perturber.of(pool)
    cells = [pool[c].array for c in columns]
    # Kernel: the square root of lime's exp(-d^2 / width^2), d^2 = features moved out of the row's bin,
    # width lime's 0.75 sqrt(features).
    c = 1.0 / (2 * (0.75 * np.sqrt(len(columns))) ** 2)

    def predict(pick: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame({c: cells[j].take(pick[:, j]) for j, c in enumerate(columns)}, copy=False)
        if classes is not None:
            return np.asarray(model.predict_proba(frame), dtype=np.float64)[:, index]
        return np.asarray(model.predict(frame), dtype=np.float64).ravel()

    # scipy comes with scikit-learn; imported here, on the first LIME request, not with keel.explain
    from scipy.stats import qmc

    sobol = qmc.Sobol(2 * len(columns), scramble=True, rng=np.random.default_rng(seed))
    k = min(top, len(columns))
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    n, step = 0, num_samples
    while True:
        with (
            warnings.catch_warnings()
        ):  # any prefix of a scrambled Sobol' sequence is unbiased; powers of 2 balance best
            warnings.filterwarnings("ignore", "The balance properties", UserWarning)
            u = sobol.random(step)
        pick, Z = sampler.draw(u)
        if n == 0:  # lime's first sample is the row itself
            pick[0], Z[0] = len(pool) - 1, 1.0
        parts.append((Z, predict(pick)))
        n += step
        Zs, ys = (np.concatenate(p) for p in zip(*parts, strict=True))
        beta, intercept, score, cov = _surrogate(Zs, ys, np.exp(-c * (1.0 - Zs).sum(1)))
        stability = _estimated_stability(beta, cov, k, np.random.default_rng([seed, n]))
        converged = stability >= STOP_STABILITY
        if converged or n >= max_samples:
            break
        step = min(int(n * (GROWTH - 1)), max_samples - n)
    order = np.argsort(-np.abs(beta), kind="stable")
    weights = {columns[j]: float(beta[j]) for j in order}
    return LimeExplanation(
        weights,
        intercept,
        score,
        classes[index] if classes is not None else None,
        seed,
        1.0 if seeds <= 1 else stability,
        tuple(list(weights)[:top]),
        n,
        converged,
    )


def _class_index(classes: list[Any] | None, target: Any) -> int:
    if classes is None:
        return 0
    index = (
        len(classes) - 1 if target is None else next((i for i, c in enumerate(classes) if str(c) == str(target)), -1)
    )
    if index < 0:
        raise InvalidInputError(
            f"target {target!r} is not a class of the model; classes: {', '.join(map(str, classes))}"
        )
    return index


def lime_text(
    model: Any,
    text: str,
    *,
    classes: list[Any],
    target: Any = None,
    top: int = 10,
    seed: int = 0,
    seeds: int = 3,
    num_samples: int = 1000,
) -> LimeExplanation:
    """LIME for one document of a text classifier (a pipeline that takes raw strings)."""
    from lime.lime_text import LimeTextExplainer

    index = _class_index(classes, target)
    runs = []
    for k in range(seeds):
        exp = LimeTextExplainer(class_names=[str(c) for c in classes], random_state=seed + k).explain_instance(
            text,
            lambda docs: np.asarray(model.predict_proba(list(docs))),
            labels=(index,),
            num_features=top,
            num_samples=num_samples,
        )
        weights = {w: float(v) for w, v in sorted(exp.as_list(label=index), key=lambda p: -abs(p[1]))}
        runs.append((weights, float(exp.intercept[index]), float(exp.score)))
    weights, intercept, score = runs[0]
    tops = [set(list(w)[:top]) for w, _, _ in runs]
    return LimeExplanation(
        weights, intercept, score, classes[index], seed, _stability(tops), tuple(list(weights)[:top]), num_samples
    )
