"""The edge builds page: `/edge` (`?model=NAME` or `NAME@V`).

Per model version, its builds: target and quantisation, flash and static RAM as bars against the
MCU's (a bar over 100 % is a build that does not fit), stack, agreement with the Python model,
host latency, the emulated run's result, and a download of the zip (the API's download route).
"""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from keel.server.auth import Principal
from keel.server.dashboard.base import page_router, reader, render, workspace

__all__ = ["router"]

router = page_router()


def _bar(used: Any, limit: Any) -> dict[str, Any] | None:
    """Width (capped at 100 %) and share of a size against its MCU limit; None without both."""
    if not isinstance(used, (int, float)) or not isinstance(limit, (int, float)) or limit <= 0:
        return None
    share = float(used) / float(limit)
    return {"used": int(used), "limit": int(limit), "share": share, "width": min(share, 1.0) * 100, "over": share > 1}


def _row(build: Any) -> dict[str, Any]:
    report = build.report or {}
    size = report.get("size") or {}
    return {
        "build": build,
        "report": report,
        "flash": _bar(size.get("flash_bytes"), size.get("flash_limit_bytes")),
        "ram": _bar(size.get("ram_bytes"), size.get("ram_limit_bytes")),
        "stack": size.get("stack_bytes"),
        "size_skipped": report.get("size_skipped"),
        "qemu": _qemu(report),
    }


def _qemu(report: dict[str, Any]) -> str:
    """The emulated run in words: its agreement, or why it did not run."""
    if report.get("qemu_class_agreement") is not None:
        exact = " (bit-exact with the host build)" if report.get("qemu_bit_exact_vs_host") else ""
        return f"{100 * report['qemu_class_agreement']:.1f}% of {report.get('qemu_rows')} rows agree{exact}"
    return str(report.get("qemu_skipped") or "not run")


@router.get("/edge", response_class=HTMLResponse)
def edge_page(
    request: Request,
    model: str | None = Query(default=None, max_length=300, description="NAME or NAME@VERSION"),
    _: Principal = reader,
) -> HTMLResponse:
    builds = workspace(request).edge.list(model)
    groups: dict[str, list[dict[str, Any]]] = {}
    for build in builds:
        groups.setdefault(build.model, []).append(_row(build))
    return render(request, "edge.html", section="edge", groups=groups, model=model)
