"""Keel's own exact TreeSHAP against LightGBM's `pred_contrib` (what shap calls): equal to 1e-9,
additive to 1e-9, across objectives, missing-value handling, stumps and repeated features."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

lightgbm = pytest.importorskip("lightgbm")
pytest.importorskip("numba")

from keel.errors import InvalidInputError  # noqa: E402
from keel.explain import (
    explain_model,  # noqa: E402
    treeshap,  # noqa: E402
)
from keel.explain.treeshap import UnsupportedTreeError, parse_lightgbm, parse_sklearn, tree_predict, tree_shap  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
EXACT = 1e-9


def _data(n: int = 600, features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    return X, X[:, 0] + np.sin(2 * X[:, 1]) + X[:, 2] * X[:, 3] + 0.1 * rng.normal(size=n)


def _fit(X: np.ndarray, y: np.ndarray, **params: Any) -> Any:
    base = {"n_estimators": 25, "num_leaves": 15, "min_child_samples": 5, "verbose": -1, "num_threads": 1}
    model = lightgbm.LGBMClassifier if params.pop("classify", False) else lightgbm.LGBMRegressor
    return model(**{**base, **params}).fit(X, y).booster_


def _check(booster: Any, X: np.ndarray, *, explained: bool = True) -> np.ndarray:
    """Values and base equal to pred_contrib, and base + sum(values) the raw prediction, to 1e-9."""
    values, base = tree_shap(booster, X)
    n, k, f = values.shape
    contrib = np.asarray(booster.predict(X, pred_contrib=True)).reshape(n, k, f + 1)
    np.testing.assert_allclose(values, contrib[:, :, :-1], rtol=0, atol=EXACT)
    np.testing.assert_allclose(np.broadcast_to(base, (n, k)), contrib[:, :, -1], rtol=0, atol=EXACT)
    raw = np.asarray(booster.predict(X, raw_score=True)).reshape(n, k)
    np.testing.assert_allclose(base + values.sum(axis=2), raw, rtol=0, atol=EXACT)
    np.testing.assert_allclose(tree_predict(booster, X), raw, rtol=0, atol=EXACT)
    assert (np.abs(values).max() > 0.01) == explained  # the rows are explained by something
    return values


def test_regression_equals_pred_contrib_and_adds_up() -> None:
    X, y = _data()
    _check(_fit(X, y), X[:200])


def test_binary_and_multiclass_equal_pred_contrib() -> None:
    X, y = _data()
    _check(_fit(X, (y > 0).astype(int), classify=True), X[:150])
    values = _check(_fit(X, np.digitize(y, [-1, 1]), classify=True, n_estimators=10), X[:150])
    assert values.shape == (150, 3, X.shape[1])  # one block per class


def test_nan_inputs_under_each_missing_type() -> None:
    X, y = _data()
    holes = X.copy()
    holes[np.random.default_rng(1).random(X.shape) < 0.15] = np.nan
    nan_model = _fit(holes, y)  # trained with NaNs: missing_type NaN, default directions learned
    assert 'missing_type": "NaN' in str(nan_model.dump_model()).replace("'", '"')
    _check(nan_model, holes[:200])
    _check(_fit(X, y), holes[:200])  # missing_type None: a NaN at prediction counts as 0
    zeros = X.copy()
    zeros[np.random.default_rng(2).random(X.shape) < 0.2] = 0.0
    zero_model = _fit(zeros, y, zero_as_missing=True)  # missing_type Zero
    assert "Zero" in str(zero_model.dump_model())
    _check(zero_model, np.vstack([zeros[:100], holes[:100]]))


def test_stumps_single_leaf_trees_and_repeated_features() -> None:
    X, y = _data()
    _check(_fit(X, y, num_leaves=2, n_estimators=15), X[:100])  # depth-1 trees
    flat = _fit(X[:60], y[:60], n_estimators=5, min_child_samples=40)  # no split allowed: one single-leaf tree
    assert (flat.dump_model()["tree_info"][0]["num_leaves"]) == 1
    _check(flat, X[:50], explained=False)  # all in the base value
    two = X[:, :2]
    deep = _fit(two, y, num_leaves=31, n_estimators=10)  # 2 features, 31 leaves: features repeat on paths
    e = parse_lightgbm(deep)
    assert e.max_depth > int(e.leaf_depth.max())  # some path splits twice on a feature
    _check(deep, two[:200])


def test_direct_and_tabulated_leaves_give_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data()
    booster = _fit(X, y, num_leaves=31)
    tabulated = tree_shap(parse_lightgbm(booster), X[:100])[0]
    monkeypatch.setattr(treeshap, "_TABLE_BUDGET", 0)  # every leaf computed per row
    direct_e = parse_lightgbm(booster)
    assert (direct_e.table_offset < 0).all()
    direct = tree_shap(direct_e, X[:100])[0]
    np.testing.assert_allclose(direct, tabulated, rtol=0, atol=EXACT)
    contrib = booster.predict(X[:100], pred_contrib=True)
    np.testing.assert_allclose(direct[:, 0], contrib[:, :-1], rtol=0, atol=EXACT)


def test_categorical_splits_are_refused_and_explain_model_falls_back() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=400), "c": pd.Categorical(rng.choice(list("pqrs"), 400))})
    y = frame["a"] + frame["c"].cat.codes.to_numpy() * (frame["c"] == "r")
    model = lightgbm.LGBMRegressor(n_estimators=10, min_child_samples=5, verbose=-1).fit(frame, y)
    with pytest.raises(UnsupportedTreeError, match="categorical"):
        parse_lightgbm(model.booster_)
    e = explain_model(model, frame.head(20))
    assert e.method == "tree (LightGBM exact TreeSHAP)"  # the booster's own, not a wrong answer
    np.testing.assert_allclose(e.outputs, model.predict(frame.head(20), raw_score=True), atol=1e-9)


def test_explain_model_uses_keel_treeshap_for_lightgbm() -> None:
    X, y = _data()
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(pd.DataFrame(X), (y > 0).astype(int))
    frame = pd.DataFrame(X[:40])
    e = explain_model(model, frame)
    contrib = model.booster_.predict(X[:40], pred_contrib=True)
    assert e.method == "tree (Keel exact TreeSHAP)" and e.space == "log-odds"
    np.testing.assert_allclose(e.values, contrib[:, :-1], rtol=0, atol=EXACT)
    np.testing.assert_allclose(e.outputs, model.predict(frame, raw_score=True), rtol=0, atol=EXACT)
    np.testing.assert_allclose(explain_model(model, frame, target=0).values, -e.values, rtol=0, atol=EXACT)


def test_without_numba_explain_model_falls_back_to_pred_contrib(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data()
    model = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, y)
    monkeypatch.setitem(sys.modules, "keel.explain._treeshap_kernels", None)  # its import now fails
    e = explain_model(model, pd.DataFrame(X[:10]))
    assert e.method == "tree (LightGBM exact TreeSHAP)"
    np.testing.assert_allclose(e.outputs, model.predict(X[:10]), atol=1e-9)


def test_sklearn_trees_and_forests_equal_shap_and_add_up_to_predict_proba() -> None:
    shap = pytest.importorskip("shap")
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
    from sklearn.tree import DecisionTreeClassifier

    X, y = _data(400)
    classes = np.digitize(y, [-1, 1])
    models = [
        RandomForestRegressor(10, max_depth=8, random_state=0).fit(X, y),
        ExtraTreesRegressor(5, random_state=0).fit(X, y),  # fully grown: long paths, computed per row
        RandomForestClassifier(10, max_depth=6, random_state=0).fit(X, classes),
        DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y > 0),
    ]
    for model in models:
        values, base = tree_shap(model, X[:100])
        reference = shap.TreeExplainer(model)(X[:100])
        ref = np.asarray(reference.values)
        ref = ref.transpose(0, 2, 1) if ref.ndim == 3 else ref[:, None, :]
        np.testing.assert_allclose(values, ref, rtol=0, atol=EXACT)
        np.testing.assert_allclose(base, np.asarray(reference.base_values)[0], rtol=0, atol=EXACT)
        output = model.predict_proba(X[:100]) if hasattr(model, "classes_") else model.predict(X[:100])[:, None]
        np.testing.assert_allclose(base + values.sum(axis=2), output, rtol=0, atol=EXACT)
    e = explain_model(models[2], pd.DataFrame(X[:30]), target=2)
    assert e.method == "tree (Keel exact TreeSHAP)" and e.space == "probability"
    np.testing.assert_allclose(e.outputs, models[2].predict_proba(X[:30])[:, 2], rtol=0, atol=EXACT)
    holes = X[:30].copy()
    holes[0, 0] = np.nan
    with pytest.raises(UnsupportedTreeError, match="missing values"):
        tree_shap(parse_sklearn(models[3]), holes)
    assert explain_model(models[3], pd.DataFrame(holes)).method == "tree (shap TreeExplainer, exact)"


def test_wrong_width_is_refused_with_the_expected_width() -> None:
    X, y = _data()
    with pytest.raises(InvalidInputError, match="6 columns"):
        tree_shap(_fit(X, y, n_estimators=3), X[:5, :4])


def test_import_keel_explain_does_not_import_numba() -> None:
    code = "import sys, keel.explain, keel.explain.treeshap; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
