"""LIME, on request: a local linear surrogate around one row, reproducible with a seed, with a
stability score (how well the top features agree when only the seed changes).

LIME samples perturbations at random, so two runs can rank features differently (RECIPES.md: with
5,000 samples the top five agree about 78 % of the time on average). Each explanation therefore
carries `stability`: the mean pairwise overlap (Jaccard) of the top-k feature sets over `seeds`
runs; 1.0 means every seed named the same features.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError
from keel.explain._codec import Codec

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


def _stability(tops: list[set[str]]) -> float:
    pairs = list(combinations(tops, 2))
    if not pairs:
        return 1.0
    return float(np.mean([len(a & b) / max(len(a | b), 1) for a, b in pairs]))


def lime_tabular(model: Any, row: pd.DataFrame, background: pd.DataFrame, *, target: Any = None, classes: list[Any] | None = None,
                 top: int = 5, seed: int = 0, seeds: int = 5, num_samples: int = 2000) -> LimeExplanation:  # fmt: skip
    """LIME for one row of a tabular model (any model with predict_proba, or predict for regressors)."""
    from lime.lime_tabular import LimeTabularExplainer

    if len(row) != 1:
        raise InvalidInputError(f"LIME explains one row at a time, got {len(row)}")
    columns = list(row.columns)
    codec = Codec(row, background)
    encode, decode, codes = codec.encode, codec.decode, codec.codes
    cat_idx = codec.categorical

    classifier = classes is not None
    index = 0
    if classifier:
        index = len(classes) - 1 if target is None else next((i for i, c in enumerate(classes) if str(c) == str(target)), -1)
        if index < 0:
            raise InvalidInputError(f"target {target!r} is not a class of the model; classes: {', '.join(map(str, classes))}")

    def predict(Z: np.ndarray) -> np.ndarray:
        frame = decode(Z)
        return np.asarray(model.predict_proba(frame)) if classifier else np.asarray(model.predict(frame), dtype=np.float64)

    train = encode(background)
    runs = []
    for k in range(seeds):
        explainer = LimeTabularExplainer(
            train, mode="classification" if classifier else "regression", feature_names=columns,
            categorical_features=cat_idx, categorical_names={i: list(codes[columns[i]]) for i in cat_idx},
            discretize_continuous=True, random_state=seed + k,
        )  # fmt: skip
        exp = explainer.explain_instance(encode(row)[0], predict, labels=(index,), num_features=len(columns), num_samples=num_samples)
        pairs = exp.as_map()[index] if classifier else exp.as_map()[next(iter(exp.as_map()))]
        weights = {columns[j]: float(w) for j, w in sorted(pairs, key=lambda p: -abs(p[1]))}
        intercept = float(exp.intercept[index] if classifier else next(iter(exp.intercept.values())))
        runs.append((weights, intercept, float(exp.score)))
    weights, intercept, score = runs[0]
    tops = [set(list(w)[:top]) for w, _, _ in runs]
    return LimeExplanation(weights, intercept, score, classes[index] if classifier else None, seed, _stability(tops),
                           tuple(list(weights)[:top]))  # fmt: skip


def lime_text(model: Any, text: str, *, classes: list[Any], target: Any = None, top: int = 10, seed: int = 0, seeds: int = 3,
              num_samples: int = 1000) -> LimeExplanation:  # fmt: skip
    """LIME for one document of a text classifier (a pipeline that takes raw strings)."""
    from lime.lime_text import LimeTextExplainer

    index = len(classes) - 1 if target is None else next((i for i, c in enumerate(classes) if str(c) == str(target)), -1)
    if index < 0:
        raise InvalidInputError(f"target {target!r} is not a class of the model; classes: {', '.join(map(str, classes))}")
    runs = []
    for k in range(seeds):
        exp = LimeTextExplainer(class_names=[str(c) for c in classes], random_state=seed + k).explain_instance(
            text, lambda docs: np.asarray(model.predict_proba(list(docs))), labels=(index,), num_features=top,
            num_samples=num_samples,
        )  # fmt: skip
        weights = {w: float(v) for w, v in sorted(exp.as_list(label=index), key=lambda p: -abs(p[1]))}
        runs.append((weights, float(exp.intercept[index]), float(exp.score)))
    weights, intercept, score = runs[0]
    tops = [set(list(w)[:top]) for w, _, _ in runs]
    return LimeExplanation(weights, intercept, score, classes[index], seed, _stability(tops), tuple(list(weights)[:top]))
