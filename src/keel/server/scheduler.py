"""The background loop of `keel serve` (`ws.tick()` every few seconds: due monitors,
due retraining queued as jobs, queued jobs started), and the monitors' latest values as gauges.

Checks also run as jobs (`POST .../monitor/run`), in `keel worker` or from the CLI, each with a
workspace of its own: so each tick reads the newest stored check of every monitor whose last
check changed, whoever ran it, rather than only the results of its own checks."""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

# Statistics exported as gauges: per feature, and model-level (feature label '').
EXPORTED = {
    "psi",
    "js_distance",
    "wasserstein_norm",
    "drift",
    "missing_rate",
    "out_of_range_rate",
    "unseen_category_rate",
    "prediction_psi",
    "multivariate_auc",
    "drifted_share",
    "schema_violation_rate",
    "accuracy",
    "roc_auc",
    "f1",
    "log_loss",
    "ece",
    "mae",
    "rmse",
    "r2",
    "roc_auc_drop",
    "accuracy_drop",
    "rows",
    "labelled_rows",
}


class MonitorGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "keel_monitor_value",
            "Latest value of a monitor statistic",
            ["model", "feature", "metric"],
            registry=registry,
        )
        self.open_alerts = Gauge("keel_alerts_open", "Open alerts", ["model"], registry=registry)
        self._exported: dict[str, int] = {}  # model -> id of the check its gauges show

    def update(self, model: str, values: list[tuple[str, str, float | None]]) -> None:
        for feature, metric, value in values:
            if metric in EXPORTED and value is not None and math.isfinite(value):
                self.gauge.labels(model, feature, metric).set(value)

    def refresh(self, ws: Workspace) -> None:
        """Gauges of the newest stored check of every monitor not exported yet, and open alerts."""
        for name, _config, last in ws.monitoring.monitors():
            if last is None:
                continue
            latest = ws.monitoring.latest(name)
            if latest is not None and self._exported.get(name) != latest[0].id:
                self.update(name, latest[1])
                self._exported[name] = latest[0].id
        counts: dict[str, int] = {}
        for alert in ws.monitoring.alerts.list(status="open"):
            counts[alert.model] = counts.get(alert.model, 0) + 1
        for name in {*counts, *self._exported}:
            self.open_alerts.labels(name).set(counts.get(name, 0))


class MonitorScheduler:
    """A daemon thread that wakes every `tick_s` and runs the monitors that are due."""

    def __init__(self, ws: Workspace, gauges: MonitorGauges, *, tick_s: float = 10.0) -> None:
        self.ws = ws
        self.gauges = gauges
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="keel-monitor-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()

    def tick(self) -> int:
        """Due monitors, then due retraining (queued as jobs), then queued jobs started here; then
        the gauges of every check stored since the last tick."""
        results = self.ws.tick()["monitors"]
        try:
            self.gauges.refresh(self.ws)
        except Exception:  # the loop must survive a broken store
            logger.exception("updating the monitor gauges failed")
        return len(results)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
