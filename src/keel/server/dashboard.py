"""The web dashboard of `keel serve`: server-rendered pages over the same Workspace as the API.

Pages: overview, datasets (versions, profile charts, diff), runs (search, detail, compare),
models (versions, aliases and their history, lineage, promote / roll back for admins), login;
monitoring and alerts pages live in dashboard_monitoring.py, on this module's router.

Pages use the API's auth (`need(Role.READER)`). `_PageRoute` turns its failures into pages: no
valid token sends a browser to /login (whose form stores the token in the HttpOnly `keel_token`
cookie), an unknown dataset, run or model is a friendly 404. Charts are drawn by
static/dashboard.js with the vendored Chart.js from JSON the page carries in `data-spec`
attributes; run metric series come from `/api/v1/runs/{id}/metrics`. Alias moves go through
`PUT /api/v1/models/{name}/aliases/{alias}`, so the API's admin check is the one that counts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from keel.entities import AliasEvent, DatasetVersion, MetricPoint, ModelVersion, Role, Run
from keel.errors import InvalidInputError, KeelError, NotFoundError
from keel.server.auth import COOKIE, Principal, need
from keel.server.errors import HTTPProblem, status_for
from keel.server.schemas import dump

logger = logging.getLogger(__name__)

__all__ = ["router"]

# Scripts only from /static: chart data travels in data-* attributes, never in inline scripts.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
COOKIE_MAX_AGE_S = 14 * 24 * 3600
MAX_CHARTS = 100  # profile charts per dataset page; wide tables list the rest in the schema table
MAX_COMPARE = 10  # runs side by side
SERIES_POINTS = 500  # points per series embedded in a page (compare overlays)
SEVERITY_COLORS = {"low": "#34d399", "moderate": "#f59e0b", "high": "#dc2626", "unknown": "#9ca3af"}
TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict"}


# -- rendering ----------------------------------------------------------------------------------
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


def _num(value: Any) -> str:
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


def _dataset_url(ref: str) -> str:
    """'credit@2' -> '/datasets/credit/2'."""
    name, _, version = ref.partition("@")
    return f"/datasets/{quote(name, safe='')}/{quote(version or 'latest', safe='')}"


templates = Jinja2Templates(directory=str(files("keel.server") / "templates"))
templates.env.filters.update(ago=_ago, num=_num, size=_size, dataset_url=_dataset_url,
                             q=lambda s: quote(str(s), safe=""))  # fmt: skip


def _render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    who: Principal | None = getattr(request.state, "principal", None)
    context.update(who=who, is_admin=who is not None and who.role.allows(Role.ADMIN))
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    title = TITLES.get(status, "Something went wrong")
    return _render(request, "error.html", status=status, status_code=status, title=title, detail=detail)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: '//evil.example' or 'https://...' would make /login an open redirect."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _to_login(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"/login?next={quote(here, safe='')}"
    if request.headers.get("hx-request"):  # htmx would swap the login page into the table
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


class _PageRoute(APIRoute):
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


router = APIRouter(route_class=_PageRoute, include_in_schema=False)
reader = Depends(need(Role.READER))


def _ws(request: Request) -> Any:
    return request.app.state.ws


# -- login --------------------------------------------------------------------------------------
def _check_token(request: Request, token: str) -> Principal | None:
    """Who `token` belongs to, asked of the app's Authenticator exactly as an API call would be."""
    if not token or len(token) > 512 or not token.isascii():
        return None
    probe = Request({"type": "http", "method": "GET", "path": "/login", "query_string": b"",
                     "headers": [(b"authorization", f"Bearer {token}".encode())], "client": request.scope.get("client")})  # fmt: skip
    try:
        return request.app.state.auth.principal(probe)  # type: ignore[no-any-return]
    except HTTPProblem:
        return None


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _render(request, "login.html", next=_safe_next(next), auth_enabled=request.app.state.auth.auth_enabled())


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: str = Form(default=""), next: str = Form(default="/")) -> Response:
    if not await run_in_threadpool(request.app.state.auth.auth_enabled):
        return RedirectResponse(_safe_next(next), status_code=303)
    token = token.strip()
    who = await run_in_threadpool(_check_token, request, token)
    if who is None:
        return _render(request, "login.html", status=401, next=_safe_next(next), auth_enabled=True,
                       error="That token is unknown or revoked.")  # fmt: skip
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")  # fmt: skip
    logger.info("dashboard login by token %s (%s)", who.name, who.role.value)
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- overview -----------------------------------------------------------------------------------
def _activity(ws: Any, models: list[Any], datasets: list[Any], runs: list[Run], limit: int = 20) -> list[dict[str, Any]]:
    """Newest runs, dataset versions and alias moves, merged newest first."""
    items: list[dict[str, Any]] = [
        {"at": r.started_at, "kind": "run", "href": f"/runs/{r.id}", "text": f"Run {r.name}",
         "detail": f"{r.status.value} in {r.experiment}"} for r in runs  # fmt: skip
    ]
    for d in sorted(datasets, key=lambda d: d.updated_at, reverse=True)[:10]:
        for v in ws.datasets.versions(d.name)[-5:]:
            items.append({"at": v.created_at, "kind": "dataset", "href": _dataset_url(v.ref), "text": f"Dataset {v.ref}",
                          "detail": f"{_num(v.num_rows)} rows by {v.author}"})  # fmt: skip
    for m in sorted(models, key=lambda m: m.updated_at, reverse=True)[:10]:
        for e in ws.models.alias_history(m.name)[-10:]:
            items.append({"at": e.at, "kind": "alias", "href": f"/models/{quote(m.name, safe='')}",
                          "text": f"{m.name}@{e.alias}: {_move(e)}", "detail": e.reason or f"by {e.author}"})  # fmt: skip
    return sorted(items, key=lambda i: i["at"], reverse=True)[:limit]


