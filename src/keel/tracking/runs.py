"""Runs: start one, log params, metric series, tags, inputs and artifacts; find runs again."""

from __future__ import annotations

import atexit
import difflib
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from keel.entities import BoolOp, Comparison, DatasetVersion, MetricPoint, Run, RunStatus
from keel.errors import InvalidInputError, NotFoundError
from keel.refs import check_name
from keel.tracking._liveness import Heartbeat, kill_reason, this_process
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


def _git_commit(cwd: Path | None) -> str | None:
    """HEAD's commit (with '-dirty' when tracked files changed), or None outside a repository.

    `cwd=None` means the working directory (which may have been deleted: then None too).
    One `git status` process: its porcelain v2 header names the commit, its entries the changes.
    GIT_OPTIONAL_LOCKS=0 keeps it from rewriting the index as it goes (which would also move the
    stamp _CodeVersions keys on).
    """
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=False, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit, dirty = None, False
    for line in out.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.removeprefix("# branch.oid ").strip()
        elif line and not line.startswith("#"):
            dirty = True
    if commit is None or not all(c in "0123456789abcdef" for c in commit):  # '(initial)': no commit yet
        return None
    return commit + ("-dirty" if dirty else "")


def _git_dir(folder: Path) -> Path | None:
    """The .git folder of the repository holding `folder` (following a worktree's .git file), or None."""
    for d in (folder, *folder.parents):
        dot = d / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():
            try:
                text = dot.read_text(encoding="utf-8").strip()
            except OSError:
                return None
            if text.startswith("gitdir:"):
                target = Path(text.removeprefix("gitdir:").strip())
                return target if target.is_absolute() else (d / target).resolve()
            return None
    return None


def _stamp(path: Path | str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _git_lines(folder: Path, *args: str) -> list[str] | None:
    try:
        out = subprocess.run(["git", *args], cwd=folder, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "surrogateescape").split("\0" if "-z" in args else "\n") if out.returncode == 0 else None


class _Checked:
    __slots__ = ("repo", "files", "stamps", "value", "at")

    def __init__(self, repo: tuple[Any, ...], files: list[str] | None, stamps: list[Any], value: str | None, at: float) -> None:
        self.repo, self.files, self.stamps, self.value, self.at = repo, files, stamps, value, at


class _CodeVersions:
    """The code version per folder, asking git only when the answer may have changed.

    Asking git costs a process (milliseconds), and a script that starts a run per trial would
    pay it on every run. The answer is kept with what it depends on, the way git's own index
    does: the stat stamps of HEAD, the ref it names, packed-refs and the index (a commit,
    checkout, reset or `git add` moves one of them), checked on every run, and of every tracked
    file (an edit moves its mtime or size), checked when `rescan_s` passed since the last check:
    a few microseconds per file add up when a script starts hundreds of runs a second, so an
    edit left unstaged shows as '-dirty' from the runs started a second later. Tracked files
    are listed again only when the index changes. Repositories of more than `max_files`
    tracked files are asked every time, where git's own machinery is the faster check.
    """

    max_files = 5000
    rescan_s = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, _Checked] = {}

    def get(self, cwd: Path | None) -> str | None:
        try:
            folder = (Path.cwd() if cwd is None else cwd).resolve()
        except OSError:  # the working directory was deleted
            return None
        if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:
            return _git_commit(folder)  # git is told where the repository is: ask it every time
        gitdir = _git_dir(folder)
        if gitdir is None:
            return None
        repo = self._repo_stamps(gitdir)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(folder)
        if hit is None or hit.repo != repo:  # new, or HEAD, a ref or the index moved: list tracked files again
            files = self._tracked(folder)
            stamps = [_stamp(f) for f in files] if files is not None else []
        elif hit.files is None:  # too many tracked files to watch: git decides every time
            files, stamps = None, []
        elif now - hit.at < self.rescan_s:
            return hit.value
        else:
            files, stamps = hit.files, [_stamp(f) for f in hit.files]
            if stamps == hit.stamps:
                hit.at = now
                return hit.value
        value = _git_commit(folder)
        with self._lock:
            self._cache[folder] = _Checked(repo, files, stamps, value, now)
        return value

    def _tracked(self, folder: Path) -> list[str] | None:
        """Absolute paths of the repository's tracked files, or None when there are too many."""
        top = _git_lines(folder, "rev-parse", "--show-toplevel")
        names = _git_lines(folder, "ls-files", "-z", "--full-name", ":/")
        if not top or names is None:
            return None
        names = [n for n in names if n]
        if len(names) > self.max_files:
            return None
        root = top[0].strip()
        return [os.path.join(root, n) for n in names]

    @staticmethod
    def _repo_stamps(gitdir: Path) -> tuple[Any, ...]:
        head = gitdir / "HEAD"
        try:
            ref = head.read_text(encoding="utf-8").strip()
        except OSError:
            ref = ""
        common = gitdir
        try:  # a linked worktree keeps its refs in the main repository's folder
            common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
        except OSError:
            pass
        stamps: list[Any] = [str(gitdir), ref, _stamp(head), _stamp(gitdir / "index"), _stamp(common / "packed-refs")]
        if ref.startswith("ref:"):
            name = ref.removeprefix("ref:").strip()
            stamps += [_stamp(gitdir / name), _stamp(common / name)]
        return tuple(stamps)


