"""A bounded cache of loaded models, keyed by (name, version): an alias resolves per request,
so when it moves the next request loads (or finds) the new version, and requests already
holding the old model finish with it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from keel.server.observability import Metrics


class ModelCache:
    def __init__(self, ws: Any, metrics: Metrics, *, max_models: int = 8) -> None:
        self._ws = ws
        self._metrics = metrics
        self.max_models = max_models
        self._items: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}

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
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
                self._metrics.cache_size.set(len(self._items))
            return model

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._items)
