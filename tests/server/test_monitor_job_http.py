"""`POST .../monitor/run` answers 202 with a job at once (the check ran in the request for 16.8 s
under load before); `PUT .../monitor` validates every setting before anything is stored; alert
ids past 64 bits are a 4xx; a failing monitor shows in `GET .../monitor`."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from test_monitoring_http import auth, check, finished  # tests/server is on sys.path (rootdir import mode)

import keel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def watched(served_ws: keel.Workspace, cancer: pd.DataFrame) -> keel.Workspace:
    """'tumor' watched over its newest 200 predictions, which are logged; no classifier (speed)."""
    served_ws.monitoring.watch("tumor", window_rows=200, multivariate=False)
    served_ws.predictions.write("tumor", 1, cancer.drop(columns="target").head(200))
    return served_ws


def test_a_check_is_a_job_answered_at_once_with_its_url(
    client: Any, tokens: dict[str, str], watched: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = keel.monitoring.monitor.Monitoring._check  # type: ignore[attr-defined]

    def slow(self: Any, model: str, at: Any) -> Any:
        assert release.wait(60), "the test never released the check"
        return real(self, model, at)

    monkeypatch.setattr(keel.monitoring.monitor.Monitoring, "_check", slow)  # type: ignore[attr-defined]
    r = client.post("/api/v1/models/tumor/monitor/run", headers=auth(tokens, "writer"))
    assert r.status_code == 202  # answered while the check waits
    job = r.json()
    assert job["kind"] == "monitor" and job["status"] in ("queued", "running") and job["created"] is True
    assert r.headers["location"] == f"/api/v1/jobs/{job['id']}" == job["url"]
    again = client.post("/api/v1/models/tumor/monitor/run", headers=auth(tokens, "writer")).json()
    assert again["id"] == job["id"] and again["created"] is False  # one check of a model at a time
    assert watched.monitoring.runs("tumor") == []
    release.set()

    done = finished(client, auth(tokens, "reader"), job)
    assert done["status"] == "succeeded" and done["result"]["rows"] == 200
    run_id = done["result"]["run"]
    assert done["run_url"] == f"/api/v1/models/tumor/monitor/runs/{run_id}"
    body = client.get(done["run_url"], headers=auth(tokens, "reader")).json()
    assert body["run"]["id"] == run_id and body["run"]["rows"] == 200
    assert {"feature": "", "metric": "rows", "value": 200.0} in body["values"]
    assert [r.id for r in watched.monitoring.runs("tumor")] == [run_id]


def test_jobs_and_checks_that_do_not_exist_are_404(
    client: Any, tokens: dict[str, str], watched: keel.Workspace, cancer: pd.DataFrame
) -> None:
    r = client.post("/api/v1/models/nope/monitor/run", headers=auth(tokens, "writer"))
    assert r.status_code == 404 and watched.jobs.list() == []  # nothing queued for an unknown model
    assert client.get("/api/v1/jobs/12345", headers=auth(tokens, "reader")).status_code == 404
    assert client.get("/api/v1/jobs/99999999999999999999", headers=auth(tokens, "reader")).status_code == 422
    assert client.get("/api/v1/models/tumor/monitor/runs/7", headers=auth(tokens, "reader")).status_code == 404
    run_id = check(client, tokens)["run"]["id"]
    X = cancer.drop(columns="target")
    watched.models.register("other", DummyClassifier().fit(X, cancer["target"]), X=X)
    assert client.get(f"/api/v1/models/other/monitor/runs/{run_id}", headers=auth(tokens, "reader")).status_code == 404


def test_a_failed_check_is_a_failed_job_and_the_monitor_shows_failing_since(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace
) -> None:
    served_ws.monitoring.watch("tumor", reference="cancer@1", multivariate=False)
    store = served_ws.monitoring._meta.monitors
    store.save_monitor("tumor", {**store.get_monitor("tumor")[0], "thresholds": "x"})  # as an older Keel stored it
    r = client.post("/api/v1/models/tumor/monitor/run", headers=auth(tokens, "writer"))
    job = finished(client, auth(tokens, "reader"), r.json())
    assert job["status"] == "failed" and "thresholds" in job["error"]
    status = client.get("/api/v1/models/tumor/monitor", headers=auth(tokens, "reader")).json()
    assert status["failing"]["failed_checks"] == 1 and "thresholds" in status["failing"]["error"]
    assert status["failing"]["since"] and status["config"]["window_rows"] == 1000  # the settings that still validate
    [alert] = [
        a
        for a in client.get("/api/v1/alerts?model=tumor", headers=auth(tokens, "reader")).json()
        if a["rule"] == "monitor-failing"
    ]
    assert alert["id"] == status["failing"]["alert"] and alert["severity"] == "critical"

    r = client.put("/api/v1/models/tumor/monitor", json={"thresholds": {"psi": 0.3}}, headers=auth(tokens, "admin"))
    assert r.status_code == 200, r.text
    check(client, tokens)
    assert client.get("/api/v1/models/tumor/monitor", headers=auth(tokens, "reader")).json()["failing"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "other"}, "model"),
        ({"self": 1}, "self"),
        ({"model": "x", "self": 1, "windw": 3}, "model, self, windw"),
        ({"window_rows": "x"}, "window_rows"),
        ({"window_rows": 1.5}, "window_rows"),
        ({"window_rows": True}, "window_rows"),
        ({"window_rows": 0}, "window_rows"),
        ({"thresholds": "x"}, "thresholds"),
        ({"thresholds": {"psi": "0.3"}}, "thresholds"),
        ({"schedule_s": "60"}, "schedule_s"),
        ({"schedule_s": -1}, "schedule_s"),
        ({"multivariate": "yes"}, "multivariate"),
        ({"reference": ""}, "reference"),
    ],
)
def test_put_monitor_refuses_bad_settings_with_422_naming_them_and_stores_nothing(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace, body: dict[str, Any], field: str
) -> None:
    served_ws.monitoring.watch("tumor", window_rows=500)
    before = served_ws.monitoring._meta.monitors.get_monitor("tumor")
    r = client.put("/api/v1/models/tumor/monitor", json=body, headers=auth(tokens, "admin"))
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["detail"]
    assert served_ws.monitoring._meta.monitors.get_monitor("tumor") == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"window_rows": NaN}', "window_rows"),
        ('{"window_s": NaN, "window_rows": null}', "window_s"),
        ('{"schedule_s": Infinity}', "schedule_s"),
        ('{"thresholds": {"psi": NaN}}', "thresholds"),
    ],
)
def test_put_monitor_refuses_nan_and_infinity(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace, raw: str, field: str
) -> None:
    """Before: `window_rows: NaN` was stored as null."""
    r = client.put(
        "/api/v1/models/tumor/monitor",
        content=raw,
        headers={**auth(tokens, "admin"), "content-type": "application/json"},
    )
    assert r.status_code == 422 and field in r.text
    assert served_ws.monitoring.monitors() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schedule_s": 1e308}, "schedule_s"),
        ({"window_rows": 10**30}, "window_rows"),
        ({"thresholds": {"pis": 0.3}}, "pis"),
        ({"reference": "missing@1"}, "missing"),
    ],
)
def test_put_monitor_refuses_out_of_range_settings_with_4xx_and_stores_nothing(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace, body: dict[str, Any], field: str
) -> None:
    """Before: schedule_s 1e308 was accepted."""
    r = client.put("/api/v1/models/tumor/monitor", json=body, headers=auth(tokens, "admin"))
    assert r.status_code in (400, 404, 422) and field in r.text
    assert served_ws.monitoring.monitors() == []


def test_put_monitor_keeps_settings_not_given_and_can_switch_windows(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace
) -> None:
    h = auth(tokens, "admin")
    assert (
        client.put("/api/v1/models/tumor/monitor", json={"window_rows": 300, "schedule_s": 60}, headers=h).status_code
        == 200
    )
    r = client.put("/api/v1/models/tumor/monitor", json={"window_s": 3600, "window_rows": None}, headers=h)
    assert r.status_code == 200 and (r.json()["window_s"], r.json()["window_rows"], r.json()["schedule_s"]) == (
        3600,
        None,
        60,
    )


@pytest.mark.parametrize("action", ["ack", "resolve"])
def test_alert_ids_past_64_bits_are_a_4xx_not_an_overflow(client: Any, tokens: dict[str, str], action: str) -> None:
    r = client.post(f"/api/v1/alerts/99999999999999999999/{action}", headers=auth(tokens, "writer"))
    assert r.status_code in (404, 422) and r.json()["error"]["field"] == "alert_id"
    assert client.post(f"/api/v1/alerts/{2**63 - 1}/{action}", headers=auth(tokens, "writer")).status_code == 404
