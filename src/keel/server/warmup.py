"""Warm-up at start: a server is ready once every champion it will serve is loaded and has scored.

Without it the first prediction of each model pays for loading it (the skops audit, the flavour's
imports, the first call into the library: 2.3 s after start, measured) while /readyz already said
"ready": a load balancer sends traffic to a process that then answers slowly. `keel serve` starts
a Warmup in a background thread: it loads the champion of every model (up to the cache's size,
most recently updated first) into the server's model cache, scores a few rows of each version's
training sample (or, without one, only loads it), and records their scoring time so that quick
models are scored on the event loop from the first request. Then it sends the app a few requests,
in process and marked so that metrics and access logs skip them (`_warm_routes`): FastAPI builds
each route's state (its parameters' validators) on the first request that walks past it, 0.1 s for
keel's routes, and each endpoint's context and its dependencies' first run on its first call,
which would otherwise fall on the first real request; and the prediction log opens its
write-ahead file. /readyz answers 503 "warming" until it is done; /healthz answers all along (the process is alive). A champion that fails to load or
score does not keep the server unready for the others: it is logged and listed in /readyz.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.refs import CHAMPION

if TYPE_CHECKING:
    from keel.server.cache import ModelCache
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

__all__ = ["Warmup"]

WARM_PATH = "/_keel/warmup"  # no route: the request walks past all of them and ends in a 404
WARM_ROWS = 4  # rows of the training sample scored per champion: enough to run every code path once


@dataclass
class Warmup:
    ws: Workspace
    cache: ModelCache
    done: threading.Event = field(default_factory=threading.Event)
    warmed: list[str] = field(default_factory=list)  # "name@version", in the order they were warmed
    failed: dict[str, str] = field(default_factory=dict)  # "name@champion" -> why
    seconds: float | None = None
    app: Any = None  # the ASGI app whose routes to warm (create_app sets it)
    predlog: Any = None  # its prediction log writer, opened once warm
    # `keel serve --workers N`: whether every worker is warm (the supervisor's event). Any worker
    # may answer a /readyz, so each says ready only once all are.
    others: Any = None

    def ready(self) -> bool:
        return self.done.is_set() and (self.others is None or bool(self.others()))

    def start(self, then: Any = None) -> threading.Thread:
        """Warm up in a daemon thread; call `then()` once done (e.g. announce the address)."""

        def work() -> None:
            self.run()
            if then is not None:
                then()

        thread = threading.Thread(target=work, name="keel-warmup", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        started = time.perf_counter()
        try:
            for name in self._champions():
                self._warm(name)
            if self.app is not None:
                self._warm_routes()
        except Exception as exc:  # a broken store: serve anyway, lazily, and say why
            logger.exception("warming up the champions failed")
            self.failed["*"] = str(exc)
        finally:
            self.seconds = time.perf_counter() - started
            self.done.set()
            logger.info("warm: %d champion(s) in %.2f s", len(self.warmed), self.seconds)

    def status(self) -> dict[str, Any]:
        return {
            "warm": self.done.is_set(),
            "champions": list(self.warmed),
            "failed": dict(self.failed),
            "warmup_s": None if self.seconds is None else round(self.seconds, 3),
        }

    def _champions(self) -> list[str]:
        models = [m for m in self.ws.models.list() if CHAMPION in m.aliases]
        models.sort(key=lambda m: m.updated_at, reverse=True)
        return [m.name for m in models[: self.cache.max_models]]

    def _warm_routes(self) -> None:
        """In-process requests, marked in their ASGI scope so that they are neither counted nor
        logged: one for a path no route has (a 404: every route's state is built on the way), and
        one per warmed champion to its /predict with a malformed ?version= (a 422 from the
        parameters' validation, after the authentication dependency ran, before any model is
        asked or anything logged). Then the prediction log opens its write-ahead file."""
        import asyncio

        async def walk() -> list[int]:
            statuses = [await _call(self.app, "GET", WARM_PATH)]
            for ref in self.warmed:
                name = ref.rsplit("@", 1)[0]
                statuses.append(await _call(self.app, "POST", f"/api/v1/models/{name}/predict", b"version=warm-up"))
            return statuses

        try:
            statuses = asyncio.run(walk())
            logger.debug("warm-up requests answered %s", statuses)
            if self.predlog is not None:
                self.predlog.open()
        except Exception as exc:  # the first real request then builds what is missing, as without warm-up
            logger.warning("warming up the routes failed: %s", exc)

    def _warm(self, name: str) -> None:
        try:
            model = self.cache.resolve(name, CHAMPION, None)
            sample = None if model.flavor in ("lm", "callable") else self.ws.models.training_sample(model.info)
            if sample is not None and len(sample[0]):
                # as the route sends them (records): the DataFrame path is slower and would make a
                # quick model look slow to the cache's inline-scoring rule
                rows = sample[0].head(WARM_ROWS).to_dict(orient="records")
                for _ in range(2):  # the first call pays for lazy set-up; the second is the one timed
                    cpu = time.process_time()
                    model.predict_and_proba(rows, extra="ignore")
                    self.cache.observe(model, len(rows), time.process_time() - cpu)
            self.warmed.append(f"{name}@{model.version}")
        except Exception as exc:  # served lazily later; the error then reaches the client
            logger.warning("warming up %s@%s failed: %s", name, CHAMPION, exc)
            self.failed[f"{name}@{CHAMPION}"] = str(exc)


async def _call(app: Any, method: str, path: str, query: bytes = b"") -> int:
    """One in-process HTTP request to `app`, marked as the warm-up's; its status."""
    from keel.server.observability import WARMUP_SCOPE

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", b"2")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        WARMUP_SCOPE: True,
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"[]", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status
