"""One executor interface: `submit(fn, *args) -> concurrent.futures.Future`, `shutdown()`.

`LocalExecutor` runs jobs in background threads of this process. `RayExecutor` runs each job as
a Ray task (`fn` and its arguments are pickled to the Ray worker, which imports keel from the same
environment), on the cluster at `address` or on a local Ray instance it starts pinned to loopback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from keel._optional import require
from keel.settings import Settings

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor"]


class Executor(Protocol):
    name: str

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]: ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keel-job")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str = "", *, num_cpus: int | None = None) -> None:
        ray = require("ray", extra="ray")
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # a local instance on loopback only (RECIPES.md)
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        self._ray = ray

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        task = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        future: Future[Any] = task.remote(*args).future()  # Ray's ObjectRef as a concurrent.futures.Future
        return future

    def shutdown(self) -> None:
        """Leave the Ray instance running: other workspaces of this process may use it."""


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "ray":
        return RayExecutor(settings.ray_address)
    return LocalExecutor(settings.executor_workers)
