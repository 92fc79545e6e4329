"""Monitoring pages: a model's drift, quality and performance over time, and alerts.

`/models/{name}/monitoring`: the monitor's settings and health ("failing since ..." with the
cause while its checks fail), open alerts (acknowledge and
resolve buttons for writers, through the JSON API), drift per feature over the recent checks,
reference against current distributions of the most drifted features, performance and data
quality over time, and the checks themselves. `/alerts`: every model's alerts. The one-glance
status per model of the overview and model pages is `base.health()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from keel.entities import MonitorRun, Role
from keel.server.auth import Principal
from keel.server.dashboard.base import page_router, reader, render, workspace
from keel.server.schemas import dump

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

__all__ = ["router"]

CHECKS = 60  # newest checks drawn over time
TOP_FEATURES = 8  # lines per drift chart
DISTRIBUTIONS = 3  # reference-vs-current charts
PERFORMANCE = {"classification": ("accuracy", "roc_auc", "f1"), "regression": ("mae", "rmse", "r2")}
QUALITY = ("missing_rate", "out_of_range_rate", "unseen_category_rate")

router = page_router()


def _checks(runs: list[MonitorRun]) -> dict[int, int]:
    """run id -> check number (1 = the oldest of those drawn), the charts' x axis."""
    return {r.id: i for i, r in enumerate(reversed(runs), start=1)}


def _lines(
    ws: Workspace, name: str, metric: str, order: dict[int, int], *, features: list[str] | None = None
) -> list[dict[str, Any]]:
    by_feature: dict[str, list[list[float]]] = {}
    for _at, run_id, feature, value in ws.monitoring.series(name, metric, limit=CHECKS * 200):
        if run_id in order and value is not None and (features is None or feature in features):
            by_feature.setdefault(feature, []).append([order[run_id], value])
    keys = features if features is not None else sorted(by_feature)
    return [{"label": f or metric, "points": by_feature[f]} for f in keys if by_feature.get(f)]


def _distributions(latest: MonitorRun | None, features: list[str]) -> list[dict[str, Any]]:
    if latest is None:
        return []
    stats = latest.summary.get("features", {})
    charts = []
    for feature in features[:DISTRIBUTIONS]:
        shares = stats.get(feature, {}).get("shares") or []
        if not shares:
            continue
        charts.append(
            {
                "type": "bar",
                "title": f"{feature}: reference vs current",
                "note": _reasons(stats[feature]),
                "labels": [str(s[0]) for s in shares],
                "datasets": [
                    {"label": "reference", "data": [s[1] for s in shares]},
                    {"label": "current window", "data": [s[2] for s in shares]},
                ],
            }
        )
    return charts


def _reasons(stats: dict[str, Any]) -> str:
    reasons = stats.get("reasons") or []
    return "; ".join(map(str, reasons)) if stats.get("drifted") else "no drift"


def _split_values(
    values: list[tuple[str, str, float | None]],
) -> tuple[dict[str, dict[str, float | None]], dict[str, float | None]]:
    """A check's values as {feature: {metric: value}} and the model-level {metric: value} (feature '')."""
    per_feature: dict[str, dict[str, float | None]] = {}
    model_level: dict[str, float | None] = {}
    for feature, metric, value in values:
        (per_feature.setdefault(feature, {}) if feature else model_level)[metric] = value
    return per_feature, model_level


def _drift_charts(
    ws: Workspace, name: str, order: dict[int, int], ranked: list[str], top: list[str]
) -> dict[str, dict[str, Any]]:
    """PSI and Wasserstein distance over the checks, of the `TOP_FEATURES` first of `top`."""
    if not order or not ranked:
        return {}
    return {
        "psi": {
            "type": "line",
            "title": "PSI by feature",
            "xTitle": "check",
            "note": f"the {min(len(ranked), TOP_FEATURES)} highest now; 0.2 is the default alert level",
            "datasets": _lines(ws, name, "psi", order, features=top[:TOP_FEATURES]),
        },
        "wasserstein": {
            "type": "line",
            "title": "Wasserstein distance by feature",
            "xTitle": "check",
            "note": "in reference standard deviations",
            "datasets": _lines(ws, name, "wasserstein_norm", order, features=top[:TOP_FEATURES]),
        },
    }