_code_versions = _CodeVersions()


def _param_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


# Column widths of the metadata store: checked here so SQLite (which ignores them) and
# PostgreSQL (which enforces them) refuse the same input, with a message that says why.
_KEY_CHARS = 250
_NAME_CHARS = 256
_ARTIFACT_PATH_CHARS = 512


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > _KEY_CHARS:
        raise InvalidInputError(f"A {what} key must be a non-empty string of at most {_KEY_CHARS} characters, got {key!r}")
    return key


def _artifact_name(name: Any) -> str:
    inside = isinstance(name, str) and not name.startswith(("/", "\\")) and ".." not in Path(name).parts
    if not inside or not 1 <= len(name) <= _ARTIFACT_PATH_CHARS:
        raise InvalidInputError(
            f"Artifact name {name!r} must be a relative path inside the run (no '..'), "
            f"1 to {_ARTIFACT_PATH_CHARS} characters"
        )
    return name


def _params_text(params: Mapping[str, Any]) -> dict[str, str]:
    return {_check_key(k, "param"): _param_text(v) for k, v in params.items()}


def _tags_text(tags: Mapping[str, Any]) -> dict[str, str]:
    return {_check_key(k, "tag"): str(v) for k, v in tags.items()}


def _metric_value(key: Any, value: Any) -> float:
    _check_key(key, "metric")
    return _finite(value, f"Metric {key!r}", "a number")


