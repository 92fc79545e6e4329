"""The overview page `/`: counts, model health at a glance, open alerts and recent activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse

from keel.entities import Run
from keel.server.auth import Principal
from keel.server.dashboard.base import dataset_url, health, move, num, page_router, reader, render, workspace

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

__all__ = ["router"]

router = page_router()


def _activity(
    ws: Workspace, models: list[Any], datasets: list[Any], runs: list[Run], limit: int = 20
) -> list[dict[str, Any]]:
    """Newest runs, dataset versions and alias moves, merged newest first."""
    items: list[dict[str, Any]] = [
        {
            "at": r.started_at,
            "kind": "run",
            "href": f"/runs/{r.id}",
            "text": f"Run {r.name}",
            "detail": f"{r.status.value} in {r.experiment}",
        }
        for r in runs
    ]
    for d in sorted(datasets, key=lambda d: d.updated_at, reverse=True)[:10]:
        for v in ws.datasets.versions(d.name)[-5:]:
            items.append(
                {
                    "at": v.created_at,
                    "kind": "dataset",
                    "href": dataset_url(v.ref),
                    "text": f"Dataset {v.ref}",
                    "detail": f"{num(v.num_rows)} rows by {v.author}",
                }
            )
    for m in sorted(models, key=lambda m: m.updated_at, reverse=True)[:10]:
        for e in ws.models.alias_history(m.name)[-10:]:
            items.append(
                {
                    "at": e.at,
                    "kind": "alias",
                    "href": f"/models/{quote(m.name, safe='')}",
                    "text": f"{m.name}@{e.alias}: {move(e)}",
                    "detail": e.reason or f"by {e.author}",
                }
            )
    return sorted(items, key=lambda i: i["at"], reverse=True)[:limit]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, _: Principal = reader) -> HTMLResponse:
    ws = workspace(request)
    models, datasets, runs = ws.models.list(), ws.datasets.list(), ws.runs.list(limit=10)
    states = health(ws, [m.name for m in models])
    return render(
        request,
        "overview.html",
        section="overview",
        models=models,
        datasets=datasets,
        experiments=ws.runs.experiments(),
        activity=_activity(ws, models, datasets, runs),
        health=states,
        open_alerts=len(ws.monitoring.alerts.list(status="open")),
    )
