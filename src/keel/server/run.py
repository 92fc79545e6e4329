"""Run the application under uvicorn."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from keel.errors import ConflictError
from keel.server.app import check_bind, create_app
from keel.server.observability import configure_logging

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)


def serve(
    ws: Workspace,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_format: str = "text",
    log_level: str = "info",
    workers_threads: int | None = None,
    on_ready: Any = None,
    monitor_tick_s: float | None = 10.0,
    allowed_hosts: str | None = None,
) -> None:
    """Serve `ws` until interrupted. Binding a non-loopback host requires API tokens.

    Requests must name this server in their Host header: a loopback name, `host`, or one of
    `allowed_hosts` (comma-separated; default: the `server_allowed_hosts` setting).
    """
    import uvicorn

    require_auth = check_bind(ws, host)
    # Listen before the app starts: a busy port fails here, as one error, before on_ready announces
    # an address; and port 0's free port is the one announced.
    sock = listen(host, port)
    with sock:
        port = int(sock.getsockname()[1])
        configure_logging(log_level, log_format)
        app = create_app(
            ws, require_auth=require_auth, monitor_tick_s=monitor_tick_s, bind_host=host, allowed_hosts=allowed_hosts
        )
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
        server = uvicorn.Server(config)
        logger.info(
            "serving %s on http://%s:%s (auth %s)", ws, host, port, "required" if require_auth else "when tokens exist"
        )
        if on_ready is not None:
            app.router.on_startup.append(lambda: on_ready(host, port))
        with _sigterm_stops_cleanly(server):
            server.run(sockets=[sock])


def listen(host: str, port: int) -> Any:
    """A socket bound to (host, port) and listening, as uvicorn would make it; a busy port is one
    ConflictError that says what to do."""
    import errno
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConflictError(
                f"Port {port} on {host} is already in use: stop what listens there, or pick another "
                "port with --port (0 picks a free one)"
            ) from exc
        raise
    return sock


@contextlib.contextmanager
def _sigterm_stops_cleanly(server: Any) -> Iterator[None]:
    """SIGTERM stops the server gracefully and `serve` returns: the process exits 0, not -15.

    uvicorn (0.29 and later) shuts down on SIGTERM, then raises the signal again under the handler
    that was installed before it started, so that handler decides how the process ends; Python's
    default one killed the process after the clean stop. This one asks the server to stop instead.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
