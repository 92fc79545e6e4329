"""A change counter shared by every process of a workspace: how a server learns, before its next
request, that another process moved an alias or registered a version.

A server caches what aliases resolve to (one store query per request would cost more than the
prediction). The cache is stale once the registry changed anywhere; `value()` is read on every
request, so it must be a memory read, not a query:

- SQLite (one machine by nature): an 8-byte counter in a file beside the database
  (`keel.db-changes`), mapped into memory by every process. `bump()` increments it under an
  exclusive `flock` before the change's caller returns, so the next request of any process on the
  machine reads the new number: a move is served from the next request, everywhere.
- PostgreSQL (servers may be on several machines): `bump()` sends `NOTIFY keel_registry`; a daemon
  thread of each server `LISTEN`s and counts the notifications. One arrives within about a
  millisecond of the commit; if the listening connection drops, the counter is bumped on every
  reconnect (everything re-resolves), and the server's time-based re-read of aliases
  (`alias_cache_s`) bounds the staleness should a notification ever be missed.
- An in-memory SQLite database (tests): a counter of this process only.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, text

__all__ = ["ChangeFeed", "open_change_feed"]

logger = logging.getLogger(__name__)

CHANNEL = "keel_registry"
_COUNTER = struct.Struct("<Q")


class ChangeFeed(Protocol):
    def value(self) -> int:
        """A number that changed after every bump() made, by any process, before this call began."""
        ...

    def bump(self) -> None: ...

    def close(self) -> None: ...


def open_change_feed(engine: Engine) -> ChangeFeed:
    """The change feed that suits the store behind `engine`."""
    if engine.dialect.name == "postgresql":
        return NotifyFeed(engine)
    db = engine.url.database
    if engine.dialect.name == "sqlite" and db and db != ":memory:" and not db.startswith("file::memory:"):
        return FileFeed(Path(db).with_name(Path(db).name + "-changes"))
    return LocalFeed()


class LocalFeed:
    """This process only."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def value(self) -> int:
        return self._n

    def bump(self) -> None:
        with self._lock:
            self._n += 1

    def close(self) -> None:
        pass


class FileFeed:
    """A counter in a memory-mapped file: every process mapping it sees each increment at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(self._fd).st_size < _COUNTER.size:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:  # another process may have sized it meanwhile: only ever grow it
                    if os.fstat(self._fd).st_size < _COUNTER.size:
                        os.ftruncate(self._fd, _COUNTER.size)
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(self._fd, _COUNTER.size)
        except OSError:
            os.close(self._fd)
            raise
        self._lock = threading.Lock()

    def value(self) -> int:
        return int(_COUNTER.unpack_from(self._map, 0)[0])

    def bump(self) -> None:
        with self._lock:  # flock is per open file: threads of this process serialize here first
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                _COUNTER.pack_into(self._map, 0, (_COUNTER.unpack_from(self._map, 0)[0] + 1) % 2**64)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        try:
            self._map.close()
        finally:
            os.close(self._fd)


class NotifyFeed:
    """PostgreSQL LISTEN/NOTIFY; the listening thread starts on the first value() (a server reads
    it; a CLI command that only bumps never listens)."""

    def __init__(self, engine: Engine, *, reconnect_s: float = 1.0) -> None:
        self._engine = engine
        self._n = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reconnect_s = reconnect_s
        self.listening = threading.Event()  # set while a LISTEN connection is up (tests wait on it)

    def value(self) -> int:
        if self._thread is None:
            self._start()
        return self._n

    def bump(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(text(f"NOTIFY {CHANNEL}"))
            conn.commit()
        self._count()

    def _count(self) -> None:
        with self._lock:
            self._n += 1

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._listen, name="keel-change-feed", daemon=True)
            self._thread.start()
        self.listening.wait(timeout=5)  # the first read waits for the LISTEN, so no change slips between

    def _listen(self) -> None:
        import psycopg

        conninfo = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._count()  # whatever changed while no connection listened is re-read
                    self.listening.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self._count()
            except Exception as exc:  # a dropped connection: reconnect; callers fall back on alias_cache_s
                self.listening.clear()
                if not self._stop.is_set():
                    logger.warning("listening for registry changes failed (%s); reconnecting", exc)
                    self._stop.wait(self._reconnect_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def __repr__(self) -> str:
        return f"NotifyFeed(listening={self.listening.is_set()})"
