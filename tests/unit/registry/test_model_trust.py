"""A registered model cannot run code: what loads untrusted, and what registration refuses.

Issue 10: a writer registered a Pipeline whose FunctionTransformer held
functools.partial(numpy.savetxt, PATH); the next prediction wrote a file of their choosing.
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import scipy.io
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import SelectKBest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

import keel
from keel.errors import InvalidModelError, NotFoundError, UnsafeLoadError
from keel.registry import _skops_vetting as skops_vetting
from keel.registry import flavors as flavors_module
from keel.registry import get_flavor

SKLEARN = get_flavor("sklearn")


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    n = 200
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "income": rng.normal(50.0, 12.0, n),
            "plan": rng.choice(["basic", "pro", "max"], n),
        }
    )
    X.loc[::9, "income"] = np.nan
    y = pd.Series((rng.normal(size=n) + (X["plan"] == "pro") > 0.3).astype(int), name="y")
    return X, y


def _exploit(func: Any, kw_args: dict[str, Any] | None = None) -> Pipeline:
    """The issue's model: a fitted pipeline whose first step calls `func` on the input."""
    X = np.abs(np.random.default_rng(0).normal(size=(20, 2)))
    pipe = Pipeline(
        [
            ("f", FunctionTransformer(func=func, kw_args=kw_args, validate=False, check_inverse=False)),
            ("clf", LogisticRegression()),
        ]
    )
    pipe.steps[-1][1].fit(X, [0, 1] * 10)
    pipe.steps[0][1].fit(X)
    return pipe


# -- the exploit and its variants are refused at load ---------------------------------------------
def test_the_issue_exploit_is_refused_and_writes_nothing(ws: keel.Workspace, tmp_path: Path) -> None:
    target = tmp_path / "pwned.pth"
    pipe = _exploit(functools.partial(np.savetxt, str(target)), kw_args={"fmt": "%s"})
    data = SKLEARN.save(pipe)
    X = np.ones((2, 2))
    with pytest.raises(UnsafeLoadError, match=r"functools\.partial.*numpy\.savetxt.*trusted=True"):
        SKLEARN.load(data, trusted=False)
    # Registration refuses it, stores nothing, and so no predictor can ever load it.
    with pytest.raises(InvalidModelError, match="savetxt"):
        ws.models.register_artifact("evil", data, flavor="sklearn")
    with pytest.raises(InvalidModelError, match="savetxt"):
        ws.models.register("evil", pipe)
    assert ws.models.list() == [] and list(ws._blobs.iter_blobs()) == []
    # A copy stored before the fix (only trusted=True from Python can store one now) does not load either.
    ws.models.register("evil", pipe, trusted=True)
    with pytest.raises(UnsafeLoadError):
        ws.models.load("evil@1")
    assert not target.exists()
    # The exploit is real: loading it trusted and predicting writes the file.
    with pytest.raises(Exception):  # noqa: B017, PT011 - savetxt returns None, the classifier then fails
        ws.models.load("evil@1", trusted=True).model.predict(X)
    assert target.exists()


VARIANTS: dict[str, Callable[[Path], Any]] = {
    "numpy.save": lambda p: np.save,
    "numpy.load": lambda p: np.load,
    "numpy.memmap (a class used as a function)": lambda p: np.memmap,
    "partial(numpy.save)": lambda p: functools.partial(np.save, str(p)),
    "operator.methodcaller": lambda p: operator.methodcaller("tofile", str(p)),
    "operator.attrgetter": lambda p: operator.attrgetter("tofile"),
    "partial(builtins.open)": lambda p: functools.partial(open, str(p), "w"),
    "builtins.exec": lambda p: exec,
    "os.system": lambda p: os.system,
    "scipy.io.savemat": lambda p: functools.partial(scipy.io.savemat, str(p)),
    "pandas.read_pickle": lambda p: pd.read_pickle,
    "joblib.load": lambda p: joblib.load,
    "joblib.dump": lambda p: functools.partial(joblib.dump, filename=str(p)),
    "a function of keel's": lambda p: flavors_module.get_flavor,
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_function_references_need_trusted(variant: str, ws: keel.Workspace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    data = SKLEARN.save(_exploit(VARIANTS[variant](out / "file")))
    with pytest.raises(UnsafeLoadError, match="trusted=True"):
        SKLEARN.load(data, trusted=False)
    with pytest.raises(InvalidModelError, match="trusted=True"):
        ws.models.register_artifact("evil", data, flavor="sklearn")
    with pytest.raises(NotFoundError):
        ws.models.get("evil@latest")
    assert list(out.iterdir()) == []


def test_a_custom_scorer_needs_trusted() -> None:
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GridSearchCV

    X, y = np.random.default_rng(0).normal(size=(40, 2)), [0, 1] * 20
    search = GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=2, scoring=make_scorer(lambda a, b: 1.0)).fit(X, y)
    data = get_flavor("sklearn").save(search)
    with pytest.raises(UnsafeLoadError, match="function reference"):
        SKLEARN.load(data, trusted=False)


# -- legitimate models still load untrusted ---------------------------------------------------------
def _prep() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["age", "income"]),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                ["plan"],
            ),
        ]
    )


