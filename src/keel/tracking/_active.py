"""ActiveRun: a run being recorded by this process, as a context manager; points written in batches."""

from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from keel.entities import DatasetVersion, Run, RunStatus
from keel.errors import InvalidInputError
from keel.tracking._checks import (
    artifact_name,
    metric_step,
    metric_timestamp,
    metric_value,
    now_ts,
    params_text,
    run_status,
    tags_text,
)

if TYPE_CHECKING:
    from keel.tracking.runs import Runs

logger = logging.getLogger(__name__)

__all__ = ["ActiveRun"]


def _exit_status() -> RunStatus:
    """The status of a run still open when the interpreter exits.

    A script that ends on an uncaught exception leaves it in sys.last_value before atexit
    handlers run; an interactive session keeps old errors there, so it always means finished.
    """
    if hasattr(sys, "ps1"):
        return RunStatus.FINISHED
    last = getattr(sys, "last_value", None)
    if isinstance(last, KeyboardInterrupt):
        return RunStatus.KILLED
    if isinstance(last, BaseException) and not (isinstance(last, SystemExit) and last.code in (0, None)):
        return RunStatus.FAILED
    return RunStatus.FINISHED


class ActiveRun:
    """A run being recorded. Use as a context manager; metric points are written in batches.

    Leaving the `with` block ends the run: finished, failed on an exception, killed on
    KeyboardInterrupt. A run never ended is ended when the interpreter exits, its buffered
    points written (failed if the script died of an uncaught exception).

    >>> with ws.runs.start("credit", params={"max_depth": 6}) as run:   # doctest: +SKIP
    ...     run.log_metric("auc", 0.91)
    """

    def __init__(self, runs: Runs, run_id: str, *, experiment: str, name: str, buffer_points: int) -> None:
        self._runs = runs
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self._buffer: list[tuple[str, float, int, float]] = []
        self._buffer_points = buffer_points
        self._next_step: dict[str, int] = {}
        self._lock = threading.Lock()  # guards the buffer and step counters
        self._end_lock = threading.Lock()
        self._ended = False
        self._detached = False
        # Flush and close at interpreter exit even if end() is never called. The handler holds
        # the run, so a run nobody references any more still gets its buffered points written.
        atexit.register(self._end_at_exit)

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, experiment={self.experiment!r}, name={self.name!r})"

    # -- logging --------------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record hyperparameters; a param keeps its first value (another one is a ConflictError)."""
        self._check_open()
        self._runs._meta.runs.log_params(self.id, params_text(params))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags; unlike params, a tag can be set again to a new value."""
        self._check_open()
        self._runs._meta.runs.set_tags(self.id, tags_text(tags))

    def log_metric(self, key: str, value: float, *, step: int | None = None, timestamp: float | None = None) -> None:
        """Buffer one point of the series `key`; `step` defaults to the series' next step.

        Points are written in batches (settings.metric_buffer_points), at end() and at exit.
        NaN and infinities are refused with InvalidInputError.
        """
        if self._ended or self._detached:
            self._check_open()
        # The training loop's hot path: a finite float for a key this run already checked.
        fast = type(value) is float and math.isfinite(value) and key in self._next_step
        number = value if fast else metric_value(key, value)
        if step is not None and not (type(step) is int and 0 <= step < 1 << 62):  # the usual step: no further checks
            step = metric_step(key, step)
        ts = now_ts() if timestamp is None else metric_timestamp(timestamp, key)
        with self._lock:
            last = self._next_step.get(key, 0)
            at = last if step is None else int(step)
            self._next_step[key] = last if last > at else at + 1
            self._buffer.append((key, number, at, ts))
            full = len(self._buffer) >= self._buffer_points
        if full:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Buffer one point of each metric, all at `step` (default: each series' next step)."""
        for key, value in metrics.items():
            self.log_metric(key, value, step=step)

    def log_input(self, dataset: str | DatasetVersion) -> DatasetVersion:
        """Record that this run read a dataset version (lineage); return that version."""
        self._check_open()
        version = self._runs._datasets_get(dataset)
        self._runs._meta.runs.add_inputs(self.id, [self._runs._dataset_id(version)])
        return version

    def log_artifact(self, path: str | os.PathLike[str], *, name: str | None = None) -> str:
        """Store a local file with the run under `name` (default: its file name); return its digest."""
        self._check_open()
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"Artifact {str(path)!r} is not a file")
        name = artifact_name(path.name if name is None else name)
        digest, size = self._runs._blobs.put_file(path)
        self._runs._meta.runs.add_artifact(self.id, name, digest, size)
        return digest

    def log_bytes(self, data: bytes, name: str) -> str:
        """Store `data` with the run under `name`; return its digest. Read it back with ws.runs.artifact()."""
        self._check_open()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"log_bytes takes bytes, got {type(data).__name__}; encode text first")
        data = bytes(data)
        artifact_name(name)
        digest = self._runs._blobs.put_bytes(data)
        self._runs._meta.runs.add_artifact(self.id, name, digest, len(data))
        return digest

    def flush(self) -> None:
        """Write buffered metric points in one transaction."""
        self._drain(lambda batch: self._runs._meta.runs.log_metric_points(self.id, batch))

    def _drain(self, write: Callable[[list[tuple[str, float, int, float]]], None]) -> None:
        """Take the buffered points and `write` them; on failure they go back, for a later retry."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        try:
            write(batch)
        except BaseException:
            with self._lock:
                self._buffer[:0] = batch
            raise

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        """Flush, mark the run ended with `status`, and return it as recorded. Ending twice is a no-op."""
        self._close(status)
        return self._runs.get(self.id)

    def _close(self, status: RunStatus | str) -> None:
        """Write the buffered points and the end in one transaction (end() without reading the run back)."""
        status = run_status(status)
        with self._end_lock:
            if self._ended:
                return
            ended_at = datetime.now(UTC)
            self._drain(lambda batch: self._runs._meta.runs.finish(self.id, status, ended_at, batch))
            self._ended = True
            self._runs._heartbeat.discard(self.id)
            atexit.unregister(self._end_at_exit)

    @property
    def ended(self) -> bool:
        return self._ended

    def detach(self) -> None:
        """Flush, then let go of the run: it stays running, this process no longer ends it at exit.

        For runs driven from elsewhere (the HTTP API): log to them with ws.runs.log_params(run_id, ...)
        and end them with ws.runs.end(run_id). This ActiveRun refuses further logging. From then on
        the run is alive as long as it is written to: after settings.run_remote_timeout_s without a
        write it is marked killed.
        """
        self.flush()
        self._runs._meta.runs.release(self.id, datetime.now(UTC))
        self._runs._heartbeat.discard(self.id)
        self._detached = True
        atexit.unregister(self._end_at_exit)

    def _end_at_exit(self) -> None:
        if self._ended or self._detached:
            return
        try:
            self._close(_exit_status())
        except Exception:  # noqa: BLE001 - the last chance to save the run; say so and let the exit go on
            logger.exception("could not end run %s at interpreter exit; its last metric points are lost", self.id)

    def _check_open(self) -> None:
        if self._ended:
            raise InvalidInputError(f"Run {self.id} has ended; start a new run to log more")
        if self._detached:
            raise InvalidInputError(f"Run {self.id} was detached; log to it with ws.runs.log_*({self.id!r}, ...)")

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self._close(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self._close(RunStatus.KILLED)
        else:
            self._close(RunStatus.FAILED)
