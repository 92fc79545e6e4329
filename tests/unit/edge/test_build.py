"""compile_model's dispatch and refusals, and the archive a build ships as (package / readme / open_package),
with the generated C compiled and scored on the host through predict_build."""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keel.edge import CModel, OnnxModel
from keel.edge.build import compile_model, model_family, open_package, package, predict_build, readme
from keel.errors import InvalidInputError


@pytest.fixture(scope="module")
def digits() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:400], columns=[f"p{i}" for i in range(64)])
    return frame, y[:400]


@pytest.fixture(scope="module")
def forest(digits: tuple[pd.DataFrame, np.ndarray]) -> RandomForestClassifier:
    X, y = digits
    return RandomForestClassifier(n_estimators=4, max_depth=5, random_state=0).fit(X, y)


def test_dispatch_by_model_kind(digits: tuple[pd.DataFrame, np.ndarray], forest: RandomForestClassifier) -> None:
    X, y = digits
    names = list(X.columns)
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0).fit(X, y)
    assert (model_family(forest), model_family(linear), model_family(mlp)) == ("tree", "linear", "mlp")
    tree_c = compile_model(forest, "rf", feature_names=names)
    assert isinstance(tree_c, CModel) and tree_c.details["trees"] == 4 and tree_c.quantize == "float32"
    lin_c = compile_model(linear, "lin", feature_names=names)
    assert isinstance(lin_c, CModel) and "scalers folded" in " ".join(lin_c.notes)
    mlp_c = compile_model(mlp, "net", feature_names=names, quantize="int8", calibration=X)
    assert isinstance(mlp_c, CModel) and mlp_c.quantize == "int8"
    int16 = compile_model(forest, "rf16", feature_names=names, quantize="int16", calibration=X)
    assert isinstance(int16, CModel) and int16.int_input == "int16_t"


@pytest.mark.parametrize(
    ("kind", "target", "quantize", "match"),
    [
        ("forest", "c", "int8", "'float32' or 'int16', not 'int8'"),
        ("linear", "c", "int16", "offer quantize='float32', not 'int16'"),
        ("forest", "onnx", "int8", "cannot quantise tree-ensemble"),
        ("forest", "wasm", "float32", "not an edge target"),
        ("mlp", "c", "int8", "needs calibration rows"),
        ("scaled_forest", "c", "float32", "step 'standardscaler' (StandardScaler) comes before a tree"),
        ("knn", "c", "float32", "no edge build for a KNeighborsClassifier"),
    ],
)
def test_refusals_come_before_anything_is_built(
    digits: tuple[pd.DataFrame, np.ndarray],
    forest: RandomForestClassifier,
    kind: str,
    target: str,
    quantize: str,
    match: str,
) -> None:
    X, y = digits
    models = {
        "forest": forest,
        "linear": LogisticRegression(max_iter=50).fit(X, y),
        "mlp": MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y),
        "scaled_forest": make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=2, random_state=0)).fit(
            X, y
        ),
        "knn": KNeighborsClassifier().fit(X, y),
    }
    with pytest.raises(InvalidInputError, match=re.escape(match)):
        compile_model(models[kind], "m", feature_names=list(X.columns), target=target, quantize=quantize)


def test_flash_limit_is_enforced(digits: tuple[pd.DataFrame, np.ndarray], forest: RandomForestClassifier) -> None:
    with pytest.raises(InvalidInputError, match="max_flash_bytes=100"):
        compile_model(forest, "rf", feature_names=list(digits[0].columns), max_flash_bytes=100)


def test_package_round_trips_and_scores_like_python(
    digits: tuple[pd.DataFrame, np.ndarray], forest: RandomForestClassifier
) -> None:
    X, _ = digits
    build = compile_model(forest, "rf", feature_names=list(X.columns))
    assert isinstance(build, CModel)
    text = readme(build, model_ref="digits@1", mcu="cortex-m4")
    assert "int rf_predict(const float *features, float *scores);" in text and "| 63 | p63 |" in text
    assert "Class labels in score order: 0 = 0" in text
    data = package(build, {"agreement": 1.0}, text)
    assert data == package(build, {"agreement": 1.0}, text)  # deterministic
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["README.md", "report.json", "rf.c", "rf.h"]
        report = json.loads(archive.read("report.json"))
    assert report["agreement"] == 1.0 and report["build"]["feature_names"][0] == "p0"
    again, _ = open_package(data)
    assert isinstance(again, CModel) and again.files == build.files
    scored = predict_build(again, X)
    assert list(scored["prediction"]) == list(forest.predict(X))
    assert np.allclose(scored[[f"score_{c}" for c in forest.classes_]].to_numpy(), forest.predict_proba(X), atol=1e-6)


def test_onnx_build_packages_the_model(digits: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = digits
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0).fit(X, y)
    build = compile_model(mlp, "net", feature_names=list(X.columns), target="onnx", quantize="int8", calibration=X)
    assert isinstance(build, OnnxModel) and build.quantize == "int8"
    data = package(build, {}, readme(build, model_ref="digits@2"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["README.md", "model.onnx", "report.json"]
    again, _ = open_package(data)
    scored = predict_build(again, X)
    assert np.mean(scored["prediction"].to_numpy() == mlp.predict(X)) > 0.95


def test_open_package_refuses_other_files() -> None:
    with pytest.raises(InvalidInputError, match="not an edge build archive"):
        open_package(b"not a zip")
