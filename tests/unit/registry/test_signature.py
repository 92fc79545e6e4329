"""Signatures: inferred from training input; predict() input is checked and coerced against them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import keel
from keel.entities import ColumnSpec, Signature
from keel.errors import SignatureError
from keel.registry import infer_signature, validate_input
from keel.registry.signature import NumericRecords

SIG = Signature(
    (
        ColumnSpec("age", "integer"),
        ColumnSpec("income", "float"),
        ColumnSpec("plan", "category", ("basic", "pro")),
        ColumnSpec("city", "string"),
    ),
    "classification",
    (0, 1),
)


def _row(**changes: object) -> dict[str, object]:
    return {"age": 30, "income": 41.5, "plan": "pro", "city": "Oslo", **changes}


def test_infer_signature_reads_column_types_output_kind_and_classes() -> None:
    X = pd.DataFrame(
        {
            "age": [30, 40],
            "income": [1.0, 2.0],
            "plan": pd.Categorical(["basic", "pro"]),
            "city": ["Oslo", "Rome"],
            "vip": [True, False],
            "since": pd.to_datetime(["2024-01-01", "2024-02-01"]),
        }
    )
    clf = LogisticRegression().fit(X[["age", "income"]], ["no", "yes"])
    sig = infer_signature(clf, X)
    assert [(c.name, c.type) for c in sig.inputs] == [
        ("age", "integer"),
        ("income", "float"),
        ("plan", "category"),
        ("city", "string"),
        ("vip", "boolean"),
        ("since", "datetime"),
    ]
    assert sig.inputs[2].categories == ("basic", "pro")
    assert (sig.output, sig.classes) == ("classification", ("no", "yes"))
    assert infer_signature(LinearRegression().fit([[0], [1]], [0, 1]), [[0]]).output == "regression"
    assert Signature.from_dict(sig.to_dict()) == sig


def test_validate_input_reorders_and_coerces_columns() -> None:
    out = validate_input([{"city": "Oslo", "plan": "basic", "income": 40, "age": 31.0}], SIG)
    assert list(out.columns) == ["age", "income", "plan", "city"]
    assert out["age"].dtype == np.int64 and out["income"].dtype == np.float64
    assert isinstance(out["plan"].dtype, pd.CategoricalDtype) and list(out["plan"].cat.categories) == ["basic", "pro"]


def test_signature_error_names_missing_extra_and_mistyped_columns() -> None:
    bad = _row(income="a lot", colour="red")
    del bad["city"]
    with pytest.raises(SignatureError) as info:
        validate_input([bad], SIG)
    err = info.value
    assert err.missing == ("city",) and err.extra == ("colour",)
    assert err.mistyped == (("income", "float", "string"),)
    assert str(err) == (
        "Input does not match the model signature: missing column city; unexpected column colour; "
        "column income should be float but is string"
    )


def test_array_input_is_read_by_position_and_must_have_every_column() -> None:
    assert validate_input(np.array([[30, 41.5, "pro", "Oslo"]], dtype=object), SIG)["age"].tolist() == [30]
    with pytest.raises(SignatureError, match=r"Expected 4 columns \(age, income, plan, city\), got 2"):
        validate_input(np.array([[30, 41.5]]), SIG)


def test_loaded_model_validates_input_before_predicting(ws: keel.Workspace) -> None:
    X = pd.DataFrame({"age": [20, 30, 40, 50], "income": [10.0, 20.0, 30.0, 40.0]})
    est = LogisticRegression().fit(X, [0, 0, 1, 1])
    ws.models.register("m", est, X=X)
    model = ws.models.load("m")
    with pytest.raises(SignatureError, match="missing column income") as info:
        model.predict(X[["age"]])
    assert info.value.missing == ("income",)
    with pytest.raises(SignatureError, match="column age should be integer but is string"):
        model.predict_proba(X.assign(age="old"))
    # Reordered columns and a dict of columns are fine and give the original's answers.
    np.testing.assert_array_equal(model.predict(X[["income", "age"]]), est.predict(X))
    np.testing.assert_array_equal(model.predict({"age": [20], "income": [10.0]}), est.predict(X.head(1)))


NUMERIC = Signature(
    (ColumnSpec("age", "integer"), ColumnSpec("income", "float"), ColumnSpec("kids", "integer")), "regression"
)


def _num(**changes: object) -> dict[str, object]:
    return {"age": 30, "income": 41.5, "kids": 2, **changes}


@pytest.mark.parametrize(
    "records",
    [
        [_num()],
        _num(),  # one record as a dict
        [_num(kids=None), _num(age=41, income=3, kids=1)],  # a missing value; an int in a float column
        [_num(age=30.0), _num(age=41.0)],  # whole floats in an integer column
        [_num(kids=None)],
    ],
)
def test_numeric_fast_path_gives_what_validate_input_gives(records: object) -> None:
    fast = NumericRecords(NUMERIC)
    array = fast.to_array(records)
    expected = validate_input(records, NUMERIC)
    assert array is not None and array.dtype == np.float64
    np.testing.assert_array_equal(array, expected.to_numpy(dtype=np.float64))
    pd.testing.assert_frame_equal(fast.to_frame(array), expected)


@pytest.mark.parametrize(
    "records",
    [
        [{"age": 30, "income": 41.5}],  # a missing column
        [_num(colour="red")],  # an extra one
        [_num(), {"age": 30, "income": 41.5}],  # a later record missing one
        [_num(age="30")],
        [_num(age=30.5)],  # a fraction in an integer column: validate_input refuses it by name
        [_num(age=True)],
        [_num(age=np.int64(30))],
        [_num(age=2**60)],  # does not survive float64
        {"age": [30], "income": [41.5], "kids": [2]},  # a dict of columns
        [],
        [[30, 41.5, 2]],
        "age",
    ],
)
def test_numeric_fast_path_leaves_everything_else_to_validate_input(records: object) -> None:
    assert NumericRecords(NUMERIC).to_array(records) is None


def test_numeric_fast_path_applies_only_to_integer_and_float_columns() -> None:
    assert NumericRecords.applies(NUMERIC) and not NumericRecords.applies(SIG)
    with pytest.raises(ValueError, match="Not an all-numeric signature"):
        NumericRecords(SIG)


def test_records_are_predicted_like_a_frame_by_every_kind_of_model(ws: keel.Workspace) -> None:
    import warnings

    import lightgbm as lgb

    X = pd.DataFrame({"age": [20, 31, 42, 53] * 10, "income": np.linspace(1.0, 90.0, 40), "kids": [0, 1, 2, 3] * 10})
    y = (X["income"] > 45).astype("int64")
    models = {
        "lgbm": lgb.LGBMClassifier(n_estimators=5, min_child_samples=2, verbose=-1).fit(
            X, y
        ),  # array in signature order
        "named": LogisticRegression().fit(X, y),  # fitted on a frame: gets a typed frame
        "unnamed": LogisticRegression().fit(X.to_numpy(), y),  # fitted on an array: gets an array
    }
    head = X.head(5)
    records = head.to_dict(orient="records")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. scikit-learn's "X does not have valid feature names"
        for name, est in models.items():
            ws.models.register(name, est, X=X)
            model = ws.models.load(name)
            np.testing.assert_array_equal(model.predict(records), model.predict(head))
            np.testing.assert_allclose(
                model.predict_proba(records), est.predict_proba(head if name != "unnamed" else head.to_numpy())
            )
            labels, proba = model.predict_and_proba(records)
            np.testing.assert_array_equal(labels, est.predict(head if name != "unnamed" else head.to_numpy()))
            np.testing.assert_allclose(proba, model.predict_proba(head))
    with pytest.raises(SignatureError, match="unexpected column colour"):  # errors still come from validate_input
        ws.models.load("lgbm").predict([{**records[0], "colour": "red"}])