def _move(e: AliasEvent) -> str:
    before = "new" if e.from_version is None else f"v{e.from_version}"
    after = "removed" if e.to_version is None else f"v{e.to_version}"
    return f"{before} → {after}"


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, _: Principal = reader) -> HTMLResponse:
    ws = _ws(request)
    models, datasets, runs = ws.models.list(), ws.datasets.list(), ws.runs.list(limit=10)
    from keel.server.dashboard_monitoring import health

    states = health(ws, [m.name for m in models])
    return _render(request, "overview.html", section="overview", models=models, datasets=datasets,
                   experiments=ws.runs.experiments(), activity=_activity(ws, models, datasets, runs), health=states,
                   open_alerts=len(ws.monitoring.alerts.list(status="open")))  # fmt: skip


# -- datasets -----------------------------------------------------------------------------------
@router.get("/datasets", response_class=HTMLResponse)
def datasets(request: Request, _: Principal = reader) -> HTMLResponse:
    return _render(request, "datasets.html", section="datasets", datasets=_ws(request).datasets.list())


@router.get("/datasets/{name}", response_class=HTMLResponse)
def dataset(name: str, request: Request, _: Principal = reader) -> HTMLResponse:
    versions = _ws(request).datasets.versions(name)
    return _render(request, "dataset.html", section="datasets", name=name, versions=versions[::-1])


