"""The page machinery every dashboard section shares: templates and their filters, `render`, the
route class that turns failures into pages, and the queries more than one section asks.

A section module makes its router with `page_router()`, reads the workspace with
`workspace(request)`, guards its pages with `reader` and answers with `render(request, template, ...)`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from keel.entities import AliasEvent, ModelVersion, Role, Run
from keel.errors import KeelError
from keel.server.auth import Principal, need
from keel.server.errors import HTTPProblem, status_for
from keel.server.state import server_state

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

__all__ = ["dataset_url", "health", "metric_keys", "move", "num", "page_router", "reader", "render", "workspace"]

# Scripts only from /static: chart data travels in data-* attributes, never in inline scripts.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict"}


# -- template filters ---------------------------------------------------------------------------
def _ago(at: datetime | None) -> str:
    if at is None:
        return "–"
    seconds = (datetime.now(UTC) - at).total_seconds()
    if seconds < 60:
        return "just now"
    for limit, unit, size in ((3600, "min", 60), (86_400, "h", 3600), (30 * 86_400, "d", 86_400)):
        if seconds < limit:
            return f"{int(seconds // size)} {unit} ago"
    return at.strftime("%Y-%m-%d")


def num(value: Any) -> str:
    """A number for people: thousands separators, at most four decimals, '–' for None and NaN."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return "–"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def dataset_url(ref: str) -> str:
    """'credit@2' -> '/datasets/credit/2'."""
    name, _, version = ref.partition("@")
    return f"/datasets/{quote(name, safe='')}/{quote(version or 'latest', safe='')}"


# The templates stay in keel/server/templates beside static/: package data of keel.server.
templates = Jinja2Templates(directory=str(files("keel.server") / "templates"))
templates.env.filters.update(ago=_ago, num=num, size=_size, dataset_url=dataset_url, q=lambda s: quote(str(s), safe=""))


# -- pages --------------------------------------------------------------------------------------
def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    who: Principal | None = getattr(request.state, "principal", None)
    context.update(who=who, is_admin=who is not None and who.role.allows(Role.ADMIN))
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    title = TITLES.get(status, "Something went wrong")
    return render(request, "error.html", status=status, status_code=status, title=title, detail=detail)


def _to_login(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"/login?next={quote(here, safe='')}"
    if request.headers.get("hx-request"):  # htmx would swap the login page into the table
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


class PageRoute(APIRoute):
    """A route whose failures are pages: 401 -> /login, unknown names -> a friendly 404."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPProblem as exc:
                return _to_login(request) if exc.status == 401 else _error_page(request, exc.status, exc.detail)
            except KeelError as exc:
                status = status_for(exc)
                if status >= 500:
                    logger.error("page %s failed: %s", request.url.path, exc)
                return _error_page(request, status, str(exc))

        return page


def page_router() -> APIRouter:
    """The router of one section: its pages stay out of the OpenAPI schema and fail as pages."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


reader = Depends(need(Role.READER))


def workspace(request: Request) -> Any:
    return server_state(request).ws


# -- queries more than one section asks ---------------------------------------------------------
def move(e: AliasEvent) -> str:
    before = "new" if e.from_version is None else f"v{e.from_version}"
    after = "removed" if e.to_version is None else f"v{e.to_version}"
    return f"{before} → {after}"


def metric_keys(items: list[Run] | list[ModelVersion], limit: int = 8) -> list[str]:
    """Metric names of runs or model versions, in first-seen order."""
    keys: dict[str, None] = {}
    for item in items:
        keys.update(dict.fromkeys(item.metrics))
    return list(keys)[:limit]


def health(ws: Workspace, names: Iterable[str]) -> dict[str, Any]:
    """Per model: keel.monitoring.health.Health (state, active alerts, the newest check of the
    version serving now, and the superseded check of its predecessor, if that is the newest)."""
    return ws.monitoring.health(names)
