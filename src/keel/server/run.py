"""Run the application under uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from keel.server.app import check_bind, create_app
from keel.server.observability import configure_logging

logger = logging.getLogger(__name__)


def serve(
    ws: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_format: str = "text",
    log_level: str = "info",
    workers_threads: int | None = None,
    on_ready: Any = None,
    monitor_tick_s: float | None = 10.0,
) -> None:
    """Serve `ws` until interrupted. Binding a non-loopback host requires API tokens."""
    import uvicorn

    require_auth = check_bind(ws, host)
    if port == 0:  # pick a free port now, so the address we announce is the one we bind
        import socket

        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    configure_logging(log_level, log_format)
    app = create_app(ws, require_auth=require_auth, monitor_tick_s=monitor_tick_s)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    logger.info("serving %s on http://%s:%s (auth %s)", ws, host, port, "required" if require_auth else "when tokens exist")
    if on_ready is not None:
        app.router.on_startup.append(lambda: on_ready(host, port))
    server.run()
