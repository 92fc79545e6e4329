"""keel.edge.onnx_build: float ONNX exports agree with the Python model; int8 of an MLP keeps its classes
in a smaller file; tree ensembles are refused for int8, naming the op; no ZipMap in any graph."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keel.edge.onnx_build import OnnxModel, onnx_agreement, quantize_int8, run_onnx, to_onnx
from keel.errors import InvalidInputError

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")

NAMES = [f"x{i}" for i in range(6)]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0)
    return X.astype(np.float32), y


def _models() -> dict[str, Any]:
    lightgbm = pytest.importorskip("lightgbm")
    xgboost = pytest.importorskip("xgboost")
    return {
        "logistic": LogisticRegression(max_iter=1000),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "forest": RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0),
        "mlp": MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0),
        "lightgbm": lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1, random_state=0),
        "xgboost": xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0),
    }


@pytest.mark.parametrize("key", ["logistic", "pipeline", "forest", "mlp", "lightgbm", "xgboost"])
def test_float_export_agrees_with_python(key: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    model = _models()[key].fit(X, y)
    built = to_onnx(model, feature_names=NAMES, X_sample=X[:50])

    assert built.kind == "classifier" and built.quantize == "float32"
    assert built.output_names == ("label", "probabilities")
    assert built.classes == (0, 1, 2)
    assert "ZipMap" not in built.op_types
    labels, scores = run_onnx(built, X)
    assert labels is not None
    np.testing.assert_array_equal(labels, model.predict(X))
    tolerance = 1e-4 if key in {"lightgbm", "xgboost"} else 1e-5
    np.testing.assert_allclose(scores, model.predict_proba(X), atol=tolerance)
    check = onnx_agreement(model, built, X)
    assert check.class_agreement == 1.0 and check.max_abs_diff < tolerance
    assert built.details["sample_agreement"].class_agreement == 1.0


def test_linear_models_use_standard_ops(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    ops = set(to_onnx(model, feature_names=NAMES, X_sample=X[:10]).op_types)
    # the ml-domain LinearClassifier / Scaler would leave nothing for onnxruntime to quantise
    assert "MatMul" in ops and not ops & {"LinearClassifier", "Scaler", "ZipMap"}


def test_regressor_export_and_dataframe_fitted_xgboost() -> None:
    xgboost = pytest.importorskip("xgboost")
    X, y = make_regression(n_samples=200, n_features=6, random_state=0)
    frame = pd.DataFrame(X.astype(np.float32), columns=NAMES)
    for model in (LinearRegression(), xgboost.XGBRegressor(n_estimators=20, max_depth=3)):
        model.fit(frame, y)
        built = to_onnx(model, feature_names=NAMES, X_sample=frame.iloc[:20])
        labels, values = run_onnx(built, frame)
        assert built.kind == "regressor" and labels is None and values.shape == (200,)
        scale = float(np.abs(y).max())
        assert np.abs(values - model.predict(frame)).max() <= 1e-5 * scale
    # the DataFrame-named booster was exported from a copy: the caller's model keeps its names
    assert model.get_booster().feature_names == NAMES


def test_int8_mlp_on_digits_agrees_and_is_smaller() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X.astype(np.float32), y, test_size=0.3, random_state=0)
    model = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=500, random_state=0).fit(X_train, y_train)
    names = [f"p{i}" for i in range(64)]
    float_model = to_onnx(model, feature_names=names, X_sample=X_train[:100])
    int8 = quantize_int8(float_model, X_train)

    assert int8.quantize == "int8" and isinstance(int8, OnnxModel)
    assert int8.size < float_model.size
    assert "QuantizeLinear" in int8.op_types and "ZipMap" not in int8.op_types
    labels, scores = run_onnx(int8, X_test)
    assert labels is not None and scores.shape == (len(X_test), 10)
    check = onnx_agreement(model, int8, X_test)
    assert check.class_agreement is not None and check.class_agreement >= 0.98
    assert int8.details["calibration_rows"] == len(X_train)


def test_int8_logistic_pipeline_quantises(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    monkeypatch.chdir(tmp_path)  # onnxruntime's symbolic shape inference writes a temp file here when it fails
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    int8 = quantize_int8(to_onnx(model, feature_names=NAMES, X_sample=X[:10]), X, per_channel=False)
    check = onnx_agreement(model, int8, X)
    assert check.class_agreement is not None and check.class_agreement >= 0.95
    assert list(tmp_path.iterdir()) == []  # nothing left in the working directory


def test_int8_refuses_tree_ensembles_naming_the_op(
    data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    built = to_onnx(forest, feature_names=NAMES, X_sample=X[:10])

    def no_files(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a refused model must not write anything")

    monkeypatch.setattr("keel.edge.onnx_build.tempfile.TemporaryDirectory", no_files)
    with pytest.raises(InvalidInputError, match="TreeEnsembleClassifier") as info:
        quantize_int8(built, X)
    assert "tree ensemble" in str(info.value)


def test_bad_input_is_named(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    with pytest.raises(InvalidInputError, match="not a fitted"):
        to_onnx(LogisticRegression(), feature_names=NAMES, X_sample=X[:5])
    model = LogisticRegression(max_iter=1000).fit(X, y)
    with pytest.raises(InvalidInputError, match="one column per feature"):
        to_onnx(model, feature_names=NAMES[:4], X_sample=X[:5])

    class Unknown(LogisticRegression):
        pass

    with pytest.raises(InvalidInputError, match="Unknown cannot be exported"):
        to_onnx(Unknown(max_iter=1000).fit(X, y), feature_names=NAMES, X_sample=X[:5])
    built = to_onnx(model, feature_names=NAMES, X_sample=X[:5])
    with pytest.raises(InvalidInputError, match="finite"):
        quantize_int8(built, np.full((3, 6), np.nan))
