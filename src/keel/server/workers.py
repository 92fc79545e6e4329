"""`keel serve --workers N`: N serving processes on one listening socket, sharing the store.

The parent binds the socket (so a busy port fails once, before anything starts), then starts N
worker processes (spawned: each imports keel afresh, with no state copied from the parent) that
each open the workspace from the same settings and serve the shared socket; the kernel spreads
connections among them. What must agree across them goes through the store:

- aliases: a move made anywhere bumps the store's change counter (keel.storage.changes), which
  every worker reads before each request: the move is served from the next request;
- predictions: each worker writes its own write-ahead file and segments (ids are random, so
  never shared): one log, without loss or duplication;
- scheduled monitors, retraining and the prediction log's compaction run under leases in the
  store (keel.storage.leases): once, not once per worker; queued jobs are claimed atomically.

The parent announces the address once every worker is warm (keel.server.warmup), restarts a
worker that dies, and on SIGTERM or Ctrl-C stops them all, each finishing its requests and
writing its buffered predictions.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.server.run import ServeOptions
    from keel.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["supervise"]

STOP_TIMEOUT_S = 30.0  # how long a worker gets to finish its requests and write its predictions
RESTART_PAUSE_S = 1.0  # between restarts of a worker that keeps dying


def supervise(settings: Settings, sock: Any, options: ServeOptions, *, workers: int, on_ready: Any = None) -> None:
    """Run `workers` serving processes until SIGTERM or Ctrl-C; restart any that dies meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    all_warm = ctx.Event()  # set once every worker is warm: until then no worker's /readyz says ready
    stopping = threading.Event()
    procs: dict[int, Any] = {}

    def start(index: int) -> None:
        proc = ctx.Process(
            target=_worker,
            args=(settings, sock, options, index, ready, all_warm),
            name=f"keel-serve-{index}",
            daemon=False,
        )
        proc.start()
        procs[index] = proc

    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(workers):
            start(i)
        _wait_ready(ready, workers, procs, stopping)
        all_warm.set()
        if on_ready is not None and not stopping.is_set():
            on_ready(options.host, options.port)
        while not stopping.wait(0.5):
            for index, proc in list(procs.items()):
                if not proc.is_alive():
                    logger.error("serving worker %d exited with %s; starting it again", index, proc.exitcode)
                    time.sleep(RESTART_PAUSE_S)
                    if not stopping.is_set():
                        start(index)
    finally:
        _stop(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_ready(ready: Any, workers: int, procs: dict[int, Any], stopping: threading.Event) -> None:
    """Until every worker said it is warm (or one died, or we are asked to stop)."""
    import queue

    warm: set[int] = set()
    while len(warm) < workers and not stopping.is_set():
        try:
            warm.add(ready.get(timeout=0.5))
        except queue.Empty:
            dead = [i for i, p in procs.items() if not p.is_alive() and i not in warm]
            if dead:
                logger.error("serving worker(s) %s exited before they were ready", dead)
                return


def _stop(procs: dict[int, Any]) -> None:
    for proc in procs.values():
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)  # each stops gracefully: requests finished, predictions written
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs.values():
        proc.join(max(deadline - time.monotonic(), 0.1))
        if proc.is_alive():
            logger.error("serving worker %s did not stop in %.0f s; killing it", proc.name, STOP_TIMEOUT_S)
            proc.kill()
            proc.join()


def _worker(settings: Settings, sock: Any, options: ServeOptions, index: int, ready: Any, all_warm: Any) -> None:
    """One serving process: its own workspace on the shared settings, the shared socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    from keel.server.observability import configure_logging
    from keel.server.run import run_app
    from keel.workspace import Workspace

    configure_logging(options.log_level, options.log_format)
    ws = Workspace(settings)
    try:
        run_app(ws, sock, options, on_ready=lambda: ready.put(index), all_warm=all_warm.is_set)
    finally:
        ws.close()
