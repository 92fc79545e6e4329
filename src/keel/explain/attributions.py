"""Per-row feature attributions (SHAP values) for any fitted model. Values in, values out.

The method follows the model:

- LightGBM: Keel's own exact TreeSHAP (`treeshap.py`, compiled; the booster's `pred_contrib` for
  trees it refuses, such as categorical splits), in the raw (log-odds) space.
- XGBoost: the booster's own exact TreeSHAP (`pred_contribs`), in the raw (margin) space.
- scikit-learn decision trees, random forests and extra trees: Keel's own exact TreeSHAP, in the
  probability space (shap's TreeExplainer where it refuses, e.g. missing values in the input);
  gradient boosting and histogram gradient boosting: `shap.TreeExplainer`, exact, path-dependent,
  in the raw space.
- Linear models: exact interventional SHAP, `coef * (x - mean(background))`, in the raw space
  (log-odds for logistic regression).
- Anything else: `shap`'s permutation explainer over a background sample, in the probability (or
  prediction) space; categorical columns are masked as codes and decoded before the model sees them.

A scikit-learn Pipeline is explained at its last step, on the transformed features, and the
attributions of the columns a ColumnTransformer derived from one input column (one-hot blocks)
are summed back to that column, so every attribution names an input feature; additivity holds
(the sum of the attributions plus the base value is the output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError
from keel.explain._codec import Codec

__all__ = ["Explanation", "explain_model"]

_TREES = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
)
_LINEAR = (
    "LogisticRegression",
    "LinearRegression",
    "Ridge",
    "RidgeClassifier",
    "Lasso",
    "ElasticNet",
    "SGDClassifier",
    "SGDRegressor",
    "LinearSVC",
    "LinearSVR",
    "BayesianRidge",
    "HuberRegressor",
)


@dataclass(frozen=True)
class Explanation:
    """Attributions of `rows` rows: `values[i, j]` is feature j's push on row i's output."""

    features: tuple[str, ...]
    values: np.ndarray  # (rows, features)
    base_values: np.ndarray  # (rows,)
    outputs: np.ndarray  # (rows,): base + sum of values, the model output in `space`
    method: str
    space: str  # 'log-odds', 'margin', 'probability' or 'value'
    target: Any = None  # the class explained (classifiers)
    # text columns: (vocabulary, (rows, terms) attributions) whose sum is the column's attribution
    terms: dict[str, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)

    def words(self, i: int, column: str, text: str) -> list[tuple[str, float]]:
        """The tokens of `text` in order, each with its term's attribution in row i (0 for terms the
        model does not know), for highlighting."""
        import re

        vocabulary, values = self.terms[column]
        index = {t: j for j, t in enumerate(vocabulary)}
        return [
            (tok, float(values[i, index[tok.lower()]]) if tok.lower() in index else 0.0)
            for tok in re.findall(r"(?u)\b\w\w+\b", text)
        ]

    def row(self, i: int) -> dict[str, float]:
        return dict(zip(self.features, self.values[i].tolist(), strict=True))

    def importance(self) -> dict[str, float]:
        """Mean absolute attribution per feature, largest first."""
        mean = np.abs(self.values).mean(axis=0)
        order = np.argsort(-mean)
        return {self.features[j]: float(mean[j]) for j in order}


def _name(model: Any) -> str:
    return type(model).__name__


def _target_index(classes: list[Any] | None, target: Any) -> int:
    if not classes:
        return 0
    if target is None:
        return len(classes) - 1  # binary: the positive class; multiclass: the last one unless asked
    for i, c in enumerate(classes):
        if c == target or str(c) == str(target):
            return i
    raise InvalidInputError(f"target {target!r} is not a class of the model; classes: {', '.join(map(str, classes))}")


def explain_model(
    model: Any,
    X: pd.DataFrame,
    *,
    background: pd.DataFrame | None = None,
    target: Any = None,
    method: str = "auto",
    max_evals: int | None = None,
    seed: int = 0,
) -> Explanation:
    """Attributions for the rows of `X` (a DataFrame with the model's input columns)."""
    from sklearn.pipeline import Pipeline

    if method not in ("auto", "tree", "linear", "permutation"):
        raise InvalidInputError(f"method must be auto, tree, linear or permutation, got {method!r}")
    final: Any = model
    # Xt and background_t are what the final step sees: a pipeline's steps before it are applied.
    Xt: pd.DataFrame | np.ndarray = X
    background_t: pd.DataFrame | np.ndarray | None = background
    names, groups = list(X.columns), None
    if isinstance(model, Pipeline) and method != "permutation":
        final = model.steps[-1][1]
        if _kind(final) is not None:
            prep = model[:-1]
            Xt = _dense(prep.transform(X))
            names, groups = _groups(prep, list(X.columns), Xt.shape[1])
            background_t = None if background is None else _dense(prep.transform(background))
    kind = _kind(final) if method == "auto" else method
    found = getattr(final, "classes_", None)
    classes = [c.item() if hasattr(c, "item") else c for c in found] if found is not None and len(found) else None
    index = _target_index(classes, target)
    if kind == "tree":
        values, base, space, how = _tree(final, Xt, index, classes)
    elif kind == "linear":
        if background_t is None:
            raise InvalidInputError("linear attributions need a background sample (the training data)")
        values, base, space, how = _linear(final, Xt, background_t, index, classes)
    else:
        if background is None:
            raise InvalidInputError("model-agnostic attributions need a background sample (the training data)")
        values, base, space, how = _permutation(model, X, background, index, classes, max_evals, seed)
        names, groups = list(X.columns), None
    terms: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    if groups is not None:
        terms = _terms(model, groups, values, Xt)
        values = np.column_stack([values[:, cols].sum(axis=1) for cols in groups.values()])
        names = list(groups)
    outputs = base + values.sum(axis=1)
    return Explanation(tuple(names), values, base, outputs, how, space, classes[index] if classes else None, terms)


def _terms(
    model: Any, groups: dict[str, list[int]], values: np.ndarray, Xt: Any
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Per-term attributions of the text columns (a vectorizer's vocabulary), for word highlighting."""
    from sklearn.compose import ColumnTransformer

    ct = next((step for _, step in model.steps[:-1] if isinstance(step, ColumnTransformer)), None)
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    if ct is None:
        return out
    for name, trans, columns in ct.transformers_:
        last = trans.steps[-1][1] if hasattr(trans, "steps") else trans
        if hasattr(last, "vocabulary_") and isinstance(columns, str) and columns in groups:
            vocabulary = tuple(str(t) for t in last.get_feature_names_out())
            cols = groups[columns]
            if len(cols) == len(vocabulary):
                out[columns] = (vocabulary, values[:, cols])
    return out


def _lightgbm_booster(model: Any) -> Any:
    """The LightGBM booster of an LGBM estimator, a Booster, or a registry-loaded LightGBM model."""
    for candidate in (getattr(model, "booster_", None), getattr(model, "booster", None), model):
        if candidate is not None and type(candidate).__module__.startswith("lightgbm"):
            return candidate
    return None


def kind_of(model: Any) -> str | None:
    """'tree' or 'linear' when a model (or a pipeline's last step) is explained exactly, else None."""
    from sklearn.pipeline import Pipeline

    return _kind(model.steps[-1][1] if isinstance(model, Pipeline) else model)


def _kind(model: Any) -> str | None:
    name = _name(model)
    module = type(model).__module__
    if module.startswith(("lightgbm", "xgboost")) or name in _TREES or _lightgbm_booster(model) is not None:
        return "tree"
    if name in _LINEAR:
        return "linear"
    return None


def _dense(X: Any) -> np.ndarray:
    if hasattr(X, "toarray"):
        X = X.toarray()
    return np.asarray(X, dtype=np.float64)


def _tree(model: Any, X: Any, index: int, classes: list[Any] | None) -> tuple[np.ndarray, np.ndarray, str, str]:
    module = type(model).__module__
    n = len(X)
    booster = _lightgbm_booster(model)
    if booster is not None:
        keel = _keel_tree(booster, X, index, classes, "log-odds" if classes else "value")
        if keel is not None:
            return keel
        contrib = np.asarray(
            booster.predict(
                np.asarray(X, dtype=np.float64) if not isinstance(X, pd.DataFrame) else X, pred_contrib=True
            )
        )
        k = contrib.shape[1] // (np.shape(X)[1] + 1)
        block = contrib.reshape(n, k, -1)[:, index if k > 1 else 0, :]
        sign = _binary_sign(classes, index, k)
        return (
            sign * block[:, :-1],
            sign * block[:, -1],
            "log-odds" if classes else "value",
            "tree (LightGBM exact TreeSHAP)",
        )
    if module.startswith("xgboost"):
        import xgboost

        booster = model.get_booster() if hasattr(model, "get_booster") else model
        matrix = xgboost.DMatrix(X)
        # XGBoost computes contributions and margins in float32: their float32 sums miss the
        # margin by ~5e-6. Take both in float64 and let the base value absorb the rounding
        # (it moves by that much from row to row), so base + sum(values) is the model's output.
        contrib = np.asarray(booster.predict(matrix, pred_contribs=True), dtype=np.float64)
        margin = np.asarray(booster.predict(matrix, output_margin=True), dtype=np.float64)
        block = contrib[:, index, :] if contrib.ndim == 3 else contrib
        output = margin[:, index] if margin.ndim == 2 else margin
        sign = _binary_sign(classes, index, 1 if contrib.ndim == 2 else contrib.shape[1])
        values = sign * block[:, :-1]
        return (
            values,
            sign * output - values.sum(axis=1),
            "margin" if classes else "value",
            "tree (XGBoost exact TreeSHAP)",
        )
    if _name(model).startswith(("DecisionTree", "RandomForest", "ExtraTree")):  # not boosting
        keel = _keel_tree(model, X, index, classes, "probability" if classes else "value")
        if keel is not None:
            return keel
    import shap

    result = shap.TreeExplainer(model)(
        np.asarray(X, dtype=np.float64) if not isinstance(X, pd.DataFrame) else X, check_additivity=False
    )
    values, base = np.asarray(result.values), np.asarray(result.base_values)
    if values.ndim == 3:  # (rows, features, outputs): one per class
        values, base = values[:, :, index], base[:, index] if base.ndim == 2 else base
    elif classes:  # one output for two classes: the positive class's log-odds
        sign = _binary_sign(classes, index, 1)
        values, base = sign * values, sign * base
    space = "value" if not classes else ("log-odds" if "GradientBoosting" in _name(model) else "probability")
    return values, np.broadcast_to(base, (n,)).astype(np.float64), space, "tree (shap TreeExplainer, exact)"


def _keel_tree(
    model: Any, X: Any, index: int, classes: list[Any] | None, space: str
) -> tuple[np.ndarray, np.ndarray, str, str] | None:
    """Keel's own exact TreeSHAP (`treeshap.py`: pred_contrib's and shap's numbers to 1e-14, in a
    fraction of their CPU time) for LightGBM and scikit-learn trees and forests, or None for trees
    it refuses (categorical splits, linear trees, missing values for scikit-learn, ...) or without
    numba (it comes with shap, not with lightgbm): then `pred_contrib` or shap answers."""
    from keel.explain.treeshap import UnsupportedTreeError, tree_shap

    try:
        values, base = tree_shap(model, X)
    except (UnsupportedTreeError, ImportError):
        return None
    k = values.shape[1]
    sign = _binary_sign(classes, index, k)
    column = index if k > 1 else 0
    return (sign * values[:, column, :], np.full(len(values), sign * base[column]), space, "tree (Keel exact TreeSHAP)")


def _binary_sign(classes: list[Any] | None, index: int, outputs: int) -> float:
    """A binary model's single output is the positive class's: class 0 is its negation."""
    return -1.0 if classes and len(classes) == 2 and outputs == 1 and index == 0 else 1.0


def _linear(
    model: Any, X: Any, background: Any, index: int, classes: list[Any] | None
) -> tuple[np.ndarray, np.ndarray, str, str]:
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(getattr(model, "intercept_", 0.0), dtype=np.float64))
    row = 0 if coef.shape[0] == 1 else index
    w, b = coef[row], intercept[row if intercept.size > 1 else 0]
    sign = (
        -1.0 if coef.shape[0] == 1 and classes and index == 0 and len(classes) == 2 else 1.0
    )  # binary: class 0 is -margin
    Xa, mean = np.asarray(X, dtype=np.float64), np.asarray(background, dtype=np.float64).mean(axis=0)
    values = sign * w * (Xa - mean)
    base = np.full(len(Xa), sign * (float(w @ mean) + b))
    return values, base, "log-odds" if classes else "value", "linear (exact interventional SHAP)"


def _permutation(
    model: Any,
    X: pd.DataFrame,
    background: pd.DataFrame,
    index: int,
    classes: list[Any] | None,
    max_evals: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, str, str]:
    import shap

    codec = Codec(X, background)
    decode, encode = codec.decode, codec.encode

    if classes:

        def f(Z: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_proba(decode(Z)))[:, index]
    else:

        def f(Z: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict(decode(Z)), dtype=np.float64)

    bg = encode(background)
    explainer = shap.PermutationExplainer(f, shap.maskers.Independent(bg, max_samples=len(bg)), seed=seed)
    evals = max_evals or max(2 * X.shape[1] + 1, 500)
    result = explainer(encode(X), max_evals=evals, silent=True)
    return (
        np.asarray(result.values),
        np.asarray(result.base_values, dtype=np.float64),
        "probability" if classes else "value",
        "permutation (shap)",
    )


def _groups(prep: Any, inputs: list[str], width: int) -> tuple[list[str], dict[str, list[int]] | None]:
    """Map the transformed columns back to the input columns they came from."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    ct = prep.steps[-1][1] if isinstance(prep, Pipeline) and len(prep.steps) == 1 else prep
    if not isinstance(ct, ColumnTransformer):
        if width == len(inputs):
            return inputs, None
        return [f"f{i}" for i in range(width)], None
    groups: dict[str, list[int]] = {}
    for name, trans, columns in ct.transformers_:
        if trans == "drop" or name not in ct.output_indices_:
            continue
        sl = ct.output_indices_[name]
        cols = [
            inputs[c] if isinstance(c, int | np.integer) else c
            for c in (columns if isinstance(columns, list | tuple | np.ndarray) else [columns])
        ]
        out = list(range(sl.start, sl.stop))
        if not out:
            continue
        sizes = _widths(trans, cols, len(out))
        start = 0
        for col, size in zip(cols, sizes, strict=True):
            groups.setdefault(col, []).extend(out[start : start + size])
            start += size
    ordered = {c: groups[c] for c in inputs if c in groups}
    return list(ordered), ordered


def _widths(trans: Any, cols: list[str], width: int) -> list[int]:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    last = trans.steps[-1][1] if isinstance(trans, Pipeline) else trans
    if width == len(cols):
        return [1] * len(cols)
    if hasattr(last, "vocabulary_") and len(cols) == 1:  # a text vectorizer: every term comes from the one text column
        return [width]
    if isinstance(last, OneHotEncoder):
        sizes = [len(c) for c in last.categories_]
        drops = getattr(last, "drop_idx_", None)
        if drops is not None:
            sizes = [s - (0 if d is None else 1) for s, d in zip(sizes, drops, strict=True)]
        if sum(sizes) == width:
            return sizes
    raise InvalidInputError(
        f"cannot map the {width} columns made from {', '.join(cols)} back to them; explain with method='permutation'"
    )
