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

SIG = Signature(
    (ColumnSpec("age", "integer"), ColumnSpec("income", "float"), ColumnSpec("plan", "category", ("basic", "pro")),
     ColumnSpec("city", "string")),
    "classification",
    (0, 1),
)  # fmt: skip


def _row(**changes: object) -> dict[str, object]:
    return {"age": 30, "income": 41.5, "plan": "pro", "city": "Oslo", **changes}


def test_infer_signature_reads_column_types_output_kind_and_classes() -> None:
    X = pd.DataFrame({"age": [30, 40], "income": [1.0, 2.0], "plan": pd.Categorical(["basic", "pro"]),
                      "city": ["Oslo", "Rome"], "vip": [True, False], "since": pd.to_datetime(["2024-01-01", "2024-02-01"])})  # fmt: skip
    clf = LogisticRegression().fit(X[["age", "income"]], ["no", "yes"])
    sig = infer_signature(clf, X)
    assert [(c.name, c.type) for c in sig.inputs] == [("age", "integer"), ("income", "float"), ("plan", "category"),
                                                      ("city", "string"), ("vip", "boolean"), ("since", "datetime")]  # fmt: skip
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
    assert str(err) == ("Input does not match the model signature: missing column city; unexpected column colour; "
                        "column income should be float but is string")  # fmt: skip


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
