"""keel.edge.trees: every tree-ensemble kind compiled on the host (keel.edge.host: strict C99,
-Werror) and scored through ctypes against the Python model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from keel.edge.host import HostLibrary, compile_host
from keel.edge.source import CModel
from keel.edge.trees import float32_threshold, tree_to_c
from keel.errors import InvalidInputError, InvalidModelError, NotFittedError

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs the system C compiler `cc`")


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    loader = {"digits": load_digits, "cancer": load_breast_cancer, "diabetes": load_diabetes}[name]
    X, y = loader(return_X_y=True)
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def _compile(cm: CModel, tmp: Path) -> HostLibrary:
    return compile_host(cm, tmp)


def _run(cm: CModel, lib: HostLibrary, X: np.ndarray, *, integer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    cls, scores = lib.predict_int(X) if integer else lib.predict(X)
    return cls.astype(np.int64), scores.astype(np.float64)


def _python(model: Any, X: np.ndarray, space: str) -> tuple[np.ndarray | None, np.ndarray]:
    """Python's predicted class index (None for a regressor) and scores in the C's score space."""
    if space == "value":
        return None, model.predict(X).reshape(-1, 1)
    if space == "probability":
        proba = model.predict_proba(X)
        return proba.argmax(axis=1), proba
    if hasattr(model, "booster_"):  # LightGBM
        raw = model.predict(X, raw_score=True)
    elif type(model).__name__.startswith("XGB"):
        raw = model.predict(X, output_margin=True)
    else:
        raw = model.decision_function(X)
    raw = np.asarray(raw).reshape(len(X), -1)
    idx = np.searchsorted(model.classes_, model.predict(X))
    return idx, raw


def _lgbm(kind: str, **kw: Any) -> Any:
    import lightgbm as lgb

    cls = lgb.LGBMClassifier if kind == "clf" else lgb.LGBMRegressor
    return cls(n_estimators=20, num_leaves=8, random_state=0, verbose=-1, **kw)


def _xgb(kind: str) -> Any:
    import xgboost as xgb

    cls = xgb.XGBClassifier if kind == "clf" else xgb.XGBRegressor
    return cls(n_estimators=20, max_depth=3, random_state=0, n_jobs=1)


CASES = {
    "dt_clf": (lambda: DecisionTreeClassifier(max_depth=6, random_state=0), "digits"),
    "dt_reg": (lambda: DecisionTreeRegressor(max_depth=6, random_state=0), "diabetes"),
    "rf_clf": (lambda: RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0), "digits"),
    "rf_clf_binary": (lambda: RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0), "cancer"),
    "rf_reg": (lambda: RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0), "diabetes"),
    "et_clf": (lambda: ExtraTreesClassifier(n_estimators=10, max_depth=8, random_state=0), "cancer"),
    "et_reg": (lambda: ExtraTreesRegressor(n_estimators=10, max_depth=6, random_state=0), "diabetes"),
    "gb_binary": (lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0), "cancer"),
    "gb_multi": (lambda: GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0), "digits"),
    "gb_reg": (lambda: GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0), "diabetes"),
    "lgbm_binary": (lambda: _lgbm("clf"), "cancer"),
    "lgbm_multi": (lambda: _lgbm("clf"), "digits"),
    "lgbm_reg": (lambda: _lgbm("reg"), "diabetes"),
    "xgb_binary": (lambda: _xgb("clf"), "cancer"),
    "xgb_multi": (lambda: _xgb("clf"), "digits"),
    "xgb_reg": (lambda: _xgb("reg"), "diabetes"),
}


def _check_agreement(model: Any, cm: CModel, cls: np.ndarray, scores: np.ndarray, X: np.ndarray) -> None:
    space = cm.details["score_space"]
    want_cls, want = _python(model, X, space)
    if cm.kind == "regressor":
        np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        return
    assert np.array_equal(cls, want_cls), f"{(cls != want_cls).sum()} rows disagree"
    assert np.abs(scores - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_float_build_agrees_exactly(case: str, tmp_path: Path) -> None:
    make, data = CASES[case]
    X, y = _data(data)
    model = make().fit(X, y)
    names = [f"f{i}" for i in range(X.shape[1])]
    cm = tree_to_c(model, "m", feature_names=names)
    cls, scores = _run(cm, _compile(cm, tmp_path), X)
    _check_agreement(model, cm, cls, scores, X)
    assert cm.details["table_bytes"] > 0 and cm.notes


@pytest.mark.parametrize("case", ["rf_clf", "dt_clf", "gb_multi", "lgbm_multi", "xgb_multi"])
def test_int16_on_digits_is_lossless(case: str, tmp_path: Path) -> None:
    make, _ = CASES[case]
    X, y = _data("digits")
    model = make().fit(X, y)
    cm = tree_to_c(model, "q", feature_names=[f"p{i}" for i in range(64)], quantize="int16", input_range=X)
    assert cm.int_input == "int16_t" and cm.details["int16"]["lossless"]
    assert any(n.startswith("lossless:") and "integer values" in n for n in cm.notes)
    lib = _compile(cm, tmp_path)
    cls, scores = _run(cm, lib, X)
    _check_agreement(model, cm, cls, scores, X)
    # The integer entry point with round(x * scale) gives the same answers.
    q = np.round(X * np.asarray(cm.input_scale)).astype(np.int16)
    cls_i, scores_i = _run(cm, lib, q, integer=True)
    assert np.array_equal(cls_i, cls) and np.array_equal(scores_i, scores)


def test_int16_off_grid_states_a_bound(tmp_path: Path) -> None:
    X, y = _data("cancer")
    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(X, y)
    cm = tree_to_c(model, "q", feature_names=[f"f{i}" for i in range(30)], quantize="int16", input_range=X)
    assert any(n.startswith("bound:") for n in cm.notes)
    cls, _ = _run(cm, _compile(cm, tmp_path), X)
    assert (cls == model.predict_proba(X).argmax(axis=1)).mean() >= 0.98


def test_target_forest_on_digits_fits_in_8_kb(tmp_path: Path) -> None:
    X, y = _data("digits")
    model = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0).fit(X, y)
    cm = tree_to_c(model, "rf", feature_names=[f"p{i}" for i in range(64)], quantize="int16", input_range=X)
    cls, _ = _run(cm, _compile(cm, tmp_path), X)
    assert np.array_equal(cls, model.predict_proba(X).argmax(axis=1))
    assert cm.details["table_bytes"] <= 8192 - 1024
    obj = tmp_path / "rf.o"
    subprocess.run(["cc", "-std=c99", "-Os", "-c", "-o", str(obj), str(tmp_path / "rf.c")], check=True)
    if shutil.which("size"):
        text = int(subprocess.run(["size", str(obj)], capture_output=True, text=True).stdout.split("\n")[1].split()[0])
        assert text <= 8192, f"host object text is {text} bytes"


def _adjacent_float32(a: float) -> tuple[np.float32, np.float32, float]:
    lo = np.float32(a)
    hi = np.nextafter(lo, np.float32(np.inf))
    return lo, hi, (float(lo) + float(hi)) / 2.0  # exact in float64, strictly between


@pytest.mark.parametrize("a", [0.1, 1.0, 3.3, -2.7, 1e6 + 0.5, 16.0])
def test_threshold_rounds_down_for_sklearn_le(a: float) -> None:
    lo, hi, mid = _adjacent_float32(a)
    t32 = float32_threshold("sklearn", mid)
    assert t32 == lo  # lo <= mid goes left, hi > mid goes right, as float64 compares them
    assert float32_threshold("sklearn", float(lo)) == lo  # exactly representable: unchanged
    assert float32_threshold("lightgbm", mid) == lo


def test_threshold_for_xgboost_lt() -> None:
    t = np.float32(0.5)
    t32 = float32_threshold("xgboost", float(t))
    assert t32 < t and not (t <= t32) and np.nextafter(t32, np.float32(1)) == t


def test_adversarial_threshold_compiled(tmp_path: Path) -> None:
    # Two float32 neighbours whose float64 midpoint is the split: round-to-nearest would send `hi`
    # left (the midpoint ties to the even one) where scikit-learn sends it right.
    rows = []
    for a in (2.5, 3.3, 7.0, 100.1, 1e6 + 0.5):  # ulp > 1e-7: scikit-learn splits them
        lo, hi, _ = _adjacent_float32(a)
        rows += [lo, hi]
    X = np.array(rows, dtype=np.float32).reshape(-1, 1).astype(np.float64)
    y = np.arange(len(X)) % 2
    model = DecisionTreeClassifier(random_state=0).fit(X, y)
    splits = model.tree_.threshold[model.tree_.children_left >= 0]
    assert any(float(np.float32(t)) > t for t in splits)  # a split that round-to-nearest would move up
    cm = tree_to_c(model, "adv", feature_names=["x"])
    cls, _ = _run(cm, _compile(cm, tmp_path), X)
    assert np.array_equal(cls, model.predict(X)) and np.array_equal(cls, y)


def test_lightgbm_booster_and_keel_wrapper(tmp_path: Path) -> None:
    import lightgbm as lgb

    X, y = _data("cancer")
    booster = lgb.train({"objective": "binary", "num_leaves": 8, "verbose": -1}, lgb.Dataset(X, y), 10)

    class Wrapper:  # the shape of keel.registry.flavors.LightGBMModel
        def __init__(self) -> None:
            self.booster = booster
            self.classes_ = np.array([0, 1])

    for model in (booster, Wrapper()):
        cm = tree_to_c(model, "b", feature_names=[f"f{i}" for i in range(30)])
        cls, scores = _run(cm, _compile(cm, tmp_path), X)
        raw = booster.predict(X, raw_score=True)
        assert np.array_equal(cls, (raw > 0).astype(int))
        assert np.abs(scores[:, 0] - raw).max() <= 1e-5 * max(1.0, np.abs(raw).max())
        assert cm.classes == (0, 1)


def test_unfitted_model_is_a_clear_error() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        tree_to_c(RandomForestClassifier(), "m", feature_names=["a"])
    for model in (DecisionTreeRegressor(), GradientBoostingClassifier(), _lgbm("clf"), _xgb("reg")):
        with pytest.raises(NotFittedError, match="not fitted"):
            tree_to_c(model, "m", feature_names=["a"])


def test_unsupported_model_is_a_clear_error() -> None:
    X, y = _data("cancer")
    with pytest.raises(InvalidModelError, match="LogisticRegression.*supported"):
        tree_to_c(LogisticRegression(max_iter=50).fit(X[:, :3], y), "m", feature_names=["a", "b", "c"])


def test_too_big_for_flash_names_the_limit() -> None:
    X, y = _data("digits")
    model = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0).fit(X, y)
    with pytest.raises(InvalidInputError, match="max_flash_bytes=4096"):
        tree_to_c(model, "m", feature_names=[f"p{i}" for i in range(64)], max_flash_bytes=4096)


def test_bad_arguments_are_clear_errors() -> None:
    X, y = _data("diabetes")
    model = DecisionTreeRegressor(max_depth=2).fit(X, y)
    names = [f"f{i}" for i in range(10)]
    with pytest.raises(InvalidInputError, match="C identifier"):
        tree_to_c(model, "1bad-name", feature_names=names)
    with pytest.raises(InvalidInputError, match="feature_names has 2"):
        tree_to_c(model, "m", feature_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="input_range"):
        tree_to_c(model, "m", feature_names=names, quantize="int16")
    with pytest.raises(InvalidInputError, match="'float32' or 'int16'"):
        tree_to_c(model, "m", feature_names=names, quantize="int8")


@pytest.mark.parametrize("case", ["gb_binary", "lgbm_binary", "xgb_binary", "rf_clf_binary"])
def test_models_fitted_on_a_dataframe(case: str, tmp_path: Path) -> None:
    import warnings

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    model = CASES[case][0]().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fitted with feature names" warning from the base probe
        cm = tree_to_c(model, "d", feature_names=list(X.columns))
    cls, scores = _run(cm, _compile(cm, tmp_path), X.to_numpy())
    _check_agreement(model, cm, cls, scores, X)


def test_gradient_boosting_init(tmp_path: Path) -> None:
    X, y = _data("diabetes")
    zero = GradientBoostingRegressor(n_estimators=10, init="zero", random_state=0).fit(X, y)
    cm = tree_to_c(zero, "z", feature_names=[f"f{i}" for i in range(10)])
    assert cm.details["base"] == (0.0,)
    cls, scores = _run(cm, _compile(cm, tmp_path), X)
    _check_agreement(zero, cm, cls, scores, X)
    custom = GradientBoostingRegressor(n_estimators=3, init=DecisionTreeRegressor(max_depth=1)).fit(X, y)
    with pytest.raises(InvalidModelError, match="init=DecisionTreeRegressor"):
        tree_to_c(custom, "c", feature_names=[f"f{i}" for i in range(10)])


def test_weighted_tree_leaves_on_a_fine_grid(tmp_path: Path) -> None:
    X, y = _data("digits")
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(X))  # non-integer weighted counts in the leaves
    model = DecisionTreeClassifier(max_depth=6, random_state=0).fit(X, y, sample_weight=weights)
    cm = tree_to_c(model, "w", feature_names=[f"p{i}" for i in range(64)])
    assert any("1/65535" in n for n in cm.notes)
    cls, scores = _run(cm, _compile(cm, tmp_path), X)
    proba = model.predict_proba(X)
    assert np.array_equal(cls, proba.argmax(axis=1))
    assert np.abs(scores - proba).max() < 1 / 65535 + 1e-6
