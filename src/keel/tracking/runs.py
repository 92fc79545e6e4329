"""Runs: start one, log params, metric series, tags, inputs and artifacts; find runs again."""

from __future__ import annotations

import atexit
import logging
import math
import os
import platform
import subprocess
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from keel.entities import DatasetVersion, MetricPoint, Run, RunStatus
from keel.errors import InvalidInputError
from keel.refs import check_name
from keel.tracking.query import parse_filter, parse_order_by

if TYPE_CHECKING:
    from keel.storage import BlobStore, MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["Runs", "ActiveRun"]

_PACKAGES = ("keelml", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "xgboost", "torch", "shap")


def _environment() -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for pkg in _PACKAGES:
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return env


def _git_commit(cwd: Path) -> str | None:
    """HEAD's commit (with '-dirty' when tracked files changed), or None outside a repository."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def _param_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


class ActiveRun:
    """A run being recorded. Use as a context manager; metric points are written in batches.

    >>> with ws.runs.start("credit", params={"max_depth": 6}) as run:   # doctest: +SKIP
    ...     run.log_metric("auc", 0.91)
    """

    def __init__(
        self,
        runs: Runs,
        run_id: str,
        *,
        experiment: str,
        name: str,
        buffer_points: int,
    ) -> None:
        self._runs = runs
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self._buffer: list[tuple[str, float, int, float]] = []
        self._buffer_points = buffer_points
        self._next_step: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ended = False
        # Flush and close at a normal interpreter exit even if end() is never called.
        ref = weakref.ref(self)

        def _at_exit() -> None:
            run = ref()
            if run is not None and not run._ended:
                run.end()

        self._at_exit: Callable[[], None] = _at_exit
        atexit.register(_at_exit)

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, experiment={self.experiment!r}, name={self.name!r})"

    # -- logging --------------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._check_open()
        self._runs._meta.runs.log_params(self.id, {str(k): _param_text(v) for k, v in params.items()})

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._check_open()
        self._runs._meta.runs.set_tags(self.id, {str(k): str(v) for k, v in tags.items()})

    def log_metric(self, key: str, value: float, *, step: int | None = None, timestamp: float | None = None) -> None:
        """Buffer one point of the series `key`; `step` defaults to the series' next step."""
        self._check_open()
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"Metric {key!r} must be a number, got {value!r}") from exc
        if not math.isfinite(number):
            raise InvalidInputError(f"Metric {key!r} must be finite, got {number}")
        if not isinstance(key, str) or not key or len(key) > 250:
            raise InvalidInputError(f"Metric key must be a non-empty string of at most 250 characters, got {key!r}")
        with self._lock:
            if step is None:
                step = self._next_step.get(key, 0)
            self._next_step[key] = max(self._next_step.get(key, 0), int(step) + 1)
            self._buffer.append((key, number, int(step), timestamp if timestamp is not None else _now_ts()))
            full = len(self._buffer) >= self._buffer_points
        if full:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
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
        name = name or path.name
        if name.startswith("/") or ".." in Path(name).parts:
            raise InvalidInputError(f"Artifact name {name!r} must be a relative path inside the run")
        digest, size = self._runs._blobs.put_file(path)
        self._runs._meta.runs.add_artifact(self.id, name, digest, size)
        return digest

    def log_bytes(self, data: bytes, name: str) -> str:
        self._check_open()
        if name.startswith("/") or ".." in Path(name).parts:
            raise InvalidInputError(f"Artifact name {name!r} must be a relative path inside the run")
        digest = self._runs._blobs.put_bytes(data)
        self._runs._meta.runs.add_artifact(self.id, name, digest, len(data))
        return digest

    def flush(self) -> None:
        """Write buffered metric points in one transaction."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            try:
                self._runs._meta.runs.log_metric_points(self.id, batch)
            except BaseException:
                with self._lock:  # keep the points so a later flush can retry
                    self._buffer[:0] = batch
                raise

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        """Flush, mark the run ended with `status`, and return it as recorded."""
        status = RunStatus(status)
        if not self._ended:
            self.flush()
            self._runs._meta.runs.finish(self.id, status, datetime.now(UTC))
            self._ended = True
            atexit.unregister(self._at_exit)
        return self._runs.get(self.id)

    def _check_open(self) -> None:
        if self._ended:
            raise InvalidInputError(f"Run {self.id} has ended; start a new run to log more")

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED)
        else:
            self.end(RunStatus.FAILED)


def _now_ts() -> float:
    return datetime.now(UTC).timestamp()


class Runs:
    """The runs of one workspace: `ws.runs`."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        *,
        author: str,
        buffer_points: int,
        datasets_get: Callable[[Any], DatasetVersion],
        dataset_id: Callable[[DatasetVersion], int],
    ) -> None:
        self._meta = meta
        self._blobs = blobs
        self._author = author
        self._buffer_points = buffer_points
        self._datasets_get = datasets_get
        self._dataset_id = dataset_id
        self._environment: dict[str, str] | None = None
        self._code_version: dict[Path, str | None] = {}

    def start(
        self,
        experiment: str = "default",
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        inputs: list[str | DatasetVersion] | None = None,
        code_dir: str | os.PathLike[str] | None = None,
    ) -> ActiveRun:
        """Start a run in `experiment` (created if new) and return it, recording code and environment."""
        check_name(experiment, what="experiment name")
        if self._environment is None:
            self._environment = _environment()
        where = Path(code_dir or os.getcwd())
        if where not in self._code_version:
            self._code_version[where] = _git_commit(where)
        run_id = uuid.uuid4().hex
        name = name or f"{experiment}-{run_id[:8]}"
        self._meta.runs.create(
            run_id=run_id,
            experiment=experiment,
            name=name,
            author=self._author,
            code_version=self._code_version[where],
            environment=self._environment,
            started_at=datetime.now(UTC),
        )
        run = ActiveRun(self, run_id, experiment=experiment, name=name, buffer_points=self._buffer_points)
        if params:
            run.log_params(params)
        if tags:
            run.set_tags(tags)
        for dataset in inputs or []:
            run.log_input(dataset)
        return run

    def get(self, run_id: str) -> Run:
        """A run by id (or a unique id prefix of at least 6 characters)."""
        return self._meta.runs.get(run_id)

    def list(self, *, experiment: str | None = None, limit: int = 100) -> list[Run]:
        """The newest runs first."""
        return self._meta.runs.list(experiment=experiment, limit=limit)

    def search(
        self,
        filter: str | None = None,
        *,
        order_by: str | list[str] | None = None,
        limit: int = 100,
        experiment: str | None = None,
    ) -> list[Run]:
        """Runs matching `filter`, executed in SQL.

        >>> ws.runs.search("metrics.auc > 0.8 and params.max_depth = 6", order_by="metrics.auc desc")  # doctest: +SKIP
        """
        if limit < 1:
            raise InvalidInputError(f"limit must be >= 1, got {limit}")
        return self._meta.runs.search(
            parse_filter(filter), order_by=parse_order_by(order_by), experiment=experiment, limit=limit
        )

    def metric_history(self, run_id: str, key: str | None = None) -> list[MetricPoint]:
        """Every logged point of one metric (or of all) in step order."""
        return self._meta.runs.metric_history(run_id, key)

    def experiments(self) -> list[tuple[str, int]]:
        """(experiment, number of runs) pairs."""
        return self._meta.runs.experiments()

    def artifact(self, run_id: str, path: str) -> bytes:
        run = self.get(run_id)
        for a in run.artifacts:
            if a.path == path:
                return self._blobs.get_bytes(a.digest)
        from keel.errors import NotFoundError

        raise NotFoundError(f"Run {run.id} has no artifact {path!r}")
