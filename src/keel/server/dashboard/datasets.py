"""Dataset pages: the list, one dataset's versions, a version's profile charts, and a diff of two versions."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from keel.entities import DatasetVersion
from keel.server.auth import Principal
from keel.server.dashboard.base import num, page_router, reader, render, workspace
from keel.server.schemas import dump

__all__ = ["router"]

MAX_CHARTS = 100  # profile charts per dataset page; wide tables list the rest in the schema table
SEVERITY_COLORS = {"low": "#34d399", "moderate": "#f59e0b", "high": "#dc2626", "unknown": "#9ca3af"}

router = page_router()


@router.get("/datasets", response_class=HTMLResponse)
def datasets(request: Request, _: Principal = reader) -> HTMLResponse:
    return render(request, "datasets.html", section="datasets", datasets=workspace(request).datasets.list())


@router.get("/datasets/{name}", response_class=HTMLResponse)
def dataset(name: str, request: Request, _: Principal = reader) -> HTMLResponse:
    versions = workspace(request).datasets.versions(name)
    return render(request, "dataset.html", section="datasets", name=name, versions=versions[::-1])


# Before /datasets/{name}/{version}: the first route that matches answers.
@router.get("/datasets/{name}/diff", response_class=HTMLResponse)
def dataset_diff(
    name: str, request: Request, a: str | None = None, b: str | None = None, _: Principal = reader
) -> HTMLResponse:
    ws = workspace(request)
    versions = ws.datasets.versions(name)
    latest = versions[-1].version
    b = b or str(latest)
    if not a:  # the version before b
        a = str(int(b) - 1) if b.isascii() and b.isdigit() and len(b) <= 19 and int(b) > 1 else str(versions[0].version)
    diff = ws.datasets.diff(f"{name}@{a}", f"{name}@{b}")
    changes = sorted(diff.columns, key=lambda c: -c.value if math.isfinite(c.value) else math.inf)
    top = changes[:15]
    chart = {
        "type": "hbar",
        "title": "Largest changes (PSI / JS distance)",
        "labels": [c.name for c in top],
        "datasets": [
            {
                "label": "change",
                "data": [c.value for c in top],
                "colors": [SEVERITY_COLORS[_severity(c.statistic, c.value)] for c in top],
            }
        ],
    }
    return render(
        request,
        "dataset_diff.html",
        section="datasets",
        name=name,
        versions=versions,
        a=a,
        b=b,
        diff=diff,
        changes=changes,
        diff_chart=dump(chart),
        severity=_severity,
    )


def _severity(statistic: str, value: float) -> str:
    """PSI: < 0.1 stable, < 0.25 moderate, else major (the usual rule of thumb); JS distance in [0, 1]."""
    if not math.isfinite(value):
        return "unknown"
    high, moderate = (0.25, 0.1) if statistic == "psi" else (0.2, 0.1)
    return "high" if value >= high else "moderate" if value >= moderate else "low"


def _bin_label(lo: float, hi: float) -> str:
    return f"{lo:.3g}–{hi:.3g}"


def _profile_charts(v: DatasetVersion) -> list[dict[str, Any]]:
    """One chart spec per column: histogram (numeric), top categories, true/false; files: extensions, folders."""
    profile = v.profile or {}
    if v.kind == "files":
        return [
            {
                "type": "bar" if key == "extensions" else "hbar",
                "title": title,
                "labels": list(counts),
                "datasets": [{"label": "files", "data": list(counts.values())}],
            }
            for key, title in (("extensions", "Files by extension"), ("folders", "Files by folder"))
            if (counts := profile.get(key))
        ]
    charts: list[dict[str, Any]] = []
    for column, p in profile.get("columns", {}).items():
        kind = p.get("kind")
        if kind == "numeric" and "histogram" in p:
            edges, counts = p["histogram"]["edges"], p["histogram"]["counts"]
            labels = [_bin_label(edges[i], edges[i + 1]) for i in range(len(counts))]
            spec = {"type": "histogram", "labels": labels, "datasets": [{"label": "rows", "data": counts}]}
        elif kind == "categorical" and p.get("top"):
            spec = {
                "type": "hbar",
                "labels": [t["value"] for t in p["top"]],
                "datasets": [{"label": "rows", "data": [t["count"] for t in p["top"]]}],
            }
        elif kind == "boolean":
            spec = {
                "type": "bar",
                "labels": ["true", "false"],
                "datasets": [{"label": "rows", "data": [p["true"], p["false"]]}],
            }
        else:
            continue
        charts.append({**spec, "title": column, "kind": kind, "note": _profile_note(p)})
        if len(charts) >= MAX_CHARTS:
            break
    return dump(charts)


def _profile_note(p: dict[str, Any]) -> str:
    missing = f"{num(p.get('missing', 0))} missing"
    if p.get("kind") == "numeric" and "mean" in p:
        return f"mean {num(p['mean'])} · std {num(p['std'])} · {missing}"
    if p.get("kind") == "categorical":
        return f"{num(p.get('distinct'))} distinct · {missing}"
    return missing


@router.get("/datasets/{name}/{version}", response_class=HTMLResponse)
def dataset_version(name: str, version: str, request: Request, _: Principal = reader) -> HTMLResponse:
    ws = workspace(request)
    v = ws.datasets.get(f"{name}@{version}")
    return render(
        request,
        "dataset_version.html",
        section="datasets",
        v=v,
        charts=_profile_charts(v),
        stats=(v.profile or {}).get("columns", {}),
        used_by=ws.models.trained_on(v),
    )
