"""What a first prediction runs into (issue 11): missing values for a model without an imputer,
a fraction in an integer column, and the training file's extra columns (its target)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

import keel
from keel.entities import ColumnSpec, Signature
from keel.errors import InvalidInputError, SignatureError
from keel.registry.signature import NumericRecords, extra_columns, validate_input


@pytest.fixture
def credit() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {"Age": rng.integers(18, 70, n), "Income": rng.normal(100, 20, n).round(1), "Debt": rng.integers(0, 5, n)}
    )
    frame["Status"] = np.where(frame["Income"] - 2 * frame["Debt"] > 95, "good", "bad")
    return frame


@pytest.fixture
def models(ws: keel.Workspace, credit: pd.DataFrame) -> keel.Workspace:
    """'plain': a logistic regression (no imputer); 'tolerant': a model that takes NaN."""
    X, y = credit.drop(columns="Status"), credit["Status"]
    ws.models.register("plain", LogisticRegression(max_iter=1000).fit(X, y), X=X)
    ws.models.register("tolerant", HistGradientBoostingClassifier(max_iter=20).fit(X, y), X=X)
    return ws


# -- missing values ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["record", "records", "frame"])
def test_missing_values_for_a_model_without_imputer_are_one_clear_error(models: keel.Workspace, shape: str) -> None:
    model = models.models.load("plain@1")
    records = [{"Age": 30, "Income": None, "Debt": 1}, {"Age": None, "Income": 80.0, "Debt": 2}]
    X = {"record": records[0], "records": records, "frame": pd.DataFrame(records)}[shape]
    with pytest.raises(SignatureError) as info:
        model.predict(X)
    message = str(info.value)
    assert "\n" not in message and "does not accept missing values" in message
    named = ["Income"] if shape == "record" else ["Age", "Income"]
    assert [c for c, _, got in info.value.mistyped] == named and all(
        got == "missing" for _, _, got in info.value.mistyped
    )
    assert all(c in message for c in named) and "Debt" not in message
    with pytest.raises(SignatureError, match="Income"):
        model.predict_proba(X)
    with pytest.raises(SignatureError, match="Income"):
        model.predict_and_proba(X)


def test_a_model_that_takes_missing_values_still_gets_them(models: keel.Workspace) -> None:
    labels = models.models.load("tolerant@1").predict([{"Age": 30, "Income": None, "Debt": 1}])
    assert labels.tolist()[0] in ("good", "bad")


def test_other_model_errors_are_not_reported_as_missing_values(models: keel.Workspace) -> None:
    model = models.models.load("plain@1")

    def broken(data: object) -> object:
        raise ValueError("something else went wrong")

    model.model.predict = broken  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="something else") as info:
        model.predict([{"Age": 30, "Income": None, "Debt": 1}])
    assert not isinstance(info.value, SignatureError)


# -- a fraction in an integer column -------------------------------------------------------------
SIG = Signature((ColumnSpec("Age", "integer"), ColumnSpec("Income", "float")), "classification", ("bad", "good"))


@pytest.mark.parametrize(
    "records", [[{"Age": 30.5, "Income": 1.0}], [{"Age": 30, "Income": 1.0}, {"Age": 30.5, "Income": None}]]
)
def test_a_fraction_in_an_integer_column_is_refused_by_name(records: list[dict[str, object]]) -> None:
    assert NumericRecords(SIG).to_array(records) is None  # the fast path leaves it to validate_input
    with pytest.raises(SignatureError) as info:
        validate_input(records, SIG)
    assert info.value.mistyped == (("Age", "integer", "float (30.5)"),)
    assert "column Age should be integer but is float (30.5)" in str(info.value)
    with pytest.raises(SignatureError, match="Age should be integer"):
        validate_input(pd.DataFrame(records), SIG)


def test_whole_floats_and_missing_values_still_fit_an_integer_column() -> None:
    out = validate_input([{"Age": 30.0, "Income": 1.0}, {"Age": 41.0, "Income": 2.0}], SIG)
    assert out["Age"].dtype == np.int64 and out["Age"].tolist() == [30, 41]
    gaps = validate_input([{"Age": 30.0, "Income": 1.0}, {"Age": None, "Income": 2.0}], SIG)
    assert gaps["Age"].isna().tolist() == [False, True]


def test_loaded_model_refuses_a_fraction_in_an_integer_column(models: keel.Workspace) -> None:
    model = models.models.load("plain@1")
    with pytest.raises(SignatureError, match="Age should be integer but is float"):
        model.predict({"Age": 30.5, "Income": 80.0, "Debt": 1})
    assert len(model.predict({"Age": 30.0, "Income": 80.0, "Debt": 1})) == 1


# -- extra columns -------------------------------------------------------------------------------
def test_extra_columns_are_refused_by_default_and_dropped_on_request(
    models: keel.Workspace, credit: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    model = models.models.load("plain@1")
    with_target = credit.head(5).assign(id=range(5))
    with pytest.raises(SignatureError) as info:
        model.predict(with_target)
    assert info.value.extra == ("Status", "id")
    assert model.extra_columns(with_target) == ("Status", "id")
    with caplog.at_level(logging.INFO, logger="keel.registry.loaded"):
        got = model.predict(with_target, extra="ignore")
    assert "Status, id" in caplog.text
    np.testing.assert_array_equal(got, model.predict(credit.head(5).drop(columns="Status")))
    records = with_target.to_dict(orient="records")
    np.testing.assert_array_equal(model.predict(records, extra="ignore"), got)
    np.testing.assert_allclose(
        model.predict_proba(records, extra="ignore"), model.predict_proba(credit.head(5).drop(columns="Status"))
    )
    assert model.predict_and_proba(records, extra="ignore")[0].tolist() == got.tolist()


def test_extra_ignore_still_refuses_missing_and_mistyped_columns(models: keel.Workspace) -> None:
    model = models.models.load("plain@1")
    with pytest.raises(SignatureError, match="missing column Debt") as info:
        model.predict([{"Age": 30, "Income": 80.0, "Status": "good"}], extra="ignore")
    assert info.value.extra == ()


def test_extra_must_be_error_or_ignore(models: keel.Workspace) -> None:
    with pytest.raises(InvalidInputError, match="extra must be"):
        models.models.load("plain@1").predict({"Age": 30, "Income": 80.0, "Debt": 1}, extra="drop")


def test_extra_columns_of_each_input_shape() -> None:
    assert extra_columns([{"Age": 1, "x": 2}, {"Age": 1, "y": 3, "x": 4}], SIG) == ("x", "y")
    assert extra_columns({"Age": [1], "z": [2]}, SIG) == ("z",)
    assert extra_columns(np.zeros((2, 2)), SIG) == ()