def _output_kind(ws: Workspace, name: str, alias: str) -> str:
    """'classification', 'regression' or 'other': what the monitored alias's signature outputs."""
    try:
        info = ws.models.get(f"{name}@{alias}")
        return info.signature.output if info.signature else "other"
    except Exception:  # noqa: BLE001 - no such alias yet: the page still shows what was checked
        return "other"


def _model_charts(ws: Workspace, name: str, order: dict[int, int], kind: str) -> dict[str, dict[str, Any]]:
    """Model-level lines over the checks: performance on labelled traffic, and schema violations."""
    charts: dict[str, dict[str, Any]] = {}
    perf_lines = [
        {**line, "label": m} for m in PERFORMANCE.get(kind, ()) for line in _lines(ws, name, m, order, features=[""])
    ]
    if perf_lines:
        charts["performance"] = {
            "type": "line",
            "title": "Performance on labelled traffic",
            "xTitle": "check",
            "datasets": perf_lines,
        }
    quality_lines = [
        {**line, "label": "schema violations"}
        for line in _lines(ws, name, "schema_violation_rate", order, features=[""])
    ]
    if quality_lines:
        charts["quality"] = {
            "type": "line",
            "title": "Rejected requests (schema violations)",
            "xTitle": "check",
            "datasets": quality_lines,
        }
    return charts


@router.get("/models/{name}/monitoring", response_class=HTMLResponse)
def model_monitoring(name: str, request: Request, who: Principal = reader) -> HTMLResponse:
    ws = workspace(request)
    ws.models.versions(name)  # a friendly 404 for an unknown model
    mon = ws.monitoring
    config = mon.config(name, strict=False)  # stored settings that no longer validate: defaults here, the cause below
    failing = mon.failing(name)
    watched = any(n == name for n, _, _ in mon.monitors())
    runs = mon.runs(name, limit=CHECKS)
    latest = runs[0] if runs else None
    values = mon.values(latest.id) if latest else []
    order = _checks(runs)

    per_feature, model_level = _split_values(values)
    ranked = sorted(
        (f for f, d in per_feature.items() if d.get("psi") is not None), key=lambda f: -(per_feature[f]["psi"] or 0)
    )
    drifted = list(latest.summary.get("drifted_features", [])) if latest else []
    top = [*drifted, *(f for f in ranked if f not in drifted)]
    kind = _output_kind(ws, name, config.alias)
    charts = {**_drift_charts(ws, name, order, ranked, top), **_model_charts(ws, name, order, kind)}
    reference_performance = latest.summary.get("reference_performance", {}) if latest else {}
    alerts = mon.alerts.list(model=name, status="active")
    return render(
        request,
        "monitoring.html",
        section="models",
        name=name,
        config=config,
        watched=watched,
        runs=runs,
        latest=latest,
        per_feature=per_feature,
        model_level=model_level,
        feature_order=top,
        drifted=drifted,
        charts={k: dump(v) for k, v in charts.items() if v.get("datasets")},
        distributions=dump(_distributions(latest, top)),
        alerts=alerts,
        can_act=who.role.allows(Role.WRITER),
        performance_keys=PERFORMANCE.get(kind, ()),
        quality_keys=QUALITY,
        reference_performance=reference_performance,
        failing=failing,
    )


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    status: str = Query(default="active", pattern="^(open|acknowledged|resolved|active|all)$"),
    who: Principal = reader,
) -> HTMLResponse:
    found = workspace(request).monitoring.alerts.list(status=status)
    return render(
        request, "alerts.html", section="alerts", alerts=found[:500], shown=status, can_act=who.role.allows(Role.WRITER)
    )