LEGIT: dict[str, Callable[[], Any]] = {
    "logistic pipeline": lambda: make_pipeline(_prep(), LogisticRegression(max_iter=1000)),
    "random forest": lambda: make_pipeline(_prep(), RandomForestClassifier(n_estimators=5, random_state=0)),
    "random forest regressor": lambda: make_pipeline(_prep(), RandomForestRegressor(n_estimators=3, random_state=0)),
    "gradient boosting": lambda: make_pipeline(_prep(), GradientBoostingClassifier(n_estimators=5)),
    "hist gradient boosting": lambda: make_pipeline(_prep(), HistGradientBoostingClassifier(max_iter=5)),
    "hist gradient boosting, categorical": lambda: HistGradientBoostingClassifier(
        max_iter=5, categorical_features="from_dtype"
    ),
    "decision tree": lambda: make_pipeline(_prep(), DecisionTreeClassifier(max_depth=3)),
    "ridge": lambda: make_pipeline(_prep(), Ridge()),
    "k nearest neighbours": lambda: make_pipeline(_prep(), KNeighborsClassifier()),
    "select k best": lambda: make_pipeline(_prep(), SelectKBest(k=2), LogisticRegression()),
    "tanh (a numpy ufunc)": lambda: make_pipeline(_prep(), FunctionTransformer(np.tanh), LogisticRegression()),
    "lightgbm in a pipeline": lambda: make_pipeline(_prep(), lgb.LGBMClassifier(n_estimators=3, verbose=-1)),
}


@pytest.mark.parametrize("kind", sorted(LEGIT))
def test_scikit_learn_models_register_and_load_untrusted(
    kind: str, ws: keel.Workspace, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = data
    if "categorical" in kind:
        X = X.assign(plan=X["plan"].astype("category")).fillna(0.0)
    model = LEGIT[kind]().fit(X, y if "regressor" not in kind and kind != "ridge" else X["age"])
    ws.models.register("m", model, X=X)
    loaded = ws.models.load("m")
    np.testing.assert_array_equal(loaded.predict(X.head(20)), model.predict(X.head(20)))


def test_text_pipeline_loads_untrusted(ws: keel.Workspace) -> None:
    texts = pd.DataFrame({"text": ["good day", "bad day", "good night", "bad night"] * 5})
    model = make_pipeline(ColumnTransformer([("w", TfidfVectorizer(), "text")]), LogisticRegression()).fit(
        texts, [1, 0, 1, 0] * 5
    )
    ws.models.register("words", model, X=texts)
    np.testing.assert_array_equal(ws.models.load("words").predict(texts), model.predict(texts))


# -- trees that would make scikit-learn read out of bounds -----------------------------------------
def _tampered_tree(field: str, value: int) -> DecisionTreeClassifier:
    X, y = np.random.default_rng(0).normal(size=(60, 3)), [0, 1, 1] * 20
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    state = tree.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][0] = value
    state["nodes"] = nodes
    tree.tree_.__setstate__(state)
    return tree


@pytest.mark.parametrize(("field", "value"), [("feature", 10_000), ("left_child", 10_000), ("right_child", 0)])
def test_a_tampered_tree_is_refused_before_it_predicts(field: str, value: int) -> None:
    data = SKLEARN.save(_tampered_tree(field, value))
    with pytest.raises(InvalidModelError, match="decision tree.*points outside"):
        SKLEARN.load(data, trusted=False)


