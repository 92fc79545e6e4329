"""The FastAPI application over one workspace: API, predictions, dashboard, metrics, health."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.resources import files
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from keel.entities import Role
from keel.errors import ConfigError, KeelError
from keel.server import errors
from keel.server.auth import Authenticator, Principal, is_loopback, need
from keel.server.cache import ModelCache, ShadowTable
from keel.server.guard import CatchAll, HostPolicy, Limits, RequestGuard
from keel.server.observability import Metrics, ObservabilityMiddleware, PredictionLogCollector
from keel.server.state import ServerState, server_state
from keel.server.warmup import Warmup

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

__all__ = ["check_bind", "create_app"]


def check_bind(ws: Workspace, host: str) -> bool:
    """Whether the server must require tokens on `host`; raise when it may not start there."""
    if is_loopback(host):
        return False
    if not ws.tokens.any_active():
        raise ConfigError(
            f"Refusing to listen on {host}: binding a non-loopback address needs API tokens, and this "
            "workspace has none. Create one with 'keel token create NAME --role admin', or bind 127.0.0.1."
        )
    return True


def create_app(
    ws: Workspace,
    *,
    require_auth: bool = False,
    max_models: int = 8,
    max_upload_bytes: int = 2 << 30,
    max_json_bytes: int = 16 << 20,
    max_small_json_bytes: int = 1 << 20,
    token_cache_s: float = 2.0,
    monitor_tick_s: float | None = None,
    bind_host: str | None = None,
    allowed_hosts: str | Iterable[str] | None = None,
    warm: bool = False,
    on_warm: Callable[[], object] | None = None,
) -> FastAPI:
    """The application for workspace `ws`. `require_auth` forces tokens even on loopback.

    `monitor_tick_s` starts the monitor scheduler: every that many seconds it runs the monitors
    whose schedule has elapsed (`keel serve` sets it; tests run checks on demand).
    Request bodies: uploads up to `max_upload_bytes`, /predict JSON up to `max_json_bytes`, every
    other write up to `max_small_json_bytes`. The Host header must name this server: a loopback
    name, `bind_host` (the address `keel serve` binds) or one of `allowed_hosts` (default: the
    `server_allowed_hosts` setting; '*' accepts any) -- see keel.server.guard.HostPolicy.
    `warm` loads and warms every champion at start-up, in a background thread (keel.server.warmup):
    /readyz answers 503 until it is done, then `on_warm()` is called.
    """
    from keel._version import __version__

    app = FastAPI(
        title="Keel",
        version=__version__,
        description="Datasets, runs, models and predictions of one Keel workspace.",
        docs_url=None,  # served below, behind the reader role once tokens exist
        redoc_url=None,
        openapi_url=None,
    )
    metrics = Metrics()
    errors.install(app)

    from keel.server.scheduler import MonitorGauges, MonitorScheduler

    gauges = MonitorGauges(metrics.registry)
    scheduler = None if monitor_tick_s is None else MonitorScheduler(ws, gauges, tick_s=monitor_tick_s)
    # Every prediction served is logged, in batches from a background thread; shutdown writes the rest.
    predlog = ws.predictions.logger()
    cache = ModelCache(ws, metrics, max_models=max_models)
    warmup = Warmup(ws, cache) if warm else None
    state = ServerState(
        ws=ws,
        metrics=metrics,
        auth=Authenticator(ws, require_auth=require_auth, cache_s=token_cache_s),
        cache=cache,
        shadows=ShadowTable(ws),
        monitor_gauges=gauges,
        predlog=predlog,
        max_upload_bytes=max_upload_bytes,
        max_json_bytes=max_json_bytes,
        monitor_scheduler=scheduler,
        warmup=warmup,
    )
    state.install(app)
    if scheduler is not None:
        app.router.on_startup.append(scheduler.start)
        app.router.on_shutdown.append(scheduler.stop)
    app.router.on_shutdown.append(predlog.close)
    if warmup is not None:
        warmup.app, warmup.predlog = app, predlog
        app.router.on_startup.append(lambda: warmup.start(then=on_warm))
    metrics.registry.register(PredictionLogCollector(predlog))
    _add_routes(app)
    _add_docs(app)
    _add_probes(app)

    if allowed_hosts is None:
        allowed_hosts = getattr(getattr(ws, "settings", None), "server_allowed_hosts", "")
    limits = Limits(upload=max_upload_bytes, json=max_json_bytes, small_json=max_small_json_bytes)
    _add_middleware(app, metrics, HostPolicy.for_bind(bind_host, allowed_hosts), limits)
    return app


def _add_routes(app: FastAPI) -> None:
    """The JSON API, /predict and its batch and feedback routes, monitoring, the dashboard and its static files."""
    from keel.server import dashboard
    from keel.server.routes import api, causal, edge, feedback, genai, monitoring, predict, predict_batch, rl
    from keel.server.routes import generate as generate_route

    app.include_router(api.router)
    app.include_router(predict.router)
    app.include_router(predict_batch.router)
    app.include_router(generate_route.router)
    app.include_router(feedback.router)
    app.include_router(monitoring.router)
    app.include_router(causal.router)
    app.include_router(edge.router)
    app.include_router(rl.router)
    app.include_router(genai.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=str(files("keel.server") / "static")), name="static")


def _add_middleware(app: FastAPI, metrics: Metrics, hosts: HostPolicy, limits: Limits) -> None:
    """Starlette runs the last added outermost: Observability -> RequestGuard -> CatchAll -> routes."""
    app.add_middleware(CatchAll)
    app.add_middleware(RequestGuard, hosts=hosts, limits=limits)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)


def _add_probes(app: FastAPI) -> None:
    """/metrics (Prometheus) and /readyz for readers, /healthz for anyone."""
    reader = Depends(need(Role.READER))

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request, _: Principal = reader) -> Response:
        """Prometheus text format; needs the reader role once tokens exist."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(server_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request, _: Principal = reader) -> JSONResponse:
        """Ready to serve, with the schema revision: needs the reader role once tokens exist (/healthz does not).
        Under `keel serve`, ready only once every champion is loaded and has scored (503 "warming" before)."""
        warmup = server_state(request).warmup
        if warmup is not None and not warmup.ready():
            return JSONResponse({"status": "warming", **warmup.status()}, status_code=503)
        try:
            revision = await run_in_threadpool(lambda: server_state(request).ws.schema_revision)
        except KeelError as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        body = {"status": "ready", "schema": revision, "models_cached": len(server_state(request).cache)}
        return JSONResponse(body if warmup is None else {**body, **warmup.status()})


def _add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI from vendored files, no CDN) and /openapi.json, both for readers."""
    app.mount(
        "/static-offline-docs",
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="static-offline-docs",
    )
    reader = Depends(need(Role.READER))

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: Principal = reader) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(_: Principal = reader) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Keel - Swagger UI",
            swagger_js_url="/static-offline-docs/swagger-ui-bundle.js",
            swagger_css_url="/static-offline-docs/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