@router.get("/datasets/{name}/diff", response_class=HTMLResponse)
def dataset_diff(name: str, request: Request, a: str | None = None, b: str | None = None, _: Principal = reader) -> HTMLResponse:
    ws = _ws(request)
    versions = ws.datasets.versions(name)
    latest = versions[-1].version
    b = b or str(latest)
    if not a:  # the version before b
        a = str(int(b) - 1) if b.isascii() and b.isdigit() and len(b) <= 19 and int(b) > 1 else str(versions[0].version)
    diff = ws.datasets.diff(f"{name}@{a}", f"{name}@{b}")
    changes = sorted(diff.columns, key=lambda c: -c.value if math.isfinite(c.value) else math.inf)
    top = changes[:15]
    chart = {"type": "hbar", "title": "Largest changes (PSI / JS distance)", "labels": [c.name for c in top],
             "datasets": [{"label": "change", "data": [c.value for c in top],
                           "colors": [SEVERITY_COLORS[_severity(c.statistic, c.value)] for c in top]}]}  # fmt: skip
    return _render(request, "dataset_diff.html", section="datasets", name=name, versions=versions, a=a, b=b,
                   diff=diff, changes=changes, diff_chart=dump(chart), severity=_severity)  # fmt: skip


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
            {"type": "bar" if key == "extensions" else "hbar", "title": title, "labels": list(counts),
             "datasets": [{"label": "files", "data": list(counts.values())}]}  # fmt: skip
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
            spec = {"type": "hbar", "labels": [t["value"] for t in p["top"]],
                    "datasets": [{"label": "rows", "data": [t["count"] for t in p["top"]]}]}  # fmt: skip
        elif kind == "boolean":
            spec = {"type": "bar", "labels": ["true", "false"], "datasets": [{"label": "rows", "data": [p["true"], p["false"]]}]}
        else:
            continue
        charts.append({**spec, "title": column, "kind": kind, "note": _profile_note(p)})
        if len(charts) >= MAX_CHARTS:
            break
    return dump(charts)  # type: ignore[no-any-return]


def _profile_note(p: dict[str, Any]) -> str:
    missing = f"{_num(p.get('missing', 0))} missing"
    if p.get("kind") == "numeric" and "mean" in p:
        return f"mean {_num(p['mean'])} · std {_num(p['std'])} · {missing}"
    if p.get("kind") == "categorical":
        return f"{_num(p.get('distinct'))} distinct · {missing}"
    return missing


@router.get("/datasets/{name}/{version}", response_class=HTMLResponse)
def dataset_version(name: str, version: str, request: Request, _: Principal = reader) -> HTMLResponse:
    ws = _ws(request)
    v = ws.datasets.get(f"{name}@{version}")
    return _render(request, "dataset_version.html", section="datasets", v=v, charts=_profile_charts(v),
                   stats=(v.profile or {}).get("columns", {}), used_by=ws.models.trained_on(v))  # fmt: skip


# -- runs ---------------------------------------------------------------------------------------
def _metric_keys(items: list[Run] | list[ModelVersion], limit: int = 8) -> list[str]:
    """Metric names of runs or model versions, in first-seen order."""
    keys: dict[str, None] = {}
    for item in items:
        keys.update(dict.fromkeys(item.metrics))
    return list(keys)[:limit]


@router.get("/runs", response_class=HTMLResponse)
def runs(
    request: Request,
    filter: str = Query(default="", max_length=2000),
    order_by: str = Query(default="", max_length=500),
    experiment: str = Query(default="", max_length=128),
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = reader,
) -> HTMLResponse:
    ws = _ws(request)
    error, found = None, []
    try:
        found = ws.runs.search(filter.strip() or None, order_by=order_by.strip() or None, limit=limit,
                               experiment=experiment or None)  # fmt: skip
    except (InvalidInputError, NotFoundError) as exc:  # a typo in the filter is shown next to the box
        error = str(exc)
    return _render(request, "runs.html", section="runs", runs=found, error=error, filter=filter, order_by=order_by,
                   experiment=experiment, experiments=ws.runs.experiments(), metric_keys=_metric_keys(found))  # fmt: skip


def _downsample(points: list[MetricPoint], limit: int = SERIES_POINTS) -> list[list[float]]:
    step = max(1, math.ceil(len(points) / limit))
    kept = points[::step]
    if points and kept[-1] is not points[-1]:
        kept.append(points[-1])
    return [[p.step, p.value] for p in kept]


@router.get("/runs/compare", response_class=HTMLResponse)
def compare_runs(request: Request, ids: list[str] = Query(default=[]), _: Principal = reader) -> HTMLResponse:
    ws = _ws(request)
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
            charts.append({"type": "line", "title": key,
                           "datasets": [{"label": r.name, "points": _downsample(p)} for r, p in series]})  # fmt: skip
    return _render(request, "runs_compare.html", section="runs", runs=chosen, param_rows=param_rows,
                   metric_rows=metric_rows, charts=dump(charts))  # fmt: skip


