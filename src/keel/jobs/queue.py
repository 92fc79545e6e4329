"""`ws.jobs`: the queue in the store, and dispatch to the executor.

`enqueue` writes a job (or returns the active one with the same `dedup_key`). `dispatch` first
queues again the running jobs whose heartbeat stopped, claims as many queued jobs as the executor
has free slots, and submits each as `runner(factory, job_id)`: the runner (the Workspace gives
keel.workspace.handlers.run_job, with the kinds it knows) opens its own Workspace from `factory`
(a picklable `partial(Workspace, settings)`, so it works in a Ray worker process too), runs the
handler and records the result. This package knows no job kind: what a kind does is composition. While a job runs, the dispatching process
heartbeats it; a job that finished is never run again, one whose worker died runs again (up to
`max_attempts`).
"""

from __future__ import annotations

import builtins
import logging
import os
import socket
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from keel.entities import Job
from keel.errors import InvalidInputError

if TYPE_CHECKING:
    from keel.jobs.executors import Executor
    from keel.storage import MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["Jobs", "Runner", "STALE_AFTER_S"]

STALE_AFTER_S = 120.0  # a running job unheard of for this long lost its worker

Runner = Callable[[Callable[[], Any], int], Any]  # (factory, job id): runs the job where the executor puts it


class Jobs:
    def __init__(
        self,
        meta: MetadataStore,
        *,
        author: str,
        factory: Callable[[], Any],
        kinds: Collection[str],
        runner: Runner,
        executor_factory: Callable[[], Executor],
        on_lost: Callable[[Job], None] | None = None,
    ) -> None:
        self._store = meta.jobs
        self._kinds = frozenset(kinds)  # the job kinds `runner` knows how to run
        self._runner = runner
        self._on_lost = on_lost  # told of each job that failed because its worker died on the last attempt
        self._author = author
        self._factory = factory
        self._executor_factory = executor_factory
        self._executor: Executor | None = None
        self._running: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def factory(self) -> Callable[[], Any]:
        """Opens this workspace anew (picklable: jobs and Ray tasks call it in their own process)."""
        return self._factory

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = self._executor_factory()
        return self._executor

    def enqueue(
        self, kind: str, payload: dict[str, Any], *, dedup_key: str | None = None, max_attempts: int = 2
    ) -> tuple[Job, bool]:
        """Queue a job; returns (job, created). With `dedup_key`, an active job of that key wins."""
        if kind not in self._kinds:
            raise InvalidInputError(f"Unknown job kind {kind!r}; known: {', '.join(sorted(self._kinds))}")
        return self._store.enqueue(kind, payload, author=self._author, dedup_key=dedup_key, max_attempts=max_attempts)

    def start(self, kind: str, payload: dict[str, Any], *, dedup_key: str | None = None) -> tuple[Job, bool]:
        """Queue a job and start it on the executor here now, without waiting; returns (job,
        created). With `dedup_key`, the active job of that key is returned instead (and started
        here if it is still queued)."""
        job, created = self.enqueue(kind, payload, dedup_key=dedup_key)
        with self._lock:
            for j in self._store.claim(self.worker, limit=1, ids=(job.id,)):
                self._running[j.id] = self.executor.submit(self._runner, self._factory, j.id)
                job = j
        return job, created

    def run(self, kind: str, payload: dict[str, Any], *, timeout: float | None = None) -> Job:
        """Queue a job, start it on the executor here and wait for it: the job path, synchronously."""
        job, _ = self.start(kind, payload)
        with self._lock:
            future = self._running.get(job.id)
        if future is not None:
            try:
                future.result(timeout=timeout)
            except Exception:  # recorded by the runner
                pass
        return self._store.get(job.id)

    def run_or_queue(
        self, kind: str, payload: dict[str, Any], *, background: bool, dedup_key: str | None = None
    ) -> tuple[Job, bool]:
        """Queue a job for `keel worker` / `keel serve` (`background`), or run it here on the
        configured executor and wait for it; returns (job, created). `dedup_key` applies to the
        queued path: an active job of that key is returned instead of a new one."""
        if background:
            return self.enqueue(kind, payload, dedup_key=dedup_key)
        return self.run(kind, payload), True

    def get(self, job_id: int) -> Job:
        return self._store.get(job_id)

    def finish(self, job_id: int, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Record how a job ended (the runner calls it, in whatever process ran the job)."""
        self._store.finish(job_id, result=result, error=error)

    def progress(self, job_id: int, done: int, total: int, stage: str = "") -> None:
        """Record that a running job has done `done` of `total` steps (of `stage`); shown with the job."""
        self._store.progress(job_id, {"done": int(done), "total": int(total), "stage": stage})

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 100) -> list[Job]:
        return self._store.list(status=status, kind=kind, limit=limit)

    def dispatch(self, *, slots: int = 2) -> builtins.list[int]:  # `list` is a method of this class
        """Recover stale jobs, heartbeat ours, and start queued jobs up to `slots` running here."""
        with self._lock:
            for job_id in [i for i, f in self._running.items() if f.done()]:
                self._running.pop(job_id)
            self._store.heartbeat(list(self._running))
            recovered, lost = self._store.requeue_stale(STALE_AFTER_S)
            if recovered:
                logger.warning("jobs %s lost their worker and were queued again", recovered)
            for job_id in lost:
                logger.error("job %d lost its worker on its last attempt and failed", job_id)
                if self._on_lost is not None:
                    try:
                        self._on_lost(self._store.get(job_id))
                    except Exception:  # reporting a lost job must not stop the queue
                        logger.exception("reporting lost job %d failed", job_id)
            free = max(slots - len(self._running), 0)
            started = []
            for job in self._store.claim(self.worker, limit=free) if free else []:
                self._running[job.id] = self.executor.submit(self._runner, self._factory, job.id)
                started.append(job.id)
                logger.info("job %d (%s) started on %s", job.id, job.kind, self.executor.name)
            return started

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the jobs this process started (their failures are already recorded)."""
        with self._lock:
            futures = list(self._running.values())
        for f in futures:
            try:
                f.result(timeout=timeout)
            except Exception:  # recorded by the runner
                pass

    def close(self) -> None:
        self.wait()
        if self._executor is not None:
            self._executor.shutdown()
