"""Prometheus metrics, request ids and structured logs for the server."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from keel.workspace.facade import PredictionLogger

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("keel_request_id", default="-")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The server's metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("keel_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "keel_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter("keel_predictions", "Rows predicted", ["model", "version"], registry=r)
        self.predict_latency = Histogram(
            "keel_prediction_duration_seconds",
            "Model prediction time per request",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_loads = Counter("keel_model_loads", "Models loaded into the cache", ["model", "version"], registry=r)
        self.model_load_seconds = Histogram(
            "keel_model_load_seconds",
            "Time to load a model",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_size = Gauge("keel_model_cache_size", "Models held in the cache", registry=r)


class PredictionLogCollector:
    """Prometheus view of the log writer: keel_predictions_logged_total, keel_predictions_dropped_total."""

    def __init__(self, predlog: PredictionLogger) -> None:
        self.predlog = predlog

    def describe(self) -> Iterator[Any]:
        return self.collect()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield CounterMetricFamily(
            "keel_predictions_logged", "Predictions written to the prediction log", value=self.predlog.logged
        )
        yield CounterMetricFamily(
            "keel_predictions_dropped",
            "Predictions not logged: buffer full or write failed",
            value=self.predlog.dropped,
        )
        yield GaugeMetricFamily(
            "keel_predictions_log_pending",
            "Predictions buffered or spilled, not yet written",
            value=self.predlog.pending,
        )
        yield GaugeMetricFamily(
            "keel_predictions_log_spilled",
            "Predictions past the buffer, kept in the write-ahead file until written",
            value=getattr(self.predlog, "spilled", 0),
        )


WARMUP_SCOPE = "keel.warmup"  # set in the ASGI scope of the warm-up's in-process requests (no client can set it)


class ObservabilityMiddleware:
    """Pure ASGI middleware: a request id on every request and response, counts and latency per route.
    The warm-up's in-process requests (keel.server.warmup) are neither counted nor logged."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger("keel.server.access")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get(WARMUP_SCOPE):
            await self.app(scope, receive, send)
            return
        incoming = ""
        for k, v in scope.get("headers", ()):
            if k == b"x-request-id":
                incoming = v.decode("latin-1")
                break
        rid = incoming if _SAFE_ID.match(incoming or "") else uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        status_holder = [500]
        start = time.perf_counter()

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static") else "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, path, str(status_holder[0])).inc()
            self.metrics.latency.labels(method, path).observe(elapsed)
            if self.log.isEnabledFor(logging.INFO):
                self.log.info(
                    "%s %s %s %.1fms",
                    method,
                    scope["path"],
                    status_holder[0],
                    elapsed * 1000,
                    extra={
                        "status": status_holder[0],
                        "duration_ms": round(elapsed * 1000, 2),
                        "method": method,
                        "path": scope["path"],
                    },
                )
            request_id_var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id."""

    _EXTRA = ("status", "duration_ms", "method", "path")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        for key in self._EXTRA:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{self.formatTime(record)} {record.levelname:<7} [{request_id_var.get()}] {record.name}: {record.getMessage()}"


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("keel")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
