"""Runs: start one, log params, metric series, tags, inputs and artifacts; find runs again.

The pieces a run is made of live beside this module: ActiveRun (the run this process records) in
_active.py, the checks of what a run accepts in _checks.py, the git commit it ran at in _git.py.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.entities import BoolOp, Comparison, DatasetVersion, MetricPoint, Run, RunStatus
from keel.errors import InvalidInputError, NotFoundError
from keel.refs import check_name
from keel.tracking._active import ActiveRun
from keel.tracking._checks import NAME_CHARS, metric_point, now_ts, params_text, run_status, tags_text
from keel.tracking._git import code_version
from keel.tracking._liveness import Heartbeat, kill_reason, this_process
from keel.tracking.query import parse_filter, parse_order_by

if TYPE_CHECKING:
    from keel.storage import BlobStore, MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["Runs"]

_PACKAGES = ("keelml", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "xgboost", "torch", "shap")


def _environment() -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for pkg in _PACKAGES:
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return env


_CHECK_EVERY_S = 60.0  # list()/search() look for runs whose process died at most this often
_EPSILON = timedelta(microseconds=1)  # "no newer heartbeat than the one read" as a strict comparison


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
        heartbeat_timeout_s: float = 600,
        remote_timeout_s: float = 86400,
    ) -> None:
        self._meta = meta
        self._blobs = blobs
        self._author = author
        self._buffer_points = buffer_points
        self._datasets_get = datasets_get
        self._dataset_id = dataset_id
        self._environment: dict[str, str] | None = None
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._remote_timeout_s = remote_timeout_s
        self._heartbeat = Heartbeat(lambda ids: meta.runs.heartbeat(ids, datetime.now(UTC)))
        self._checked_at: float | None = None  # time.monotonic() of the last mark_lost()
        self._marked_killed: list[str] = []  # by mark_lost(), since this workspace opened
        self._checking = threading.Lock()  # one check at a time (a server reads from many threads)

    def start(
        self,
        experiment: str = "default",
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        inputs: str | DatasetVersion | list[str | DatasetVersion] | None = None,
        code_dir: str | os.PathLike[str] | None = None,
    ) -> ActiveRun:
        """Start a run in `experiment` (created if new) and return it; writes a Run.

        Records the start time, the environment (Python and key package versions) and the code
        version: the git commit of `code_dir` (default: the working directory), with '-dirty'
        when tracked files changed, or None outside a git repository.

        >>> with ws.runs.start("credit", params={"max_depth": 6}, inputs=["credit@3"]) as run:  # doctest: +SKIP
        ...     run.log_metric("auc", 0.91)
        """
        check_name(experiment, what="experiment name")
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > NAME_CHARS):
            raise InvalidInputError(
                f"A run name must be a non-empty string of at most {NAME_CHARS} characters, got {name!r}"
            )
        # Checked before the run exists, so bad input leaves no half-made run behind.
        param_text = params_text(params or {})
        tag_text = tags_text(tags or {})
        if isinstance(inputs, (str, DatasetVersion)):
            inputs = [inputs]
        versions = [self._datasets_get(d) for d in inputs or []]
        if code_dir is not None and not Path(code_dir).is_dir():
            raise InvalidInputError(f"code_dir {str(code_dir)!r} is not a folder")
        if self._environment is None:
            self._environment = _environment()
        run_id = uuid.uuid4().hex
        name = name or f"{experiment}-{run_id[:8]}"
        me = this_process()
        self._meta.runs.create(
            run_id=run_id,
            experiment=experiment,
            name=name,
            author=self._author,
            code_version=code_version(None if code_dir is None else Path(code_dir)),
            environment=self._environment,
            started_at=datetime.now(UTC),
            params=param_text,
            tags=tag_text,
            input_ids=[self._dataset_id(v) for v in versions],
            owner_host=me.host,
            owner_pid=me.pid,
            owner_token=me.token,
        )
        run = ActiveRun(self, run_id, experiment=experiment, name=name, buffer_points=self._buffer_points)
        self._heartbeat.add(run_id)
        return run

    # -- writes by run id (what the HTTP API and ActiveRun-less callers use) ----------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Record params of a running run; a param keeps its first value (another is a ConflictError)."""
        self._meta.runs.log_params(self._running(run_id), params_text(params), touch_at=datetime.now(UTC))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags of a run (also of an ended one: tags are annotations)."""
        self._meta.runs.set_tags(self._meta.runs.resolve_id(run_id), tags_text(tags), touch_at=datetime.now(UTC))

    def log_metric_points(self, run_id: str, points: Iterable[tuple[str, float, int | None, float | None]]) -> int:
        """Write (key, value, step, timestamp) points of a running run in one transaction; return how many.

        A step of None continues the series after its highest stored step; a timestamp of None is now.
        Like every write by run id, it is the run's heartbeat (see ActiveRun.detach).
        """
        full = self._running(run_id)
        given: list[tuple[str, float, int | None, float]] = []
        for key, value, step, timestamp in points:
            key, number, at, ts = metric_point(key, value, step, timestamp)
            given.append((key, number, at, now_ts() if ts is None else ts))
        unstepped = sorted({key for key, _, step, _ in given if step is None})
        next_step = self._meta.runs.next_steps(full, unstepped) if unstepped else {}
        rows: list[tuple[str, float, int, float]] = []
        for key, number, step, ts in given:
            at = next_step.get(key, 0) if step is None else step
            next_step[key] = max(next_step.get(key, 0), at + 1)
            rows.append((key, number, at, ts))
        self._meta.runs.log_metric_points(full, rows, touch_at=datetime.now(UTC))
        return len(rows)

    def log_inputs(self, run_id: str, datasets: Iterable[str | DatasetVersion]) -> list[DatasetVersion]:
        """Record dataset versions a running run read (lineage); return them."""
        full = self._running(run_id)
        versions = [self._datasets_get(d) for d in ([datasets] if isinstance(datasets, str) else datasets)]
        self._meta.runs.add_inputs(full, [self._dataset_id(v) for v in versions], touch_at=datetime.now(UTC))
        return versions

    def end(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        """Mark a running run ended with `status` and return it; a run already ended is returned as is."""
        status = run_status(status)
        full = self._meta.runs.resolve_id(run_id)
        self._meta.runs.finish(full, status, datetime.now(UTC))
        self._heartbeat.discard(full)
        return self.get(full)

    # -- liveness -----------------------------------------------------------------------------
    def mark_lost(self) -> list[str]:
        """Mark killed the running runs whose process is gone; return their ids.

        A run owned by a process of this machine (same boot and pid namespace, on Linux) is killed
        as soon as that process is gone. Any other owned run once its heartbeat is older than
        settings.run_heartbeat_timeout_s; a run driven over HTTP once it had no write for
        settings.run_remote_timeout_s. Its end time is its last heartbeat, its reason the tag
        'keel.killed_reason'. Runs at the workspace's open, at `keel gc`, and at most once a
        minute from list() and search().
        """
        with self._checking:
            return self._mark_lost()

    def _mark_lost(self) -> list[str]:
        self._checked_at = time.monotonic()
        me, now = this_process(), datetime.now(UTC)
        killed = []
        for owner in self._meta.runs.running_owners():
            verdict = kill_reason(
                host=owner.host,
                pid=owner.pid,
                token=owner.token,
                heartbeat_at=owner.heartbeat_at,
                now=now,
                me=me,
                timeout_s=self._heartbeat_timeout_s,
                remote_timeout_s=self._remote_timeout_s,
            )
            if verdict is None:
                continue
            reason, by_heartbeat = verdict
            # A verdict from the heartbeat holds only if no beat came since it was read.
            if self._meta.runs.mark_killed(
                owner, reason, silent_since=owner.heartbeat_at + _EPSILON if by_heartbeat else None
            ):
                logger.warning("run %s marked killed: %s", owner.run_id, reason)
                killed.append(owner.run_id)
        self._marked_killed += killed
        return killed

    @property
    def marked_killed(self) -> tuple[str, ...]:
        """Ids of the runs this workspace marked killed since it opened (the open checks first)."""
        return tuple(self._marked_killed)

    def check_lost(self) -> None:
        """mark_lost() when a minute passed since the last check, so long-lived readers (the server,
        the dashboard) show runs whose process died; a failed check never fails the read."""
        if self._checked_at is not None and time.monotonic() - self._checked_at < _CHECK_EVERY_S:
            return
        if not self._checking.acquire(blocking=False):
            return  # another thread is checking right now
        try:
            self._mark_lost()
        except Exception:  # noqa: BLE001 - the read goes on; the next one checks again
            logger.warning("could not check for runs whose process is gone", exc_info=True)
        finally:
            self._checking.release()

    def close(self) -> None:
        """Stop the heartbeat of this workspace's live runs (Workspace.close())."""
        self._heartbeat.close()

    def _running(self, run_id: str) -> str:
        run = self.get(run_id)
        if run.status is not RunStatus.RUNNING:
            raise InvalidInputError(f"Run {run.id} has ended ({run.status.value}); start a new run to log more")
        return run.id

    # -- reads --------------------------------------------------------------------------------
    def get(self, run_id: str) -> Run:
        """A run by id (or a unique id prefix of at least 6 characters)."""
        return self._meta.runs.get(run_id)

    def list(self, *, experiment: str | None = None, limit: int = 100) -> list[Run]:
        """The newest runs first."""
        self.check_lost()
        return self._meta.runs.list(experiment=experiment, limit=limit)

    def search(
        self,
        filter: str | None = None,
        *,
        order_by: str | builtins.list[str] | None = None,
        limit: int = 100,
        experiment: str | None = None,
    ) -> builtins.list[Run]:
        """Runs matching `filter`, executed in SQL.

        >>> ws.runs.search("metrics.auc > 0.8 and params.max_depth = 6", order_by="metrics.auc desc")  # doctest: +SKIP
        """
        if limit < 1:
            raise InvalidInputError(f"limit must be >= 1, got {limit}")
        self.check_lost()
        return self._meta.runs.search(
            parse_filter(filter), order_by=parse_order_by(order_by), experiment=experiment, limit=limit
        )

    def search_hints(self, filter: str | None, *, experiment: str | None = None) -> builtins.list[str]:
        """Why `search(filter)` may find nothing: a sentence for each metric or param the filter
        names that no run (of `experiment`) has, with the nearest names that exist (a typo's fix).

        >>> ws.runs.search_hints("metrics.acuracy > 0.7")  # doctest: +SKIP
        ["No run has a metric 'acuracy'; did you mean 'accuracy'?"]
        """
        hints: list[str] = []
        nodes: list[Comparison | BoolOp] = [] if (where := parse_filter(filter)) is None else [where]
        known: dict[str, list[str]] = {}
        while nodes:
            node = nodes.pop(0)
            if isinstance(node, BoolOp):
                nodes.extend(node.terms)
                continue
            if node.kind not in ("metrics", "params"):
                continue
            if node.kind not in known:
                known[node.kind] = self._meta.runs.keys(node.kind, experiment=experiment)
            keys, what = known[node.kind], node.kind.removesuffix("s")
            if node.key in keys:
                continue
            close = difflib.get_close_matches(node.key, keys, n=3, cutoff=0.6)
            if close:
                advice = f"did you mean {' or '.join(repr(k) for k in close)}?"
            elif keys:
                advice = f"the {node.kind} logged are {', '.join(keys[:10])}{', ...' if len(keys) > 10 else ''}"
            else:
                advice = f"no run has logged any {what} yet"
            scope = f" of experiment {experiment!r}" if experiment is not None else ""
            hint = f"No run{scope} has a {what} {node.key!r}; {advice}"
            if hint not in hints:
                hints.append(hint)
        return hints

    def reading(self, dataset: str | DatasetVersion) -> builtins.list[Run]:
        """Every run that read this dataset version, newest first (lineage, walked backwards)."""
        return self._meta.runs.reading(self._dataset_id(self._datasets_get(dataset)))

    def metric_history(self, run_id: str, key: str | None = None) -> builtins.list[MetricPoint]:
        """Every logged point of one metric (or of all) in step order."""
        return self._meta.runs.metric_history(run_id, key)

    def experiments(self) -> builtins.list[tuple[str, int]]:
        """(experiment, number of runs) pairs."""
        return self._meta.runs.experiments()

    def artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of a run's artifact, verified against their SHA-256 (CorruptArtifactError if not)."""
        run = self.get(run_id)
        for a in run.artifacts:
            if a.path == path:
                return self._blobs.get_bytes(a.digest)
        known = ", ".join(a.path for a in run.artifacts) or "none"
        raise NotFoundError(f"Run {run.id} has no artifact {path!r}; its artifacts: {known}")
