"""Monitoring over HTTP: monitor settings, checks (as jobs), results over time, alerts; and the
status of any job, since a check answers with one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keel.entities import Role
from keel.refs import CHAMPION
from keel.server.auth import Principal, need
from keel.server.schemas import PositiveInt64, dump
from keel.server.state import server_state
from keel.workspace.payloads import MonitorPayload

router = APIRouter(prefix="/api/v1")
reader = Depends(need(Role.READER))
writer = Depends(need(Role.WRITER))
admin = Depends(need(Role.ADMIN))


def _mon(request: Request) -> Any:
    return server_state(request).ws.monitoring


def alert_payload(alert: Any) -> dict[str, Any]:
    return {**dump(alert), "feature": alert.feature}


def _values(values: list[tuple[str, str, float | None]]) -> list[dict[str, Any]]:
    return [{"feature": f, "metric": m, "value": v} for f, m, v in values]


def job_payload(job: Any) -> dict[str, Any]:
    """A job with its own URL and, for a finished monitor check, the URL of the stored check."""
    out = {**dump(job), "url": f"/api/v1/jobs/{job.id}"}
    if job.kind == "monitor" and job.result and job.result.get("run") is not None:
        out["run_url"] = f"/api/v1/models/{job.result['model']}/monitor/runs/{job.result['run']}"
    return out


_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # JSON numbers only, finite: not "0.2", not NaN


class MonitorSettings(BaseModel):
    """The settings to change; those not given keep their stored values. Types and lower bounds
    are checked here (422); ranges, the reference's existence and the thresholds' meaning by
    MonitorConfig, which every caller goes through (400 naming the field)."""

    model_config = ConfigDict(extra="forbid")

    window_rows: int | None = Field(
        default=None, strict=True, ge=1, description="Check the newest N predictions (null: use window_s)"
    )
    window_s: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        allow_inf_nan=False,
        description="Check the predictions of the last S seconds (null: use window_rows)",
    )
    reference: str | None = Field(
        default=None, min_length=1, max_length=300, description="NAME@VERSION of the reference data"
    )
    target: str | None = Field(
        default=None, min_length=1, max_length=300, description="The label column of the reference"
    )
    alias: str = Field(default=CHAMPION, min_length=1, max_length=128, description="The alias whose version is checked")
    schedule_s: float = Field(
        default=300.0, strict=True, gt=0, allow_inf_nan=False, description="How often `keel serve` checks"
    )
    min_rows: int = Field(
        default=100, strict=True, ge=1, description="Skip drift statistics below this many served rows"
    )
    multivariate: bool = Field(
        default=True, strict=True, description="Also train a classifier to tell reference from window"
    )
    thresholds: dict[str, _Number | None] = Field(
        default_factory=dict,
        max_length=16,
        description="Drift thresholds: psi, wasserstein_norm, js_distance, ks_stat, noise_quantile, share",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # extra="forbid" names one unknown key per answer; this names them all (e.g. 'model', 'self').
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"Unknown monitor setting(s): {', '.join(unknown)}; known: {', '.join(cls.model_fields)}"
                )
        return data


@router.get("/models/{name}/monitor", tags=["monitoring"])
def monitor_status(name: str, request: Request, _: Principal = reader) -> dict[str, Any]:
    """The monitor's settings, its latest check with every value, and whether it is failing
    (`failing`: since when, and why; null while its checks succeed)."""
    mon = _mon(request)
    latest = mon.latest(name)
    failing = mon.failing(name)
    return {
        "model": name,
        "config": dump(mon.config(name, strict=False)),
        "latest": None if latest is None else {"run": dump(latest[0]), "values": _values(latest[1])},
        "failing": None
        if failing is None
        else {
            "since": failing.opened_at.isoformat(),
            "last_seen": failing.last_seen_at.isoformat(),
            "failed_checks": failing.count,
            "error": failing.evidence.get("error"),
            "alert": failing.id,
        },
    }


@router.put("/models/{name}/monitor", tags=["monitoring"])
def configure_monitor(name: str, body: MonitorSettings, request: Request, _: Principal = admin) -> dict[str, Any]:
    """Create or change the monitor; the settings not given keep their values. Nothing is stored
    when any setting is refused."""
    return dump(_mon(request).watch(name, **body.model_dump(exclude_unset=True)))


@router.post("/models/{name}/monitor/run", tags=["monitoring"], status_code=202)
def run_monitor(name: str, request: Request, response: Response, _: Principal = writer) -> dict[str, Any]:
    """Check the newest window now, as a job: answers 202 at once with the job (`url`, also in
    `Location`). Poll it until `status` is 'succeeded' (its `result.run` is the stored check, at
    `run_url`) or 'failed' (`error`). While a check of this model is queued or running, asking
    again answers that job (`created` false)."""
    ws = server_state(request).ws
    ws.models.versions(name)  # an unknown model is a 404 now, not a failed job later
    check = MonitorPayload(name)
    job, created = ws.jobs.start(check.kind, check.to_dict(), dedup_key=check.dedup_key)
    payload = {**job_payload(job), "created": created}
    response.headers["Location"] = payload["url"]
    return payload


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(job_id: PositiveInt64, request: Request, _: Principal = reader) -> dict[str, Any]:
    """A job: kind, status ('queued', 'running', 'succeeded', 'failed'), result or error."""
    return job_payload(server_state(request).ws.jobs.get(job_id))


@router.get("/models/{name}/monitor/runs", tags=["monitoring"])
def monitor_runs(
    name: str, request: Request, limit: int = Query(default=50, ge=1, le=1000), _: Principal = reader
) -> list[Any]:
    return dump(_mon(request).runs(name, limit=limit))


@router.get("/models/{name}/monitor/runs/{run_id}", tags=["monitoring"])
def monitor_run(name: str, run_id: PositiveInt64, request: Request, _: Principal = reader) -> dict[str, Any]:
    """One stored check with every value, and the features that drifted in it."""
    mon = _mon(request)
    run = mon.get_run(name, run_id)
    return {
        "run": dump(run),
        "values": _values(mon.values(run.id)),
        "drifted_features": list(run.summary.get("drifted_features", [])),
    }


@router.get("/models/{name}/monitor/series", tags=["monitoring"])
def monitor_series(
    name: str,
    request: Request,
    metric: str = Query(..., description="e.g. psi, wasserstein_norm, accuracy, schema_violation_rate"),
    feature: str | None = Query(default=None, description="a feature, '' for model-level values, absent for all"),
    limit: int = Query(default=200, ge=1, le=5000),
    _: Principal = reader,
) -> dict[str, Any]:
    """{feature: {"at": [...], "values": [...]}} of one statistic over the newest checks."""
    out: dict[str, dict[str, list[Any]]] = {}
    for at, _run, feat, value in _mon(request).series(name, metric, feature=feature, limit=limit):
        s = out.setdefault(feat, {"at": [], "values": []})
        s["at"].append(at.isoformat())
        s["values"].append(value)
    return {"metric": metric, "series": out}


@router.get("/alerts", tags=["alerts"])
def list_alerts(
    request: Request, model: str | None = None, status: str | None = None, _: Principal = reader
) -> list[Any]:
    """Alerts, newest first; `status` open, acknowledged, resolved, active (default) or all."""
    return [alert_payload(a) for a in _mon(request).alerts.list(model=model, status=status)]


@router.post("/alerts/{alert_id}/ack", tags=["alerts"])
def ack_alert(alert_id: PositiveInt64, request: Request, who: Principal = writer) -> Any:
    return alert_payload(_mon(request).alerts.ack(alert_id, by=who.name))


@router.post("/alerts/{alert_id}/resolve", tags=["alerts"])
def resolve_alert(alert_id: PositiveInt64, request: Request, who: Principal = writer) -> Any:
    return alert_payload(_mon(request).alerts.resolve(alert_id, by=who.name))
