"""Is a running run still alive? Heartbeats of this process's runs, and the verdict on the others.

A run started by `ws.runs.start` is owned by its process: the run records the host, the pid and
a token that tells that process apart from any later one with the same pid (Linux: the boot id,
the pid namespace and the process start time from /proc). A process that reads the token of the
same boot and pid namespace can tell for sure whether the owner still runs; any other (another
host or container, or a system without /proc) relies on the heartbeat, which one daemon thread
per workspace refreshes every 30 seconds for all the live runs of its process, in one statement.

A run created over HTTP has no owner: every write to it over the API is its heartbeat.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

logger = logging.getLogger(__name__)

__all__ = ["ProcessIdentity", "this_process", "process_gone", "kill_reason", "Heartbeat"]

_PROC = "/proc"  # a module constant so tests can point it elsewhere


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    token: str | None  # '<boot id>/<pid namespace>/<start time in clock ticks>'; None without /proc


def this_process() -> ProcessIdentity:
    """This process's identity (computed once per process: a forked child gets its own)."""
    return _identity(os.getpid())


@functools.lru_cache(maxsize=4)
def _identity(pid: int) -> ProcessIdentity:
    scope, stat = _scope(), _stat(pid)
    token = None if scope is None or stat is None else f"{scope}/{stat[1]}"
    return ProcessIdentity(socket.gethostname()[:255], pid, token)


def _scope() -> str | None:
    """'<boot id>/<pid namespace>': where a pid means the same process. None off Linux."""
    try:
        with open(f"{_PROC}/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        namespace = os.readlink(f"{_PROC}/self/ns/pid")  # 'pid:[4026531836]'
    except OSError:
        return None
    return f"{boot}/{namespace}" if boot and namespace else None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of process `pid`, or None if there is none."""
    try:
        with open(f"{_PROC}/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may itself hold spaces or ')'.
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime) of proc_pid_stat(5)


def process_gone(pid: int | None, token: str | None, me: ProcessIdentity) -> bool | None:
    """True when the process (`pid`, `token`) has ended: no such pid, a zombie, or the pid now
    belongs to a process started later. False when it runs. None when this process cannot tell:
    another boot, host or pid namespace, or no /proc here or there."""
    if pid is None or token is None or me.token is None:
        return None
    scope, _, started = token.rpartition("/")
    if scope != me.token.rpartition("/")[0]:
        return None
    stat = _stat(pid)
    if stat is None:
        return True
    state, now_started = stat
    return state in ("Z", "X") or now_started != started


def kill_reason(
    *,
    host: str | None,
    pid: int | None,
    token: str | None,
    heartbeat_at: datetime,
    now: datetime,
    me: ProcessIdentity,
    timeout_s: float,
    remote_timeout_s: float,
) -> tuple[str, bool] | None:
    """Why a running run is dead, and whether that verdict rests on its heartbeat alone
    (so a heartbeat arriving meanwhile must cancel it); None while it may be alive."""
    silent_s = (now - heartbeat_at).total_seconds()
    if pid is None:  # driven over HTTP: its client's writes are its heartbeat
        if silent_s > remote_timeout_s:
            return f"no write over the API for {silent_s:.0f} s (run_remote_timeout_s={remote_timeout_s:g})", True
        return None
    gone = process_gone(pid, token, me)
    if gone is True:
        return f"its process {pid} on {host} is gone", False
    if gone is None and silent_s > timeout_s:
        return (
            f"no heartbeat from process {pid} on {host} for {silent_s:.0f} s (run_heartbeat_timeout_s={timeout_s:g})",
            True,
        )
    return None


class Heartbeat:
    """Refreshes the heartbeat of this process's live runs: one daemon thread, one statement.

    The thread starts with the first live run and stops at the first beat that finds none, so a
    script that starts and ends runs pays a set insert per run, not a thread. Being a daemon, it
    never keeps the interpreter alive. `beat(ids)` writes the heartbeat and returns the ids that
    are no longer running (marked killed by another process that took this one for dead).
    """

    interval_s = 30.0

    def __init__(self, beat: Callable[[list[str]], Iterable[str]]) -> None:
        self._beat = beat
        self._lock = threading.Lock()
        self._live: set[str] = set()
        self._thread: threading.Thread | None = None
        self._pid = 0  # the process that started the thread: a forked child starts its own
        self._stop = threading.Event()

    def add(self, run_id: str) -> None:
        with self._lock:
            self._live.add(run_id)
            if self._thread is None or self._pid != os.getpid():
                self._stop = threading.Event()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._stop,), name="keel-run-heartbeat", daemon=True
                )
                self._thread.start()

    def discard(self, run_id: str) -> None:
        with self._lock:
            self._live.discard(run_id)

    def close(self) -> None:
        """Stop beating (the runs stay running; another process may later find them dead)."""
        with self._lock:
            self._stop.set()
            self._thread = None

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            with self._lock:
                ids = sorted(self._live)
                if not ids:
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
            try:
                lost = set(self._beat(ids))
            except Exception:  # noqa: BLE001 - a store that is briefly unavailable: beat again next time
                logger.warning(
                    "could not write the heartbeat of %d running runs; retrying in %g s",
                    len(ids),
                    self.interval_s,
                    exc_info=True,
                )
                continue
            for run_id in lost:
                logger.warning(
                    "run %s is no longer running in the store (another process marked it killed after its heartbeat "
                    "stopped); points logged from here are still written, its status stays as it is",
                    run_id,
                )
                self.discard(run_id)
