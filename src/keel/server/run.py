"""Run the application under uvicorn."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import ConflictError
from keel.server.app import check_bind, create_app
from keel.server.observability import configure_logging
from keel.server.state import state_of

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
    workers: int = 1,
    on_ready: Any = None,
    monitor_tick_s: float | None = 10.0,
    allowed_hosts: str | None = None,
) -> None:
    """Serve `ws` until interrupted. Binding a non-loopback host requires API tokens.

    Requests must name this server in their Host header: a loopback name, `host`, or one of
    `allowed_hosts` (comma-separated; default: the `server_allowed_hosts` setting).
    `workers` > 1 serves from that many processes sharing the socket and the store
    (keel.server.workers). `on_ready(host, port)` is called once the champions are loaded and
    warm (in every worker), when /readyz says ready.
    """
    require_auth = check_bind(ws, host)
    # Listen before the app starts: a busy port fails here, as one error, before on_ready announces
    # an address; and port 0's free port is the one announced.
    sock = listen(host, port)
    with sock:
        port = int(sock.getsockname()[1])
        configure_logging(log_level, log_format)
        logger.info(
            "serving %s on http://%s:%s (auth %s, %d worker process%s)",
            ws,
            host,
            port,
            "required" if require_auth else "when tokens exist",
            workers,
            "es" if workers > 1 else "",
        )
        options = ServeOptions(
            host=host,
            port=port,
            require_auth=require_auth,
            monitor_tick_s=monitor_tick_s,
            allowed_hosts=allowed_hosts,
            log_level=log_level,
            log_format=log_format,
        )
        if workers > 1:
            from keel.server.workers import supervise

            supervise(ws.settings, sock, options, workers=workers, on_ready=on_ready)
            return
        run_app(ws, sock, options, on_ready=None if on_ready is None else lambda: on_ready(host, port))


@dataclass(frozen=True)
class ServeOptions:
    """What one serving process needs besides its workspace and socket (picklable: workers get it)."""

    host: str
    port: int
    require_auth: bool
    monitor_tick_s: float | None
    allowed_hosts: str | None
    log_level: str = "info"
    log_format: str = "text"


def run_app(ws: Workspace, sock: Any, options: ServeOptions, *, on_ready: Any = None, all_warm: Any = None) -> None:
    """Serve `ws` on the listening `sock` in this process until stopped (SIGTERM, Ctrl-C).
    `all_warm()` (several workers): whether every worker is warm, which /readyz waits for too."""
    import uvicorn

    app = create_app(
        ws,
        require_auth=options.require_auth,
        monitor_tick_s=options.monitor_tick_s,
        bind_host=options.host,
        allowed_hosts=options.allowed_hosts,
        warm=True,
        on_warm=on_ready,
    )
    warmup = state_of(app).warmup
    if warmup is not None:
        warmup.others = all_warm
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
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
