"""An app under a real uvicorn server on 127.0.0.1 (a free port), in a daemon thread, for the tests
that need real sockets (keep-alive connections, keel.Client over HTTP, a clean stop, a browser).
tests/ is on sys.path (pyproject's pytest `pythonpath`), so every test folder imports it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal


class LiveServer:
    def __init__(self, server: Any, thread: threading.Thread, url: str) -> None:
        self.server, self.thread, self.url = server, thread, url

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask uvicorn to exit (as on SIGTERM) and wait for its thread; True once it has ended."""
        self.server.should_exit = True
        self.thread.join(timeout=timeout)
        return not self.thread.is_alive()


@contextmanager
def live_server(
    app: Any,
    *,
    lifespan: Literal["auto", "on", "off"] = "auto",
    log_level: str = "warning",
    start_timeout: float = 30.0,
) -> Iterator[LiveServer]:
    """Serve `app` until the block ends; `lifespan='on'` runs its startup and shutdown hooks."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level, lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(server, thread, f"http://127.0.0.1:{port}")
    try:
        yield live
    finally:
        live.stop()


def announced_url(proc: Any, timeout_s: float = 120.0) -> str:
    """The address a `keel serve` subprocess (text stdout, stderr merged in) prints once it is
    ready; the process is killed and its output shown when it never does."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if "Dashboard: http://" in line:
            return str(line.split("Dashboard: ")[1].split()[0].rstrip("/"))
    proc.kill()
    raise AssertionError("keel serve never announced its address; its output was:\n" + "".join(seen)[-3000:])
