"""Model performance on labelled traffic, and multivariate drift as a classification problem."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError
from keel.monitoring._drift import column_kind, numeric_array

_CLASSIFICATION = {"classification", "classifier", "binary", "multiclass"}
_REGRESSION = {"regression", "regressor"}
_ECE_BINS = 10
_MAX_CATEGORIES = 250  # HistGradientBoosting takes at most 255 categories per feature


def performance(kind: str, y_true: Any, y_pred: Any, *, proba: Any = None, classes: Any = None) -> dict[str, float]:
    """Metrics of predictions against true labels (scikit-learn's definitions).

    Classifiers: accuracy and f1 (binary: positive class `classes[1]`; else macro), and with
    `proba` (columns in the order of `classes`) roc_auc (binary, or macro one-vs-rest; NaN when
    the labels hold one class only), log_loss and ece (expected calibration error over 10
    equal-width bins: of the positive-class probability when binary, else of the top label).
    Regressors: mae, rmse, r2 (NaN below two rows).

    >>> performance("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["mae"]
    0.3333333333333333
    """
    from sklearn import metrics

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or y_true.size == 0:
        raise InvalidInputError(
            f"y_true and y_pred must be 1-d, non-empty and of one length; got {y_true.shape} and {y_pred.shape}"
        )
    if kind in _REGRESSION:
        t, p = y_true.astype(np.float64), y_pred.astype(np.float64)
        mse = float(np.mean((t - p) ** 2))
        return {
            "mae": float(metrics.mean_absolute_error(t, p)),
            "rmse": math.sqrt(mse),
            "r2": float(metrics.r2_score(t, p)) if t.size >= 2 else math.nan,
        }
    if kind not in _CLASSIFICATION:
        raise InvalidInputError(f"kind must be 'classification' or 'regression', got {kind!r}")

    labels = list(classes) if classes is not None else sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    out = {"accuracy": float(metrics.accuracy_score(y_true, y_pred))}
    if len(labels) == 2:
        out["f1"] = float(metrics.f1_score(y_true, y_pred, pos_label=labels[1], average="binary", zero_division=0))
    else:
        out["f1"] = float(metrics.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    if proba is None:
        return out
    scores = np.asarray(proba, dtype=np.float64)
    if scores.ndim == 1 and len(labels) == 2:
        scores = np.column_stack([1.0 - scores, scores])
    if scores.ndim != 2 or scores.shape != (y_true.size, len(labels)):
        raise InvalidInputError(
            f"proba must have shape (rows, classes) = ({y_true.size}, {len(labels)}); got {scores.shape}"
        )
    onehot = np.column_stack([y_true == label for label in labels])  # (rows, classes)
    out["roc_auc"] = _roc_auc(onehot, scores)
    out["log_loss"] = float(metrics.log_loss(y_true, scores, labels=labels))
    if len(labels) == 2:
        out["ece"] = _ece(scores[:, 1], onehot[:, 1])
    else:
        out["ece"] = _ece(scores.max(axis=1), onehot[np.arange(y_true.size), scores.argmax(axis=1)])
    return out


def _roc_auc(onehot: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if onehot.shape[1] == 2:
        positives = onehot[:, 1]
        return float(roc_auc_score(positives, scores[:, 1])) if 0 < positives.sum() < positives.size else math.nan
    # Macro one-vs-rest over the classes the labels contain (scikit-learn's 'ovr' + 'macro' when
    # every class is present; it refuses otherwise, a live window often lacks a rare class).
    per_class = [
        roc_auc_score(onehot[:, k], scores[:, k])
        for k in range(onehot.shape[1])
        if 0 < onehot[:, k].sum() < onehot.shape[0]
    ]
    return float(np.mean(per_class)) if per_class else math.nan


def _ece(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Expected calibration error: sum over 10 equal-width bins of (bin share) x |hit rate - mean confidence|."""
    bins = np.clip((confidence * _ECE_BINS).astype(np.int64), 0, _ECE_BINS - 1)
    # sum_b (n_b / N) |hits_b / n_b - conf_b / n_b| = sum_b |hits_b - conf_b| / N: no per-bin counts needed
    hits = np.bincount(bins, weights=correct.astype(np.float64), minlength=_ECE_BINS)
    conf = np.bincount(bins, weights=confidence, minlength=_ECE_BINS)
    return float(np.abs(hits - conf).sum() / confidence.size)


def classifier_drift_auc(
    reference_sample: pd.DataFrame, window: pd.DataFrame, *, max_rows: int = 5000, folds: int = 3, seed: int = 0
) -> float:
    """Multivariate drift: cross-validated ROC AUC of a model telling reference rows from window rows.

    0.5 means the two are indistinguishable, 1.0 fully separable. Uses the columns both frames
    share (dates skipped), at most `max_rows` rows of each, a HistGradientBoostingClassifier with
    native categorical support, and `folds` stratified folds. NaN when either side has fewer than
    `folds` rows or no usable column is shared.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if folds < 2 or max_rows < 1:
        raise InvalidInputError(
            f"classifier_drift_auc needs folds >= 2 and max_rows >= 1, got folds={folds}, max_rows={max_rows}"
        )
    ref = reference_sample.sample(n=min(max_rows, len(reference_sample)), random_state=seed)
    cur = window.sample(n=min(max_rows, len(window)), random_state=seed)
    columns = [c for c in ref.columns if c in cur.columns and column_kind(ref[c]) is not None]
    if len(ref) < folds or len(cur) < folds or not columns:
        return math.nan
    X = pd.DataFrame({c: _model_column(ref[c], cur[c]) for c in columns})
    y = np.r_[np.zeros(len(ref), dtype=np.int64), np.ones(len(cur), dtype=np.int64)]
    model = HistGradientBoostingClassifier(
        max_iter=100, max_leaf_nodes=15, early_stopping=False, categorical_features="from_dtype", random_state=seed
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(model, X, y, scoring="roc_auc", cv=cv)))


def _model_column(ref: pd.Series, cur: pd.Series) -> Any:
    """Both sides of one column, stacked: float64, or a pandas categorical over the frequent labels."""
    if column_kind(ref) == "numeric":  # the window may log numbers as text: parse it
        return np.r_[numeric_array(ref)[0], numeric_array(cur)[0]]
    labels = (
        pd.concat([ref, cur], ignore_index=True).astype("object").where(lambda s: s.isna(), lambda s: s.astype(str))
    )
    top = labels.value_counts().index[:_MAX_CATEGORIES]
    return pd.Categorical(labels, categories=top)