def test_a_tampered_histogram_tree_is_refused() -> None:
    X, y = np.random.default_rng(0).normal(size=(100, 3)), [0, 1] * 50
    model = HistGradientBoostingClassifier(max_iter=2).fit(X, y)
    model._predictors[0][0].nodes["feature_idx"][0] = 99
    with pytest.raises(InvalidModelError, match="histogram gradient-boosting tree"):
        SKLEARN.load(SKLEARN.save(model), trusted=False)


def test_a_forest_whose_trees_expect_other_inputs_is_refused() -> None:
    X, y = np.random.default_rng(0).normal(size=(60, 3)), [0, 1, 1] * 20
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    forest.n_features_in_ = 1  # the forest would check 1 column, its trees read 3
    with pytest.raises(InvalidModelError, match="number of features"):
        SKLEARN.load(SKLEARN.save(forest), trusted=False)


# -- registration validates the artifact ------------------------------------------------------------
@pytest.mark.parametrize("flavor", ["sklearn", "lightgbm", "xgboost", "callable", "pickle", "policy"])
def test_random_bytes_are_refused_at_registration(flavor: str, ws: keel.Workspace) -> None:
    junk = os.urandom(512)
    with pytest.raises(InvalidModelError, match=f"Cannot register junk: the {flavor} artifact"):
        ws.models.register_artifact("junk", junk, flavor=flavor)
    assert ws.models.list() == [] and list(ws._blobs.iter_blobs()) == []


def test_an_unfitted_pipeline_is_refused(ws: keel.Workspace, data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, _ = data
    pipe = make_pipeline(_prep(), LogisticRegression())
    with pytest.raises(InvalidModelError, match=r"Pipeline is not fitted.*fit\(\)"):
        ws.models.register("unfit", pipe, X=X)
    with pytest.raises(InvalidModelError, match="not fitted"):
        ws.models.register_artifact("unfit", SKLEARN.save(pipe), flavor="sklearn")
    assert ws.models.list() == []


class Broken(ClassifierMixin, BaseEstimator):
    """Fitted, but predicting raises."""

    def fit(self, X: Any, y: Any) -> Broken:
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        raise RuntimeError("boom")


def test_a_model_that_fails_on_its_example_is_refused_and_nothing_changes(
    ws: keel.Workspace, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = data
    good = make_pipeline(_prep(), LogisticRegression()).fit(X, y)
    ws.models.register("m", good, X=X)
    ws.models.set_alias("m", "champion", version=1)
    with pytest.raises(InvalidModelError, match=r"fails on its input example \(5 rows\): RuntimeError: boom"):
        ws.models.register("m", Broken().fit(X, y), X=X, trusted=True)
    # An example the model cannot take (a column it was never fitted on is missing) is refused too.
    example = X.drop(columns="plan").head(3).to_dict(orient="records")
    with pytest.raises(InvalidModelError, match="fails on its input example"):
        ws.models.register_artifact("m", SKLEARN.save(good), flavor="sklearn", input_example=example)
    assert [v.version for v in ws.models.versions("m")] == [1]
    assert ws.models.get("m@champion").version == 1


def test_pickle_and_callable_artifacts_need_trusted_but_python_register_keeps_working(ws: keel.Workspace) -> None:
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0], [1]], [0, 1])
    data = get_flavor("pickle").save(model)
    with pytest.raises(InvalidModelError, match=r"pickle.*trusted=True"):
        ws.models.register_artifact("p", data, flavor="pickle")
    with pytest.raises(InvalidModelError, match=r"function 'os:system'.*trusted=True"):
        ws.models.register_artifact("p", b'{"callable": "os:system"}', flavor="callable")
    assert ws.models.list() == []
    assert ws.models.register_artifact("p", data, flavor="pickle", trusted=True).version == 1
    assert ws.models.register("p", model, flavor="pickle").version == 2  # in-process: the caller's own object


def test_registering_audits_the_saved_bytes_once_and_serving_reuses_it(
    ws: keel.Workspace, data: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    calls: list[int] = []
    vet = skops_vetting._vet_schema
    monkeypatch.setattr(skops_vetting, "_vet_schema", lambda d: calls.append(1) or vet(d))
    model = make_pipeline(_prep(), LogisticRegression(C=0.123)).fit(X, y)  # bytes no other test saved
    ws.models.register("m", model, X=X)
    ws.models.load("m").predict(X.head(3))
    assert calls == [1]
