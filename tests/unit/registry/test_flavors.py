"""Flavours: each kind of model is saved in a safe format and predicts the same after loading."""

from __future__ import annotations

import io
import pickle
import zipfile

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import keel
from keel.errors import InvalidInputError, InvalidModelError, UnsafeLoadError, UserCodeError
from keel.registry import get_flavor


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(7)
    n = 300
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50.0, 12.0, n),
            "plan": pd.Categorical(rng.choice(["basic", "pro", "max"], n)),
        }
    )
    y = pd.Series(((X["income"] + (X["plan"] == "pro") * 8 + rng.normal(0, 4, n)) > 55).astype(int), name="churned")
    return X, y


def _blob(ws: keel.Workspace, ref: str) -> bytes:
    return ws._blobs.get_bytes(ws.models.get(ref).digest)


def double_income(frame: pd.DataFrame) -> np.ndarray:
    """A model that is a plain module-level function."""
    return frame["income"].to_numpy() * 2


class AddOne(TransformerMixin, BaseEstimator):
    """A custom estimator: skops does not know this type, so loading it needs trusted=True."""

    def fit(self, X: object, y: object = None) -> AddOne:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X) + 1


# -- scikit-learn ---------------------------------------------------------------------------------
def test_sklearn_pipeline_with_categoricals_round_trips_as_a_skops_zip(
    ws: keel.Workspace, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = frame
    X = X.assign(city=np.where(X["age"] > 40, "north", "south"))  # a plain string column too
    pipe = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "income"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "city"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(X, y)
    mv = ws.models.register("churn", pipe, X=X)
    data = _blob(ws, mv.ref)
    assert mv.flavor == "sklearn" and zipfile.is_zipfile(io.BytesIO(data))
    assert "schema.json" in zipfile.ZipFile(io.BytesIO(data)).namelist()  # skops' layout, not a pickle
    loaded = ws.models.load("churn@1")
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), pipe.predict_proba(X), rtol=0, atol=1e-12)
    # Records with plain strings for the categorical column give the same answer.
    records = X.head(5).astype({"plan": str}).to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(records), pipe.predict(X.head(5)))


def test_sklearn_estimator_fitted_on_an_array_predicts_the_same(ws: keel.Workspace) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 3)), rng.normal(size=80)
    est = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)
    ws.models.register("rf", est, X=X)
    np.testing.assert_array_equal(ws.models.load("rf").predict(X), est.predict(X))


def test_skops_file_with_an_unknown_custom_type_needs_trusted(ws: keel.Workspace) -> None:
    X = np.arange(12.0).reshape(6, 2)
    pipe = Pipeline([("add", AddOne()), ("clf", LogisticRegression())]).fit(X, [0, 1] * 3)
    with pytest.raises(InvalidModelError, match=r"AddOne.*register\(\.\.\., trusted=True\)"):
        ws.models.register("custom", pipe, X=X)  # the server could never load it
    assert ws.models.list() == []
    ws.models.register("custom", pipe, X=X, trusted=True)
    with pytest.raises(UnsafeLoadError, match=r"AddOne.*trusted=True"):
        ws.models.load("custom")
    np.testing.assert_array_equal(ws.models.load("custom", trusted=True).predict(X), pipe.predict(X))


# -- LightGBM -------------------------------------------------------------------------------------
def test_lightgbm_classifier_round_trips_as_booster_text(
    ws: keel.Workspace, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = frame
    labels = np.where(y == 1, "churn", "stay")
    clf = lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(X, labels)
    mv = ws.models.register("lgb-clf", clf, X=X)
    data = _blob(ws, mv.ref)
    assert mv.flavor == "lightgbm" and b"tree\nversion=" in data and not data.startswith(b"\x80")
    loaded = ws.models.load("lgb-clf")
    assert loaded.classes == ("churn", "stay")
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12)


def test_lightgbm_multiclass_and_regressor_predict_the_same(
    ws: keel.Workspace, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = frame
    classes = np.array([3, 5, 9])[X["age"].to_numpy() % 3]
    clf = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, classes)
    ws.models.register("lgb-multi", clf, X=X)
    loaded = ws.models.load("lgb-multi")
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12)

    reg = lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, X["income"] * 3)
    mv = ws.models.register("lgb-reg", reg, X=X)
    assert mv.signature is not None and mv.signature.output == "regression"
    regressor = ws.models.load("lgb-reg")
    np.testing.assert_allclose(regressor.predict(X), reg.predict(X), rtol=0, atol=1e-12)
    assert not regressor.has_proba
    with pytest.raises(InvalidInputError, match="does not give class probabilities"):
        regressor.predict_proba(X)


