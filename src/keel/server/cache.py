"""A bounded cache of loaded models, keyed by (name, version), and of what aliases point at.

A resolved alias is kept until the registry changes, in this process or in any other sharing the
store (`ws.models.generation`, a memory read backed by keel.storage.changes): so a move made
anywhere, through the REST API, the CLI or another server process, is served by the next request
(with PostgreSQL, once its notification arrived: about a millisecond). It is also re-read from the
store at least every `alias_cache_s` seconds (default 1 s), in case a change went unseen. Requests
already holding the old model finish with it. A numbered version never changes, so `?version=`
needs no store query once its model is loaded.

The cache also keeps how long each model takes to score a small request, so that the prediction
route can score quick ones on the event loop instead of paying for a hop to a worker thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from keel.refs import CHAMPION
from keel.server.observability import Metrics

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

INLINE_MAX_ROWS = 8  # requests up to this many rows may be scored on the event loop...
INLINE_BUDGET_S = 0.0005  # ...when the model's recent small requests took less CPU time than this on average
_EWMA = 0.2  # weight of the newest observation in the moving average of scoring time


class ModelCache:
    def __init__(self, ws: Workspace, metrics: Metrics, *, max_models: int = 8, alias_cache_s: float = 1.0) -> None:
        self._ws = ws
        self._metrics = metrics
        self.max_models = max_models
        self.alias_cache_s = alias_cache_s
        self._items: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        # (name, alias) -> (resolved at, Models.generation then, version); only aliases that resolved
        self._aliases: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._refreshing: dict[tuple[str, str], float] = {}  # alias -> when a request began re-reading it
        self._score_s: dict[tuple[str, int], float] = {}

    # -- references -----------------------------------------------------------------------
    @staticmethod
    def requested(alias: str | None, version: int | None) -> int | str:
        """What a request names, the one home of the rule: ?version= wins, then ?alias=, else the champion."""
        return version if version is not None else alias or CHAMPION

    def lookup(self, name: str, alias: str | None, version: int | None) -> Any | None:
        """The model a request names, from memory alone (no I/O: safe on the event loop), or None
        when the store must be asked: then call resolve() in a worker thread."""
        wanted = self.requested(alias, version)
        if isinstance(wanted, str):
            ref = (name, wanted)
            hit = self._aliases.get(ref)
            if hit is None or hit[1] != self._ws.models.generation:
                return None
            at, _, wanted = hit
            if time.monotonic() - at > self.alias_cache_s:
                now = time.monotonic()
                with self._lock:  # one request re-reads the alias; the others keep its last answer meanwhile
                    started = self._refreshing.get(ref)
                    if started is None or now - started > self.alias_cache_s:  # none, or one that never finished
                        self._refreshing[ref] = now
                        return None
        key = (name, wanted)
        with self._lock:
            model = self._items.get(key)
            if model is not None:
                self._items.move_to_end(key)
            return model

    def resolve(
        self, name: str, alias: str | None, version: int | None, *, accept: Callable[[Any], None] | None = None
    ) -> Any:
        """The model a request names (requested()). Blocking: one indexed query (and a load, the
        first time a version is asked for). `accept(version_record)` may refuse the version (raise)
        before its artifact is read."""
        wanted = self.requested(alias, version)
        if isinstance(wanted, int):
            info = self._ws.models.get(f"{name}@{wanted}")
        else:
            ref = (name, wanted)
            generation = self._ws.models.generation  # read before the query: a move after it makes this entry stale
            try:
                info = self._ws.models.get(f"{name}@{ref[1]}")
                self._aliases[ref] = (time.monotonic(), generation, info.version)
            finally:
                self._refreshing.pop(ref, None)
        if accept is not None:
            accept(info)
        return self.get(info.name, info.version)

    # -- models ---------------------------------------------------------------------------
    def get(self, name: str, version: int) -> Any:
        key = (name, version)
        with self._lock:
            model = self._items.get(key)
            if model is not None:
                self._items.move_to_end(key)
                return model
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per version, however many requests ask at once
            with self._lock:
                model = self._items.get(key)
                if model is not None:
                    return model
            start = time.perf_counter()
            model = self._ws.models.load(f"{name}@{version}")
            self._metrics.model_load_seconds.labels(name, str(version)).observe(time.perf_counter() - start)
            self._metrics.model_loads.labels(name, str(version)).inc()
            with self._lock:
                self._items[key] = model
                self._items.move_to_end(key)
                while len(self._items) > self.max_models:
                    evicted, _ = self._items.popitem(last=False)
                    self._score_s.pop(evicted, None)
                self._loading.pop(key, None)
                self._metrics.cache_size.set(len(self._items))
            return model

    # -- scoring time ---------------------------------------------------------------------
    def is_quick(self, model: Any, rows: int) -> bool:
        """Whether scoring `rows` rows with `model` may run on the event loop: a small request to a
        model whose small requests recently took under INLINE_BUDGET_S. Unknown models are not quick."""
        if rows > INLINE_MAX_ROWS or model.flavor == "callable":  # user code may wait on I/O: never on the loop
            return False
        seconds = self._score_s.get((model.name, model.version))
        return seconds is not None and seconds < INLINE_BUDGET_S

    def observe(self, model: Any, rows: int, seconds: float) -> None:
        """Record the CPU time a request of `rows` rows took to score (CPU, not wall time: in a
        worker thread, waiting for the GIL under load would make every model look slow)."""
        if rows > INLINE_MAX_ROWS:
            return
        key = (model.name, model.version)
        before = self._score_s.get(key)
        self._score_s[key] = seconds if before is None else before + _EWMA * (seconds - before)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._items)


class ShadowTable:
    """Which models have a challenger in shadow mode ({model: version}), re-read from the store at
    most every `ttl_s` seconds: one request refreshes it while the others use the last answer."""

    def __init__(self, ws: Workspace, *, ttl_s: float = 2.0) -> None:
        self.ws = ws
        self.ttl_s = ttl_s
        self._read_at = -math.inf
        self._versions: dict[str, int] = {}

    async def version(self, name: str) -> int | None:
        if time.monotonic() - self._read_at > self.ttl_s:
            self._read_at = time.monotonic()
            try:
                self._versions = await run_in_threadpool(self.ws.retraining.shadows)
            except Exception:  # serving goes on without shadows rather than failing requests
                logger.exception("reading the shadow challengers failed")
        return self._versions.get(name)
