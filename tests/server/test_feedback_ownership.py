"""Feedback ownership: a token below the writer role labels only the predictions it asked for."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import keel
from keel.entities import Role
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _predict(client: Any, token: str, rows: list[dict[str, Any]]) -> list[str]:
    r = client.post("/api/v1/models/tumor/predict", json=rows, headers=_auth(token))
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()["predictions"]]


def _feedback(client: Any, token: str | None, labels: dict[str, Any]) -> Any:
    body = {"feedback": [{"id": i, "label": v} for i, v in labels.items()]}
    return client.post("/api/v1/models/tumor/feedback", json=body, headers=_auth(token) if token else {})


@pytest.fixture
def other_predictor(served_ws: keel.Workspace, tokens: dict[str, str]) -> str:
    return served_ws.tokens.create("t-predictor-2", Role.PREDICTOR)[0]


def test_a_predictor_labels_its_own_predictions_but_not_another_tokens(
    client: Any,
    served_ws: keel.Workspace,
    tokens: dict[str, str],
    other_predictor: str,
    cancer: pd.DataFrame,
    records: Any,
) -> None:
    mine = _predict(client, tokens["predictor"], records(cancer, 2))
    theirs = _predict(client, other_predictor, records(cancer, 1))
    assert _feedback(client, tokens["predictor"], {mine[0]: 1}).json()["stored"] == 1
    # all or nothing: one foreign id refuses the whole call, naming it, and stores nothing
    r = _feedback(client, tokens["predictor"], {mine[1]: 0, theirs[0]: 1})
    assert r.status_code == 403
    detail = r.json()["error"]["detail"]
    assert theirs[0] in detail and mine[1] not in detail and "writer" in detail
    labelled = served_ws.predictions.window("tumor", labelled_only=True)
    assert dict(zip(labelled["__id"], labelled["__label"], strict=True)) == {mine[0]: 1}
    assert _feedback(client, other_predictor, {theirs[0]: 0}).status_code == 200


def test_writers_and_admins_label_any_prediction(
    client: Any, served_ws: keel.Workspace, tokens: dict[str, str], cancer: pd.DataFrame, records: Any
) -> None:
    ids = _predict(client, tokens["predictor"], records(cancer, 2))
    assert _feedback(client, tokens["writer"], {ids[0]: 1}).status_code == 200
    assert _feedback(client, tokens["admin"], {ids[1]: 0}).status_code == 200
    assert _feedback(client, tokens["reader"], {ids[0]: 0}).status_code == 403  # role too low for feedback at all
    assert served_ws.predictions.window("tumor")["__label"].tolist() == [1, 0]


def test_the_log_records_which_token_made_each_prediction(
    client: Any, served_ws: keel.Workspace, tokens: dict[str, str], cancer: pd.DataFrame, records: Any
) -> None:
    ids = _predict(client, tokens["predictor"], records(cancer, 2))
    X = cancer.drop(columns="target").head(5)
    r = client.post(
        "/api/v1/models/tumor/predict/batch",
        content=X.to_csv(index=False),
        headers={"content-type": "text/csv", **_auth(tokens["writer"])},
    )
    assert r.status_code == 200
    state_of(client.app).predlog.flush()
    prefix = {t.name: t.prefix for t in served_ws.tokens.list()}
    made = served_ws.predictions.makers("tumor", served_ws.predictions.window("tumor")["__id"])
    assert [made[i] for i in ids] == [prefix["t-predictor"]] * 2
    assert sorted(v for k, v in made.items() if k not in ids) == [prefix["t-writer"]] * 5


def test_predictions_without_a_recorded_token_need_the_writer_role(
    client: Any, served_ws: keel.Workspace, tokens: dict[str, str]
) -> None:
    served_ws.predictions.write("tumor", 1, pd.DataFrame({"mean_radius": [1.0], "__prediction": [1]}))  # from Python
    pid = served_ws.predictions.window("tumor")["__id"].iloc[0]
    assert _feedback(client, tokens["predictor"], {pid: 1}).status_code == 403
    assert _feedback(client, tokens["writer"], {pid: 1}).status_code == 200


def test_without_tokens_the_local_admin_labels_everything(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    ids = [p["id"] for p in client.post("/api/v1/models/tumor/predict", json=records(cancer, 1)).json()["predictions"]]
    state_of(client.app).predlog.flush()
    assert served_ws.predictions.makers("tumor", ids) == {ids[0]: "local"}
    assert _feedback(client, None, {ids[0]: 1}).status_code == 200


def test_the_python_api_checks_the_maker_when_asked(served_ws: keel.Workspace) -> None:
    log = served_ws.predictions.logger(flush_interval_s=60)
    log.log("m", 1, [{"x": 1.0}, {"x": 2.0}], predictions=[0, 1], by="keel_abc")
    log.close()
    ids = served_ws.predictions.window("m")["__id"].tolist()
    with pytest.raises(keel.errors.AccessDeniedError, match=ids[1]):
        served_ws.predictions.feedback("m", {ids[1]: 1}, made_by="keel_xyz")
    assert served_ws.predictions.feedback("m", {ids[1]: 1}, made_by="keel_abc") == 1
    assert served_ws.predictions.feedback("m", {ids[0]: 0}) == 1  # no check asked: Python callers hold the store
