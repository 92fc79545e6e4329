"""linear_to_c: the generated C, compiled on the host, agrees with scikit-learn exactly in class and
within 1e-5 in scores, with scalers folded into the weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, PolynomialFeatures, StandardScaler
from sklearn.svm import LinearSVC

from keel.edge.host import compile_host
from keel.edge.linear import linear_to_c
from keel.errors import InvalidInputError, NotFittedError


def _names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def _check_classifier(model, X, tmp_path: Path, scores_of, probabilities: bool = True) -> None:  # type: ignore[no-untyped-def]
    c = linear_to_c(model, "lin", feature_names=_names(X.shape[1]), probabilities=probabilities)
    cls, scores = compile_host(c, tmp_path).predict(X)
    # Python's own predictions on the float32 inputs the C function receives.
    Xf = X.astype(np.float32).astype(np.float64)
    assert (np.asarray(c.classes)[cls] == model.predict(Xf)).all()
    ref = scores_of(Xf)
    # Probabilities: 1e-5 absolute. Decision values of size 100 carry float32's relative 1e-7 rounding,
    # (and cancellation between them), so they are held to 1e-5 relative to max(1, the row's largest |value|).
    scale = np.maximum(1.0, np.abs(ref).max(axis=1, keepdims=True))
    assert (np.abs(scores - ref) / scale).max() < 1e-5


@pytest.mark.parametrize("scalers", [(), (StandardScaler(),), (MinMaxScaler(), StandardScaler()), (MaxAbsScaler(),)])
def test_logistic_binary_and_multiclass_with_folded_scalers(scalers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import copy

    for X, y in (load_breast_cancer(return_X_y=True), load_iris(return_X_y=True)):
        model = make_pipeline(*copy.deepcopy(scalers), LogisticRegression(max_iter=5000)).fit(X, y)
        _check_classifier(model, X, tmp_path, model.predict_proba)
    c = linear_to_c(model, "lin", feature_names=_names(4))
    if scalers:
        assert "no scaling in C" in " ".join(c.notes)
    assert "expf" in c.files["lin.c"] and c.n_outputs == 3


def test_binary_logistic_gives_two_probabilities_and_string_classes(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels)
    c = linear_to_c(model, "lin", feature_names=_names(30))
    assert c.n_outputs == 2 and c.classes == ("benign", "malignant")
    _check_classifier(model, X, tmp_path, model.predict_proba)


def test_decision_function_models_and_no_libm_without_probabilities(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    for est in (LinearSVC(max_iter=20000), SGDClassifier(random_state=0), RidgeClassifier()):
        model = make_pipeline(StandardScaler(), est).fit(X, y)
        _check_classifier(model, X, tmp_path, model.decision_function, probabilities=False)
        yb = (y == 2).astype(int)
        model = make_pipeline(StandardScaler(), est).fit(X, yb)
        _check_classifier(model, X, tmp_path, lambda Z, m=model: m.decision_function(Z)[:, None])
    model = LogisticRegression(max_iter=2000).fit(X, y)
    c = linear_to_c(model, "lin", feature_names=_names(4), probabilities=False)
    assert "expf" not in c.files["lin.c"]
    _check_classifier(model, X, tmp_path, model.decision_function, probabilities=False)


@pytest.mark.parametrize("est", [LinearRegression(), Ridge(alpha=0.5), Lasso(alpha=0.1), ElasticNet(alpha=0.1)])
def test_regressors_with_and_without_scaler(est, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    X, y = load_diabetes(return_X_y=True)
    X = X * 100  # values of a few units, so 1e-5 of float32 rounding is a fair bound
    for model in (est.fit(X, y / 100), make_pipeline(StandardScaler(), est).fit(X, y / 100)):
        c = linear_to_c(model, "reg", feature_names=_names(10))
        cls, scores = compile_host(c, tmp_path).predict(X)
        assert c.kind == "regressor" and (cls == 0).all()
        ref = model.predict(X.astype(np.float32).astype(np.float64))
        assert np.abs(scores[:, 0] - ref).max() < 1e-5


def test_multi_output_regression(tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True)
    Y = np.c_[y / 100, -y / 200]
    model = make_pipeline(MinMaxScaler(), Ridge()).fit(X, Y)
    c = linear_to_c(model, "reg2", feature_names=_names(10))
    _, scores = compile_host(c, tmp_path).predict(X)
    assert c.n_outputs == 2
    assert np.abs(scores - model.predict(X.astype(np.float32).astype(np.float64))).max() < 1e-5


def test_bad_input_gets_clear_errors() -> None:
    X, y = load_iris(return_X_y=True)
    with pytest.raises(InvalidInputError, match="polynomialfeatures.*PolynomialFeatures"):
        linear_to_c(make_pipeline(PolynomialFeatures(), RidgeClassifier()).fit(X, y), "m", feature_names=_names(4))
    with pytest.raises(InvalidInputError, match="clip=False"):
        linear_to_c(make_pipeline(MinMaxScaler(clip=True), Ridge()).fit(X, y), "m", feature_names=_names(4))
    with pytest.raises(NotFittedError, match="fit"):
        linear_to_c(LogisticRegression(), "m", feature_names=_names(4))
    with pytest.raises(InvalidInputError, match="not a linear model"):
        linear_to_c(object(), "m", feature_names=_names(4))
    with pytest.raises(InvalidInputError, match="C identifier"):
        linear_to_c(Ridge().fit(X, y), "2bad-name", feature_names=_names(4))
    with pytest.raises(InvalidInputError, match="3 names but"):
        linear_to_c(Ridge().fit(X, y), "m", feature_names=_names(3))
    with pytest.raises(InvalidInputError, match="max_flash_bytes=100"):
        linear_to_c(Ridge().fit(X, y), "m", feature_names=_names(4), max_flash_bytes=100)
    c = linear_to_c(Ridge().fit(X, y), "m", feature_names=_names(4), max_flash_bytes=1000)
    assert c.details["weight_bytes"] == 20