def _finite(value: Any, what: str, kind: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be {kind}, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{what} must be finite, got {number}")
    return number


# Steps are stored as 64-bit integers, and the series' next step (step + 1) must fit too.
_STEP_MIN, _STEP_MAX = -(2**63), 2**63 - 2


def _step(key: Any, step: Any) -> int:
    if not _is_integer(step):
        raise InvalidInputError(f"The step of metric {key!r} must be an integer, got {step!r}")
    at = int(step)
    if not _STEP_MIN <= at <= _STEP_MAX:
        raise InvalidInputError(f"The step of metric {key!r} must be between {_STEP_MIN} and {_STEP_MAX}, got {at}")
    return at


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return int(value) == value
    except (TypeError, ValueError, OverflowError):
        return False


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
        self._runs._meta.runs.log_params(self.id, _params_text(params))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags; unlike params, a tag can be set again to a new value."""
        self._check_open()
        self._runs._meta.runs.set_tags(self.id, _tags_text(tags))

    def log_metric(self, key: str, value: float, *, step: int | None = None, timestamp: float | None = None) -> None:
        """Buffer one point of the series `key`; `step` defaults to the series' next step.

        Points are written in batches (settings.metric_buffer_points), at end() and at exit.
        NaN and infinities are refused with InvalidInputError.
        """
        if self._ended or self._detached:
            self._check_open()
        # The training loop's hot path: a finite float for a key this run already checked.
        fast = type(value) is float and math.isfinite(value) and key in self._next_step
        number = value if fast else _metric_value(key, value)
        if step is not None and not (type(step) is int and 0 <= step < 1 << 62):  # the usual step: no further checks
            step = _step(key, step)
        ts = _now_ts() if timestamp is None else _timestamp(timestamp, key)
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
        name = _artifact_name(path.name if name is None else name)
        digest, size = self._runs._blobs.put_file(path)
        self._runs._meta.runs.add_artifact(self.id, name, digest, size)
        return digest

    def log_bytes(self, data: bytes, name: str) -> str:
        """Store `data` with the run under `name`; return its digest. Read it back with ws.runs.artifact()."""
        self._check_open()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"log_bytes takes bytes, got {type(data).__name__}; encode text first")
        data = bytes(data)
        _artifact_name(name)
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
        status = _run_status(status)
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


_CHECK_EVERY_S = 60.0  # list()/search() look for runs whose process died at most this often
_EPSILON = timedelta(microseconds=1)  # "no newer heartbeat than the one read" as a strict comparison


def _run_status(value: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(value)
    except ValueError:
        raise InvalidInputError(f"Unknown run status {value!r}; known: {', '.join(s.value for s in RunStatus)}") from None


def _now_ts() -> float:
    return time.time()


# Metric timestamps are seconds since the epoch: from 1970-01-01 to the end of 9999-12-31, the
# range a datetime can show. Outside it a value is a mistake (often milliseconds), not a time.
_MIN_TIMESTAMP = 0.0
_MAX_TIMESTAMP = 253402300800.0  # 10000-01-01T00:00:00Z, excluded


def _timestamp(value: Any, key: Any = None) -> float:
    what = "A metric timestamp" if key is None else f"The timestamp of metric {key!r}"
    ts = _finite(value, what, "seconds since the epoch")
    if not _MIN_TIMESTAMP <= ts < _MAX_TIMESTAMP:
        hint = "; it looks like milliseconds: divide by 1000" if _MIN_TIMESTAMP <= ts / 1000 < _MAX_TIMESTAMP else ""
        raise InvalidInputError(
            f"{what} must be seconds since the epoch between 0 (1970-01-01) and {_MAX_TIMESTAMP:.0f} "
            f"(10000-01-01, excluded), got {value!r}{hint}"
        )
    return ts


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
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > _NAME_CHARS):
            raise InvalidInputError(f"A run name must be a non-empty string of at most {_NAME_CHARS} characters, got {name!r}")
        # Checked before the run exists, so bad input leaves no half-made run behind.
        param_text = _params_text(params or {})
        tag_text = _tags_text(tags or {})
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
            code_version=_code_versions.get(None if code_dir is None else Path(code_dir)),
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
        self._meta.runs.log_params(self._running(run_id), _params_text(params), touch_at=datetime.now(UTC))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags of a run (also of an ended one: tags are annotations)."""
        self._meta.runs.set_tags(self._meta.runs.resolve_id(run_id), _tags_text(tags), touch_at=datetime.now(UTC))

    def log_metric_points(
        self, run_id: str, points: Iterable[tuple[str, float, int | None, float | None]]
    ) -> int:
        """Write (key, value, step, timestamp) points of a running run in one transaction; return how many.

        A step of None continues the series after its highest stored step; a timestamp of None is now.
        Like every write by run id, it is the run's heartbeat (see ActiveRun.detach).
        """
        full = self._running(run_id)
        given: list[tuple[str, float, int | None, float]] = []
        for key, value, step, timestamp in points:
            number = _metric_value(key, value)
            given.append((key, number, None if step is None else _step(key, step), _now_ts() if timestamp is None else _timestamp(timestamp, key)))
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
        status = _run_status(status)
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
                host=owner.host, pid=owner.pid, token=owner.token, heartbeat_at=owner.heartbeat_at, now=now, me=me,
                timeout_s=self._heartbeat_timeout_s, remote_timeout_s=self._remote_timeout_s,
            )  # fmt: skip
            if verdict is None:
                continue
            reason, by_heartbeat = verdict
            # A verdict from the heartbeat holds only if no beat came since it was read.
            if self._meta.runs.mark_killed(owner, reason, silent_since=owner.heartbeat_at + _EPSILON if by_heartbeat else None):
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
        order_by: str | list[str] | None = None,
        limit: int = 100,
        experiment: str | None = None,
    ) -> list[Run]:
        """Runs matching `filter`, executed in SQL.

        >>> ws.runs.search("metrics.auc > 0.8 and params.max_depth = 6", order_by="metrics.auc desc")  # doctest: +SKIP
        """
        if limit < 1:
            raise InvalidInputError(f"limit must be >= 1, got {limit}")
        self.check_lost()
        return self._meta.runs.search(
            parse_filter(filter), order_by=parse_order_by(order_by), experiment=experiment, limit=limit
        )

    def search_hints(self, filter: str | None, *, experiment: str | None = None) -> list[str]:
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

    def reading(self, dataset: str | DatasetVersion) -> list[Run]:
        """Every run that read this dataset version, newest first (lineage, walked backwards)."""
        return self._meta.runs.reading(self._dataset_id(self._datasets_get(dataset)))

    def metric_history(self, run_id: str, key: str | None = None) -> list[MetricPoint]:
        """Every logged point of one metric (or of all) in step order."""
        return self._meta.runs.metric_history(run_id, key)

    def experiments(self) -> list[tuple[str, int]]:
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
