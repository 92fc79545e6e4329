"""Run pages: search with the run filter language, one run, artifacts, and up to ten runs side by side."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response

from keel.entities import MetricPoint
from keel.errors import InvalidInputError, NotFoundError
from keel.server.auth import Principal
from keel.server.dashboard.base import metric_keys, page_router, reader, render, workspace
from keel.server.schemas import dump

__all__ = ["router"]

MAX_COMPARE = 10  # runs side by side
SERIES_POINTS = 500  # points per series embedded in a page (compare overlays)

router = page_router()


@router.get("/runs", response_class=HTMLResponse)
def runs(
    request: Request,
    filter: str = Query(default="", max_length=2000),
    order_by: str = Query(default="", max_length=500),
    experiment: str = Query(default="", max_length=128),
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = reader,
) -> HTMLResponse:
    ws = workspace(request)
    error, found = None, []
    try:
        found = ws.runs.search(
            filter.strip() or None, order_by=order_by.strip() or None, limit=limit, experiment=experiment or None
        )
    except (InvalidInputError, NotFoundError) as exc:  # a typo in the filter is shown next to the box
        error = str(exc)
    return render(
        request,
        "runs.html",
        section="runs",
        runs=found,
        error=error,
        filter=filter,
        order_by=order_by,
        experiment=experiment,
        experiments=ws.runs.experiments(),
        metric_keys=metric_keys(found),
    )


def _downsample(points: list[MetricPoint], limit: int = SERIES_POINTS) -> list[list[float]]:
    step = max(1, math.ceil(len(points) / limit))
    kept = points[::step]
    if points and kept[-1] is not points[-1]:
        kept.append(points[-1])
    return [[p.step, p.value] for p in kept]


# Before /runs/{run_id}: the first route that matches answers.
@router.get("/runs/compare", response_class=HTMLResponse)
def compare_runs(request: Request, ids: list[str] = Query(default=[]), _: Principal = reader) -> HTMLResponse:
    ws = workspace(request)
    wanted = list(dict.fromkeys(i.strip() for part in ids for i in part.split(",") if i.strip()))
    if len(wanted) > MAX_COMPARE:
        raise InvalidInputError(f"Compare at most {MAX_COMPARE} runs at once; got {len(wanted)}")
    chosen = [ws.runs.get(i) for i in wanted]
    params = sorted({k for r in chosen for k in r.params})
    metrics = sorted({k for r in chosen for k in r.metrics})
    param_rows = [_row(k, [r.params.get(k) for r in chosen]) for k in params]
    metric_rows = [_row(k, [r.metrics.get(k) for r in chosen]) for k in metrics]
    charts = []
    for key in metrics:
        series = [(r, ws.runs.metric_history(r.id, key)) for r in chosen if key in r.metrics]
        if any(len(points) > 1 for _, points in series):
            charts.append(
                {
                    "type": "line",
                    "title": key,
                    "datasets": [{"label": r.name, "points": _downsample(p)} for r, p in series],
                }
            )
    return render(
        request,
        "runs_compare.html",
        section="runs",
        runs=chosen,
        param_rows=param_rows,
        metric_rows=metric_rows,
        charts=dump(charts),
    )


def _row(key: str, values: list[Any]) -> tuple[str, list[Any], bool]:
    """(key, value per run, whether the runs differ)."""
    return key, values, len(set(values)) > 1


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(run_id: str, request: Request, _: Principal = reader) -> HTMLResponse:
    found = workspace(request).runs.get(run_id)
    return render(request, "run.html", section="runs", run=found)


@router.get("/runs/{run_id}/artifacts/{path:path}")
def run_artifact(run_id: str, path: str, request: Request, _: Principal = reader) -> Response:
    data = workspace(request).runs.artifact(run_id, path)
    filename = quote(path.rsplit("/", 1)[-1], safe="")
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}"},
    )
