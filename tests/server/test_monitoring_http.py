"""Monitoring through the server: traffic over HTTP, feedback, checks on demand and on schedule,
results and alerts over the API, gauges in /metrics, and an alert delivered to a real webhook."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest

import keel
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def auth(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[role]}"}


def finished(client: Any, headers: dict[str, str], job: dict[str, Any], timeout_s: float = 120) -> dict[str, Any]:
    """Poll a job until it is no longer queued or running."""
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job['id']} still {job['status']}"
        time.sleep(0.05)
        job = client.get(job["url"], headers=headers).json()
    return job


def check(client: Any, tokens: dict[str, str], model: str = "tumor") -> dict[str, Any]:
    """POST .../monitor/run (202, a job), wait for the job, and read the stored check it made."""
    r = client.post(f"/api/v1/models/{model}/monitor/run", headers=auth(tokens, "writer"))
    assert r.status_code == 202, r.text
    assert r.headers["location"] == r.json()["url"] == f"/api/v1/jobs/{r.json()['id']}"
    job = finished(client, auth(tokens, "reader"), r.json())
    assert job["status"] == "succeeded", job["error"]
    body = client.get(job["run_url"], headers=auth(tokens, "reader")).json()
    assert body["run"]["id"] == job["result"]["run"]
    alerts = {
        a["id"]: a
        for a in client.get(f"/api/v1/alerts?model={model}&status=all", headers=auth(tokens, "reader")).json()
    }
    return {**body, "alerts": [alerts[i] for i in job["result"]["alerts"]]}


def shifted(cancer: pd.DataFrame) -> list[dict[str, Any]]:
    """Every row of the data set with its tumours 40% larger: a drift in two features."""
    X = cancer.drop(columns="target").copy()
    X["mean_radius"] *= 1.4
    X["worst_area"] *= 1.4**2
    return X.to_dict(orient="records")  # type: ignore[no-any-return]


def test_a_shift_sent_over_http_is_caught_stored_exported_and_delivered(
    client: Any, app: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, tokens: dict[str, str], receiver: Any
) -> None:
    served_ws.monitoring.alerts.add_channel("oncall", "webhook", url=receiver.url)
    r = client.put(
        "/api/v1/models/tumor/monitor", json={"window_rows": 569, "schedule_s": 3600}, headers=auth(tokens, "admin")
    )
    assert r.status_code == 200 and r.json()["window_rows"] == 569

    r = client.post(
        "/api/v1/models/tumor/predict", json={"records": shifted(cancer)}, headers=auth(tokens, "predictor")
    )
    assert r.status_code == 200
    state_of(app).predlog.flush()

    body = check(client, tokens)
    assert set(body["drifted_features"]) == {"mean_radius", "worst_area"}
    assert {a["feature"] for a in body["alerts"] if a["rule"] == "feature-drift"} == {"mean_radius", "worst_area"}
    assert body["run"]["reference"] == "cancer@1" and body["run"]["rows"] == 569

    # the same alerts reached the webhook, with their evidence
    delivered = {
        req["body"]["evidence"]["feature"] for req in receiver.requests if req["body"]["rule"] == "feature-drift"
    }
    assert delivered == {"mean_radius", "worst_area"}

    status = client.get("/api/v1/models/tumor/monitor", headers=auth(tokens, "reader")).json()
    assert status["config"]["window_rows"] == 569 and status["latest"]["run"]["id"] == body["run"]["id"]
    series = client.get("/api/v1/models/tumor/monitor/series?metric=psi", headers=auth(tokens, "reader")).json()[
        "series"
    ]
    assert set(series) == {"mean_radius", "mean_texture", "mean_smoothness", "worst_area"}
    assert series["mean_radius"]["values"][0] > 0.2 > series["mean_texture"]["values"][0]
    runs = client.get("/api/v1/models/tumor/monitor/runs", headers=auth(tokens, "reader")).json()
    assert [run["id"] for run in runs] == [body["run"]["id"]]

    state_of(app).monitor_gauges.refresh(served_ws)  # what each tick of `keel serve` does
    metrics = client.get("/metrics", headers=auth(tokens, "reader")).text
    assert 'keel_monitor_value{feature="mean_radius",metric="drift",model="tumor"} 1.0' in metrics
    assert 'keel_monitor_value{feature="mean_texture",metric="drift",model="tumor"} 0.0' in metrics

    alerts = client.get("/api/v1/alerts?model=tumor&status=open", headers=auth(tokens, "reader")).json()
    alert_id = next(a["id"] for a in alerts if a["feature"] == "mean_radius")
    assert client.post(f"/api/v1/alerts/{alert_id}/ack", headers=auth(tokens, "reader")).status_code == 403
    acked = client.post(f"/api/v1/alerts/{alert_id}/ack", headers=auth(tokens, "writer")).json()
    assert acked["status"] == "acknowledged" and acked["acked_by"] == "t-writer"
    resolved = client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=auth(tokens, "writer")).json()
    assert resolved["status"] == "resolved"
    assert client.post("/api/v1/alerts/999999/ack", headers=auth(tokens, "writer")).status_code == 404


def test_feedback_over_http_feeds_the_performance_check(
    client: Any, app: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, tokens: dict[str, str]
) -> None:
    X = cancer.drop(columns="target")
    answer = client.post(
        "/api/v1/models/tumor/predict", json={"records": X.to_dict(orient="records")}, headers=auth(tokens, "predictor")
    ).json()
    state_of(app).predlog.flush()
    wrong = [{"id": p["id"], "label": int(1 - y)} for p, y in zip(answer["predictions"], cancer["target"], strict=True)]
    assert (
        client.post(
            "/api/v1/models/tumor/feedback", json={"feedback": wrong}, headers=auth(tokens, "predictor")
        ).status_code
        == 200
    )
    body = check(client, tokens)
    values = {(v["feature"], v["metric"]): v["value"] for v in body["values"]}
    assert values[("", "labelled_rows")] == 569
    assert values[("", "accuracy")] < 0.1 and values[("", "accuracy_drop")] > 0.8
    assert {"auc-drop", "accuracy-drop"} <= {a["rule"] for a in body["alerts"]}


def test_bad_monitor_settings_get_a_400_naming_them(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace
) -> None:
    r = client.put("/api/v1/models/tumor/monitor", json={"window_rows": 0}, headers=auth(tokens, "admin"))
    assert r.status_code == 422 and "window_rows" in r.text
    r = client.put("/api/v1/models/tumor/monitor", json={"windw": 3}, headers=auth(tokens, "admin"))
    assert r.status_code == 422 and "windw" in r.text
    assert client.put("/api/v1/models/nope/monitor", json={}, headers=auth(tokens, "admin")).status_code == 404
    assert served_ws.monitoring.monitors() == []


def test_the_scheduler_inside_the_server_runs_due_monitors(served_ws: keel.Workspace, cancer: pd.DataFrame) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    served_ws.monitoring.watch("tumor", window_rows=200, schedule_s=3600)
    served_ws.predictions.write("tumor", 1, cancer.drop(columns="target").head(200))
    app = create_app(served_ws, monitor_tick_s=0.05)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        deadline = time.monotonic() + 120  # a check trains a classifier: slow on a busy machine
        while not served_ws.monitoring.runs("tumor") and time.monotonic() < deadline:
            time.sleep(0.05)
        runs = served_ws.monitoring.runs("tumor")
        assert len(runs) == 1 and runs[0].rows == 200
        time.sleep(0.3)  # more ticks, but the schedule says once an hour
        assert len(served_ws.monitoring.runs("tumor")) == 1
        assert 'keel_monitor_value{feature="",metric="rows",model="tumor"} 200.0' in c.get("/metrics").text
    assert not state_of(app).monitor_scheduler._thread.is_alive()  # stopped with the server