def test_raw_lightgbm_booster_round_trips(ws: keel.Workspace) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 4))
    booster = lgb.train(
        {"objective": "binary", "verbose": -1}, lgb.Dataset(X, (X[:, 0] > 0).astype(int)), num_boost_round=5
    )
    mv = ws.models.register("booster", booster, X=X)
    assert mv.signature is not None and mv.signature.output == "classification"
    np.testing.assert_allclose(ws.models.load("booster").predict(X), booster.predict(X), rtol=0, atol=1e-12)


# -- XGBoost --------------------------------------------------------------------------------------
def test_xgboost_classifier_with_categoricals_round_trips(
    ws: keel.Workspace, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = frame
    clf = xgb.XGBClassifier(n_estimators=10, max_depth=3, enable_categorical=True, tree_method="hist").fit(X, y)
    mv = ws.models.register("xgb-clf", clf, X=X)
    data = _blob(ws, mv.ref)
    assert mv.flavor == "xgboost" and b'"learner"' in data  # XGBoost's JSON format
    loaded = ws.models.load("xgb-clf")
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12)


def test_xgboost_regressor_round_trips(ws: keel.Workspace, frame: tuple[pd.DataFrame, pd.Series]) -> None:
    X, _ = frame
    numeric = X[["age", "income"]]
    reg = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(numeric, X["income"] * 2)
    ws.models.register("xgb-reg", reg, X=numeric)
    np.testing.assert_allclose(ws.models.load("xgb-reg").predict(numeric), reg.predict(numeric), rtol=0, atol=1e-12)


# -- callables and pickle -------------------------------------------------------------------------
def test_module_level_function_is_stored_by_import_path(
    ws: keel.Workspace, frame: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = frame
    mv = ws.models.register("rule", double_income, X=X)
    assert mv.flavor == "callable"
    assert _blob(ws, mv.ref).endswith(b'test_flavors:double_income"}')
    with pytest.raises(UnsafeLoadError, match="trusted=True"):
        ws.models.load("rule")  # importing and calling a named function is code execution: opt in
    np.testing.assert_array_equal(ws.models.load("rule", trusted=True).predict(X), X["income"].to_numpy() * 2)


def test_lambda_is_refused_with_a_clear_error_and_nothing_is_stored(ws: keel.Workspace) -> None:
    for flavor in (None, "callable"):
        with pytest.raises(InvalidInputError, match=r"lambda.*module-level function.*flavor='pickle'"):
            ws.models.register("rule", lambda frame: frame, flavor=flavor)
    assert ws.models.list() == [] and list(ws._blobs.iter_blobs()) == []


def test_pickle_is_used_only_when_asked_and_loads_only_when_trusted(ws: keel.Workspace) -> None:
    class Opaque:  # no safe format for this
        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return np.zeros(len(X))

    with pytest.raises(InvalidInputError, match=r"no safe format.*flavor='pickle'"):
        ws.models.register("opaque", Opaque())
    mv = ws.models.register("lam", lambda frame: frame["x"] + 1, flavor="pickle")
    assert mv.flavor == "pickle"
    with pytest.raises(UnsafeLoadError, match="trusted=True"):
        ws.models.load("lam")
    loaded = ws.models.load("lam", trusted=True)
    assert loaded.model(pd.DataFrame({"x": [1, 2]})).tolist() == [2, 3]


def test_safe_flavours_never_write_a_pickle(frame: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = frame
    for name, model in [
        ("sklearn", LogisticRegression().fit(X[["age"]], y)),
        ("lightgbm", lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(X, y)),
    ]:
        with pytest.raises(pickle.UnpicklingError):
            pickle.loads(get_flavor(name).save(model))  # noqa: S301 - proving it is not a pickle


def failing_rule(frame: pd.DataFrame) -> np.ndarray:
    raise ZeroDivisionError("bad rule")


def test_a_callable_model_that_raises_is_reported_as_user_code(ws: keel.Workspace) -> None:
    ws.models.register("bad-rule", failing_rule)
    with pytest.raises(UserCodeError, match=r"bad-rule@1 raised ZeroDivisionError: bad rule") as info:
        ws.models.load("bad-rule", trusted=True).predict(pd.DataFrame({"x": [1]}))
    assert isinstance(info.value.__cause__, ZeroDivisionError)
