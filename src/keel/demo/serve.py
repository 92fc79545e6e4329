"""Act 8, Serve: `keel serve`'s application on loopback, and a webhook receiver standing in for a pager.

The story's traffic goes to the server's real HTTP endpoints; with `keep_serving` the same server
(the same port) goes on serving after the story, with `keel serve`'s background loop.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.workspace import Workspace

__all__ = ["DemoServer", "Receiver"]


class Receiver:
    """A webhook endpoint on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/on-call"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DemoServer:
    """`keel serve`'s application under uvicorn in a thread, on `sock` (default: a free loopback port).

    The demo's story talks to it; `keep_serving` then goes on serving the same port with `keel
    serve`'s background loop, so the address the story printed is the one the user opens."""

    def __init__(self, ws: Workspace, sock: Any = None) -> None:
        import uvicorn

        from keel.server import create_app
        from keel.server.run import listen

        self.app = create_app(ws)
        sock = sock if sock is not None else listen("127.0.0.1", 0)
        port = int(sock.getsockname()[1])
        # log_config=None: uvicorn leaves logging alone, so its lines go where the demo sends keel's.
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                log_config=None,
            )
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo's server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"

    def keep_serving(self, ws: Workspace, *, tick_s: float = 10.0) -> None:
        """Serve until Ctrl-C or SIGTERM, with `keel serve`'s background loop (monitors, retraining)."""
        import signal

        from keel.server.scheduler import MonitorScheduler
        from keel.server.state import state_of

        loop = MonitorScheduler(ws, state_of(self.app).monitor_gauges, tick_s=tick_s)
        loop.start()
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda *_: setattr(self.server, "should_exit", True)) if main else None
        try:
            while self.thread.is_alive():
                self.thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            loop.stop()
            self.close()

    def close(self) -> None:
        self.server.should_exit = True  # shutdown writes the prediction log's last rows
        self.thread.join(timeout=30)
