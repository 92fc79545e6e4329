"""Model pages: the list, and one model's versions, aliases and their history, lineage, health and
retraining decisions, with promote / roll back for admins. Alias moves go through
`PUT /api/v1/models/{name}/aliases/{alias}`, so the API's admin check is the one that counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from keel.entities import AliasEvent, ModelVersion, Run
from keel.errors import NotFoundError
from keel.refs import CHAMPION
from keel.server.auth import Principal
from keel.server.dashboard.base import dataset_url, health, metric_keys, move, page_router, reader, render, workspace
from keel.server.schemas import dump

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

__all__ = ["router"]

router = page_router()


@router.get("/models", response_class=HTMLResponse)
def models(request: Request, _: Principal = reader) -> HTMLResponse:
    return render(request, "models.html", section="models", models=workspace(request).models.list())


def _rollback_target(history: list[AliasEvent], alias: str, current: int | None) -> int | None:
    """The version `alias` pointed at before its last move onto `current` (None: nothing to undo)."""
    for e in reversed(history):
        if e.alias == alias:
            if e.to_version == current and e.from_version not in (None, current):
                return e.from_version
            return None
    return None


def _lineage(ws: Workspace, versions: list[ModelVersion]) -> dict[str, Any]:
    """Three columns of boxes, dataset versions -> runs -> model versions, and the arrows between them."""
    datasets: dict[str, None] = {}
    runs: dict[str, Run | None] = {}
    edges: list[tuple[str, str]] = []
    for mv in versions:
        read: tuple[str, ...] = ()
        if mv.run_id:
            if mv.run_id not in runs:
                try:
                    runs[mv.run_id] = ws.runs.get(mv.run_id)
                except NotFoundError:
                    runs[mv.run_id] = None
            found = runs[mv.run_id]
            read = found.inputs if found else ()
            edges += [(f"d:{d}", f"r:{mv.run_id}") for d in read]
            edges.append((f"r:{mv.run_id}", f"m:{mv.version}"))
        edges += [(f"d:{d}", f"m:{mv.version}") for d in mv.datasets if d not in read]
        datasets.update(dict.fromkeys((*read, *mv.datasets)))
    width, height, gap, col_x = 210, 40, 16, (10, 300, 590)
    nodes: dict[str, dict[str, Any]] = {}
    columns = [  # (key, label, kind line, link, kind)
        [(f"d:{d}", d, "dataset", dataset_url(d), "dataset") for d in datasets],
        [(f"r:{i}", r.name if r else i[:8], "run", f"/runs/{i}", "run") for i, r in runs.items()],
        [
            (
                f"m:{mv.version}",
                mv.ref,
                " ".join(["model", *(f"@{a}" for a in sorted(mv.aliases, key=lambda a: a != CHAMPION))]),
                f"#v{mv.version}",
                "model",
            )
            for mv in versions
        ],
    ]
    for x, column in zip(col_x, columns, strict=True):
        for row, (key, label, sub, href, kind) in enumerate(column):
            nodes[key] = {
                "x": x,
                "y": 10 + row * (height + gap),
                "label": _clip(label),
                "sub": _clip(sub),
                "full": label,
                "href": href,
                "kind": kind,
            }
    paths = []
    for src, dst in dict.fromkeys(edges):
        a, b = nodes[src], nodes[dst]
        x1, y1, x2, y2 = a["x"] + width, a["y"] + height / 2, b["x"] - 6, b["y"] + height / 2
        mid = (x1 + x2) / 2
        paths.append(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")
    rows = max((len(c) for c in columns), default=0)
    return {
        "nodes": list(nodes.values()),
        "paths": paths,
        "width": col_x[2] + width + 10,
        "height": max(rows, 1) * (height + gap) + 10,
        "box_w": width,
        "box_h": height,
    }


def _clip(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@router.get("/models/{name}", response_class=HTMLResponse)
def model(name: str, request: Request, who: Principal = reader) -> HTMLResponse:
    ws = workspace(request)
    versions = ws.models.versions(name)
    registered = next(m for m in ws.models.list() if m.name == name)  # versions() raised if unknown
    history = ws.models.alias_history(name)
    champion = registered.aliases.get(CHAMPION)
    keys = metric_keys(versions, limit=12)
    chart = {
        "type": "line",
        "title": "Metrics by version",
        "xTitle": "version",
        "datasets": [
            {"label": k, "points": [[mv.version, mv.metrics[k]] for mv in versions if k in mv.metrics]} for k in keys
        ],
    }
    return render(
        request,
        "model.html",
        section="models",
        model=registered,
        versions=versions[::-1],
        history=history[::-1],
        champion=champion,
        metric_keys=keys,
        rollback_to=_rollback_target(history, CHAMPION, champion),
        move=move,
        lineage=_lineage(ws, versions[-30:]),
        chart=dump(chart) if keys and len(versions) > 1 else None,
        health=health(ws, [name])[name],
        timeline=ws.retraining.decisions(name, limit=50),
        edge_builds=ws.edge.by_version(name),
    )
