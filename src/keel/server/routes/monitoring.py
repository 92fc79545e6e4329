"""Monitoring over HTTP: monitor settings, checks, results over time, alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from keel.entities import Role
from keel.server.auth import Principal, need
from keel.server.schemas import dump

router = APIRouter(prefix="/api/v1")
reader = Depends(need(Role.READER))
writer = Depends(need(Role.WRITER))
admin = Depends(need(Role.ADMIN))


def _mon(request: Request) -> Any:
    return request.app.state.ws.monitoring


def alert_payload(alert: Any) -> dict[str, Any]:
    return {**dump(alert), "feature": alert.feature}


def run_payload(result: Any) -> dict[str, Any]:
    return {
        "run": dump(result.run),
        "values": [{"feature": f, "metric": m, "value": v} for f, m, v in result.values],
        "drifted_features": list(result.drifted_features),
        "alerts": [alert_payload(a) for a in result.alerts],
    }


@router.get("/models/{name}/monitor", tags=["monitoring"])
def monitor_status(name: str, request: Request, _: Principal = reader) -> dict[str, Any]:
    """The monitor's settings and its latest check with every value."""
    mon = _mon(request)
    latest = mon.latest(name)
    return {
        "model": name,
        "config": dump(mon.config(name)),
        "latest": None if latest is None else {
            "run": dump(latest[0]),
            "values": [{"feature": f, "metric": m, "value": v} for f, m, v in latest[1]],
        },
    }  # fmt: skip


@router.put("/models/{name}/monitor", tags=["monitoring"])
def configure_monitor(name: str, body: dict[str, Any], request: Request, _: Principal = admin) -> dict[str, Any]:
    """Create or change the monitor (window_rows or window_s, reference, target, schedule_s, ...)."""
    return dump(_mon(request).watch(name, **body))  # type: ignore[no-any-return]


@router.post("/models/{name}/monitor/run", tags=["monitoring"])
async def run_monitor(name: str, request: Request, _: Principal = writer) -> dict[str, Any]:
    """Check the newest window now."""
    result = await run_in_threadpool(_mon(request).run, name)
    request.app.state.monitor_gauges.update(name, result.values)
    return run_payload(result)


@router.get("/models/{name}/monitor/runs", tags=["monitoring"])
def monitor_runs(name: str, request: Request, limit: int = Query(default=50, ge=1, le=1000), _: Principal = reader) -> list[Any]:
    return dump(_mon(request).runs(name, limit=limit))  # type: ignore[no-any-return]


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
def list_alerts(request: Request, model: str | None = None, status: str | None = None, _: Principal = reader) -> list[Any]:
    """Alerts, newest first; `status` open, acknowledged, resolved, active (default) or all."""
    return [alert_payload(a) for a in _mon(request).alerts.list(model=model, status=status)]


@router.post("/alerts/{alert_id}/ack", tags=["alerts"])
def ack_alert(alert_id: int, request: Request, who: Principal = writer) -> Any:
    return alert_payload(_mon(request).alerts.ack(alert_id, by=who.name))


@router.post("/alerts/{alert_id}/resolve", tags=["alerts"])
def resolve_alert(alert_id: int, request: Request, who: Principal = writer) -> Any:
    return alert_payload(_mon(request).alerts.resolve(alert_id, by=who.name))
