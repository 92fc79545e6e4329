"""A version registered with X keeps a sample of it (and its typical values), so it explains like one
with a linked training dataset; typical values come from all the training data, not a 200-row sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

import keel
from keel.registry.sample import SAMPLE_ROWS
from keel.registry.signature import infer_signature

pytest.importorskip("shap")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


def _data(n: int = 1200) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(
        {
            "tenure": rng.exponential(30.0, n).round(1),  # skewed: a small sample's median is far from the full one
            "income": rng.normal(50.0, 12.0, n),
            "plan": rng.choice(["basic", "basic", "basic", "pro", "max"], n),
        }
    )
    y = pd.Series(((X["tenure"] < 20) ^ (X["income"] > 55)).astype(int), name="churn")
    return X, y


def test_a_version_registered_with_X_alone_explains_as_with_a_dataset(ws: keel.Workspace) -> None:
    X, y = _data()
    numeric = X[["tenure", "income"]]
    ws.models.register("lin", LogisticRegression(max_iter=500).fit(numeric, y), X=numeric)
    ws.models.register(
        "knn", KNeighborsClassifier().fit(numeric[:300], y[:300]), X=numeric[:300]
    )  # small: permutation is slow

    stored = ws.models.training_sample("lin@1")
    assert stored is not None
    sample, typical = stored
    assert SAMPLE_ROWS // 2 < len(sample) <= SAMPLE_ROWS and list(sample.columns) == ["tenure", "income"]
    assert sample["tenure"].min() <= numeric["tenure"].quantile(
        0.01
    )  # evenly spread: the whole range, not the first rows
    assert typical == {
        "tenure": pytest.approx(numeric["tenure"].median(), abs=1e-12),
        "income": pytest.approx(numeric["income"].median(), abs=1e-12),
    }

    lin = ws.explain("lin@1", numeric.head(3))  # linear: needs the background's mean
    assert lin.explanation.method.startswith("linear")
    model = ws.models.load("lin@1").model
    np.testing.assert_allclose(lin.explanation.outputs, model.decision_function(numeric.head(3)), atol=1e-6)
    reasons = [r for rs in lin.reasons for r in rs]
    assert reasons and all("(typical missing)" not in r["text"] for r in reasons)
    assert all(
        r["typical"] == typical[r["feature"]] and f"(typical {typical[r['feature']]:.4g})" in r["text"] for r in reasons
    )

    knn = ws.explain("knn@1", numeric.head(1))  # model-agnostic: samples the background
    assert knn.explanation.method.startswith("permutation")
    lime = ws.explain_lime("knn@1", numeric.head(1), seeds=2)
    assert set(lime.weights) == {"tenure", "income"} and 0.0 <= lime.stability <= 1.0


def test_the_sample_is_referenced_so_gc_keeps_it(ws: keel.Workspace) -> None:
    X, y = _data(300)
    numeric = X[["tenure", "income"]]
    ws.models.register("lin", LogisticRegression(max_iter=500).fit(numeric, y), X=numeric)
    report = ws.gc(grace_s=0)
    assert report.deleted == ()
    assert ws.explain("lin@1", numeric.head(1)).explanation.method.startswith("linear")


def test_a_version_without_X_stores_no_sample_and_says_what_to_pass(ws: keel.Workspace) -> None:
    X, y = _data(300)
    numeric = X[["tenure", "income"]]
    model = KNeighborsClassifier().fit(numeric, y)
    ws.models.register("knn", model, signature=infer_signature(model, numeric))
    assert ws.models.training_sample("knn@1") is None
    with pytest.raises(keel.InvalidInputError, match="background"):
        ws.explain("knn@1", numeric.head(1))
    with pytest.raises(keel.InvalidInputError, match=r"register it with X=\.\.\. or trained_on="):
        ws.explain_lime("knn@1", numeric.head(1))


def test_the_sample_keeps_complete_rows_and_categories(ws: keel.Workspace) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y = _data(600)
    X.loc[::7, "income"] = np.nan
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["plan"]), (SimpleImputer(), ["tenure", "income"])
        ),
        LogisticRegression(max_iter=500),
    ).fit(X, y)
    ws.models.register("pipe", model, X=X)
    sample, typical = ws.models.training_sample("pipe@1")  # type: ignore[misc]
    assert not sample.isna().any().any() and set(sample["plan"]) == {"basic", "pro", "max"}
    assert typical["plan"] == "basic" and typical["income"] == pytest.approx(X["income"].median())
    result = ws.explain("pipe@1", X.head(2))
    assert set(result.explanation.features) == {"plan", "tenure", "income"}


def test_typical_values_come_from_the_whole_training_dataset(ws: keel.Workspace) -> None:
    X, y = _data()
    frame = X.assign(churn=y)
    ws.datasets.add("churn", frame)
    numeric = X[["tenure", "income"]]
    model = LogisticRegression(max_iter=500).fit(numeric, y)
    ws.models.register("lin", model, trained_on="churn@1")  # no X: the signature comes from the dataset's schema
    assert ws.models.training_sample("lin@1") is None
    result = ws.explain("lin@1", numeric.head(5))
    # The dataset's median, not the median of the 200-row background sample (22.5 against 29 in the issue).
    assert result.typical["tenure"] == pytest.approx(numeric["tenure"].median(), abs=1e-9)
    assert result.typical["income"] == pytest.approx(numeric["income"].median(), abs=1e-9)
    sample_median = float(numeric["tenure"].sample(n=200, random_state=0).median())
    assert abs(sample_median - numeric["tenure"].median()) > 0.5  # the test data tells the two apart
