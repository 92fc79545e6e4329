"""Training a project's model: split, build, fit, evaluate. Values in, values out: the caller
loads the data and records the results.

`build(project, X)` makes the unfitted estimator (the class with its params, behind automatic
preprocessing unless `preprocess: none`); an `entry_point` recipe is called as
`recipe(X_train, y_train, params)` and returns a fitted model. `evaluate` scores any model with
`predict` (and `predict_proba`) on a holdout with the monitoring package's metric definitions, so
a gate and a monitor measure the same thing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError
from keel.retraining.project import Project, ProjectError, resolve

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["split", "features_target", "fit", "evaluate", "output_kind", "resolve"]


def features_target(
    project: Project, frame: pd.DataFrame, features: tuple[str, ...] | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """The features and target from `frame` (rows without a target dropped): `features`, else the
    project's declared ones, else every column but the target."""
    data = project.data
    if data.target not in frame.columns:
        raise InvalidInputError(
            f"{project.source}: data.target: {data.target!r} is not a column of the dataset; columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    chosen = features or data.features
    columns: list[str] = list(chosen) if chosen else [c for c in frame.columns if c != data.target]
    missing = [f for f in columns if f not in frame.columns]
    if missing:
        raise InvalidInputError(f"{project.source}: data.features: not in the dataset: {', '.join(missing)}")
    labelled = frame[frame[data.target].notna()]
    return labelled[columns], labelled[data.target]


def split(
    project: Project, frame: pd.DataFrame, features: tuple[str, ...] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Features and target of `frame`, split at random into train and holdout as the project says."""
    from sklearn.model_selection import train_test_split

    data = project.data
    X, y = features_target(project, frame, features)
    if len(X) < 10:
        raise InvalidInputError(f"{project.source}: data.dataset: only {len(X)} rows with a target; need at least 10")
    stratify = None
    if data.split.stratify and _is_categorical(y) and y.value_counts().min() >= 2:
        stratify = y
    return train_test_split(X, y, test_size=data.split.test_fraction, random_state=data.split.seed, stratify=stratify)


def _is_categorical(y: pd.Series) -> bool:
    import pandas as pd

    return not pd.api.types.is_float_dtype(y) or y.nunique() <= 20


def fit(project: Project, X: pd.DataFrame, y: pd.Series) -> Any:
    """The project's model, fitted on X, y."""
    est = project.estimator
    if est.entry_point:
        recipe = resolve(est.entry_point, "estimator.entry_point")
        model = recipe(X, y, dict(est.params))
        if not hasattr(model, "predict"):
            raise ProjectError(
                f"{project.source}: estimator.entry_point {est.entry_point!r} returned {type(model).__name__}, "
                "which has no predict(); return a fitted model"
            )
        return model
    assert est.cls is not None
    cls = resolve(est.cls, "estimator.class")
    try:
        model = cls(**est.params)
    except TypeError as exc:
        raise ProjectError(f"{project.source}: estimator.params: {exc}") from None
    if est.preprocess == "auto":
        model = _with_preprocessing(model, X)
    return model.fit(X, y)


def _with_preprocessing(model: Any, X: pd.DataFrame) -> Any:
    """Median-impute numbers, one-hot encode everything else (unknown categories ignored)."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    other = [c for c in X.columns if c not in numeric]
    parts = []
    if numeric:
        parts.append(("num", SimpleImputer(strategy="median"), numeric))
    if other:
        parts.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore", sparse_output=False)
                ),
                other,
            )
        )
    return make_pipeline(ColumnTransformer(parts), model)


def output_kind(model: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model) or (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        return "classification"
    if is_regressor(model):
        return "regression"
    return "regression" if not hasattr(model, "predict_proba") else "classification"


def evaluate(model: Any, X: pd.DataFrame, y: pd.Series, metrics: tuple[str, ...], kind: str) -> dict[str, float]:
    """The project's metrics of `model` on the holdout X, y (NaN-free: a metric that cannot be
    computed, such as ROC AUC on one class, is left out)."""
    import numpy as np

    from keel.monitoring.stats import performance

    if kind == "classification":
        classes = list(getattr(model, "classes", None) or getattr(model, "classes_", []))
        proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
        pred = model.predict(X)
        y_true = np.asarray(y)
        if classes and not isinstance(classes[0], str) and y_true.dtype == object:
            y_true = y_true.astype(type(classes[0]))
        scores = performance("classification", y_true, np.asarray(pred), proba=proba, classes=classes or None)
    else:
        scores = performance("regression", np.asarray(y, dtype=float), np.asarray(model.predict(X), dtype=float))
    return {m: float(scores[m]) for m in metrics if m in scores and math.isfinite(scores[m])}