def _row(key: str, values: list[Any]) -> tuple[str, list[Any], bool]:
    """(key, value per run, whether the runs differ)."""
    return key, values, len(set(values)) > 1


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(run_id: str, request: Request, _: Principal = reader) -> HTMLResponse:
    found = _ws(request).runs.get(run_id)
    return _render(request, "run.html", section="runs", run=found)


@router.get("/runs/{run_id}/artifacts/{path:path}")
def run_artifact(run_id: str, path: str, request: Request, _: Principal = reader) -> Response:
    data = _ws(request).runs.artifact(run_id, path)
    filename = quote(path.rsplit("/", 1)[-1], safe="")
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}"})  # fmt: skip


# -- models -------------------------------------------------------------------------------------
@router.get("/models", response_class=HTMLResponse)
def models(request: Request, _: Principal = reader) -> HTMLResponse:
    return _render(request, "models.html", section="models", models=_ws(request).models.list())


def _rollback_target(history: list[AliasEvent], alias: str, current: int | None) -> int | None:
    """The version `alias` pointed at before its last move onto `current` (None: nothing to undo)."""
    for e in reversed(history):
        if e.alias == alias:
            if e.to_version == current and e.from_version not in (None, current):
                return e.from_version
            return None
    return None


def _lineage(ws: Any, versions: list[ModelVersion]) -> dict[str, Any]:
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
        [(f"d:{d}", d, "dataset", _dataset_url(d), "dataset") for d in datasets],
        [(f"r:{i}", r.name if r else i[:8], "run", f"/runs/{i}", "run") for i, r in runs.items()],
        [(f"m:{mv.version}", mv.ref, " ".join(["model", *(f"@{a}" for a in sorted(mv.aliases, key=lambda a: a != "champion"))]), f"#v{mv.version}", "model")
         for mv in versions],
    ]
    for x, column in zip(col_x, columns, strict=True):
        for row, (key, label, sub, href, kind) in enumerate(column):
            nodes[key] = {"x": x, "y": 10 + row * (height + gap), "label": _clip(label), "sub": _clip(sub),
                          "full": label, "href": href, "kind": kind}  # fmt: skip
    paths = []
    for src, dst in dict.fromkeys(edges):
        a, b = nodes[src], nodes[dst]
        x1, y1, x2, y2 = a["x"] + width, a["y"] + height / 2, b["x"] - 6, b["y"] + height / 2
        mid = (x1 + x2) / 2
        paths.append(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")
    rows = max((len(c) for c in columns), default=0)
    return {"nodes": list(nodes.values()), "paths": paths, "width": col_x[2] + width + 10,
            "height": max(rows, 1) * (height + gap) + 10, "box_w": width, "box_h": height}  # fmt: skip


def _clip(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@router.get("/models/{name}", response_class=HTMLResponse)
def model(name: str, request: Request, who: Principal = reader) -> HTMLResponse:
    from keel.retraining.gate import summary
    from keel.server.dashboard_monitoring import health

    ws = _ws(request)
    versions = ws.models.versions(name)
    registered = next(m for m in ws.models.list() if m.name == name)  # versions() raised if unknown
    history = ws.models.alias_history(name)
    champion = registered.aliases.get("champion")
    keys = _metric_keys(versions, limit=12)
    chart = {"type": "line", "title": "Metrics by version", "xTitle": "version",
             "datasets": [{"label": k, "points": [[mv.version, mv.metrics[k]] for mv in versions if k in mv.metrics]}
                          for k in keys]}  # fmt: skip
    return _render(request, "model.html", section="models", model=registered, versions=versions[::-1],
                   history=history[::-1], champion=champion, metric_keys=keys,
                   rollback_to=_rollback_target(history, "champion", champion), move=_move,
                   lineage=_lineage(ws, versions[-30:]), chart=dump(chart) if keys and len(versions) > 1 else None,
                   health=health(ws, [name])[name], timeline=ws.retraining.decisions(name, limit=50), summary=summary)  # fmt: skip
