"""Attributions equal the shap library's to 1e-6 for tree and linear models, and are additive to
1e-6 in the model's raw space; pipelines are explained per input column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from keel.errors import InvalidInputError
from keel.explain import explain_model

shap = pytest.importorskip("shap")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    d = load_breast_cancer(as_frame=True)
    X = d.data.iloc[:, :8].copy()
    X.columns = [c.replace(" ", "_") for c in X.columns]
    return X, d.target


def test_lightgbm_native_treeshap_equals_shap_and_adds_up(data: tuple[pd.DataFrame, pd.Series]) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    X, y = data
    model = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1).fit(X, y)
    e = explain_model(model, X.head(50))
    reference = shap.TreeExplainer(model)(X.head(50))
    ref_values = reference.values[:, :, 1] if reference.values.ndim == 3 else reference.values
    np.testing.assert_allclose(e.values, ref_values, atol=1e-6)
    np.testing.assert_allclose(e.outputs, model.predict(X.head(50), raw_score=True), atol=1e-6)
    assert e.method == "tree (Keel exact TreeSHAP)" and e.space == "log-odds" and e.target == 1
    negative = explain_model(model, X.head(5), target=0)  # the other class: the same pushes, reversed
    np.testing.assert_allclose(negative.values, -e.values[:5], atol=1e-12)


def test_xgboost_native_treeshap_equals_shap_and_adds_up(data: tuple[pd.DataFrame, pd.Series]) -> None:
    xgboost = pytest.importorskip("xgboost")
    X, y = data
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=3).fit(X, y)
    e = explain_model(model, X.head(50))
    np.testing.assert_allclose(e.values, shap.TreeExplainer(model)(X.head(50)).values, atol=1e-6)
    # Additive to 1e-6 in float64 (XGBoost's float32 sums missed the margin by 5e-6): a deeper, longer model, all rows.
    deep = xgboost.XGBClassifier(n_estimators=100, max_depth=5).fit(X, y)
    full = explain_model(deep, X)
    assert full.values.dtype == np.float64 and full.base_values.dtype == np.float64
    np.testing.assert_allclose(
        full.base_values + full.values.sum(axis=1), deep.predict(X, output_margin=True), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(full.outputs, deep.predict(X, output_margin=True), rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        full.base_values, full.base_values[0], atol=1e-4
    )  # still the expected value, up to rounding
    multi = xgboost.XGBClassifier(n_estimators=30, max_depth=3).fit(X, pd.cut(X.iloc[:, 0], 3, labels=False))
    m = explain_model(multi, X.head(50), target=1)
    np.testing.assert_allclose(m.outputs, multi.predict(X.head(50), output_margin=True)[:, 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
        lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
        lambda: RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0),
    ],
)
def test_scikit_learn_tree_ensembles_equal_shap_and_add_up(data: tuple[pd.DataFrame, pd.Series], make: object) -> None:
    X, y = data
    model = make().fit(X, y)  # type: ignore[operator]
    e = explain_model(model, X.head(40))
    reference = shap.TreeExplainer(model)(X.head(40), check_additivity=False).values
    reference = reference[:, :, 1] if reference.ndim == 3 else reference
    np.testing.assert_allclose(e.values, reference, atol=1e-6)
    raw = model.predict_proba(X.head(40))[:, 1] if e.space == "probability" else model.decision_function(X.head(40))
    np.testing.assert_allclose(e.outputs, raw, atol=1e-6)


def test_a_forest_regressor_adds_up_to_its_predictions(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, _ = data
    target = X["mean_radius"] * 2 + X["mean_texture"]
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(X.drop(columns="mean_radius"), target)
    e = explain_model(model, X.drop(columns="mean_radius").head(20))
    assert e.space == "value" and e.target is None
    np.testing.assert_allclose(e.outputs, model.predict(X.drop(columns="mean_radius").head(20)), atol=1e-6)


def test_linear_attributions_equal_shap_linear_explainer(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = data
    background = X.sample(100, random_state=0)
    model = LogisticRegression(max_iter=5000).fit(X, y)
    e = explain_model(model, X.head(30), background=background)
    reference = shap.LinearExplainer(model, shap.maskers.Independent(background, max_samples=100))(X.head(30))
    np.testing.assert_allclose(e.values, reference.values, atol=1e-6)
    np.testing.assert_allclose(e.outputs, model.decision_function(X.head(30)), atol=1e-6)
    ridge = Ridge().fit(X, X["mean_area"] * 0.01)
    r = explain_model(ridge, X.head(10), background=background)
    np.testing.assert_allclose(r.outputs, ridge.predict(X.head(10)), atol=1e-6)
    with pytest.raises(InvalidInputError, match="background"):
        explain_model(model, X.head(3))


def test_pipelines_are_explained_per_input_column_and_still_add_up() -> None:
    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame(
        {
            "income": rng.normal(100, 20, n),
            "age": rng.normal(40, 10, n),
            "home": rng.choice(["rent", "own", "other"], n),
        }
    )
    y = ((X["income"] - 100) / 20 + (X["home"] == "rent") + rng.normal(0, 0.5, n) > 0.5).astype(int)
    prep = make_column_transformer(
        (StandardScaler(), ["income", "age"]), (OneHotEncoder(handle_unknown="ignore"), ["home"])
    )
    for final in (LogisticRegression(), HistGradientBoostingClassifier(max_iter=30)):
        model = make_pipeline(prep, final).fit(X, y)
        e = explain_model(model, X.head(25), background=X.sample(100, random_state=1))
        assert e.features == ("income", "age", "home")  # the one-hot block summed back to its column
        np.testing.assert_allclose(e.outputs, model.decision_function(X.head(25)), atol=1e-6)
        assert e.importance()["income"] > e.importance()["age"]  # income drives the target; age is noise


def test_other_models_get_an_additive_permutation_explanation_with_categoricals() -> None:
    rng = np.random.default_rng(1)
    n = 300
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)})
    y = (X["a"] + (X["c"] == "x") > 0.5).astype(int)
    prep = make_column_transformer((OneHotEncoder(), ["c"]), remainder="passthrough")
    model = make_pipeline(prep, KNeighborsClassifier(n_neighbors=15)).fit(X, y)
    e = explain_model(model, X.head(10), background=X.sample(50, random_state=0))
    assert e.method == "permutation (shap)" and e.space == "probability" and e.features == ("a", "b", "c")
    np.testing.assert_allclose(e.outputs, model.predict_proba(X.head(10))[:, 1], atol=1e-6)
    assert e.importance()["b"] < max(e.importance()["a"], e.importance()["c"])
    with pytest.raises(InvalidInputError, match="not a class"):
        explain_model(model, X.head(2), background=X.head(20), target="z")
