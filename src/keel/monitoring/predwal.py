"""The prediction log's write-ahead files: what makes an answered prediction survive a crash.

A server appends every answered request to a file under `<home>/predlog/` before it returns the
request's prediction ids: once the append (a write system call) returned, the rows survive a crash
of the process. A syncer thread `fdatasync`s the file at most every `sync_ms` (group commit: one
sync covers every append made before it started), so an OS crash or power loss loses at most the
last `sync_ms` of answers; with `KEEL_PREDLOG_WAL=sync` each answer also waits for its sync. The
prediction log's writer later writes the rows as segments; a file whose rows are all written is
deleted. After a crash the rows still in files are replayed into the log by the next logger
created on that home (`PredictionLog.logger()`), once: ids already in the log are skipped.

Files, per process (a "owner" token: pid and random hex):

    <owner>.lock        held with fcntl.flock for the owner's life; created locked (a temporary
                        name, flock, then a hard link), so a lock file that can be locked belongs
                        to a dead owner. Replay takes that lock first: two starting servers never
                        replay the same files, and no server replays a live one's.
    <owner>-<n>.wal     "KEELWAL1" then records; n grows with each rotation (one per flush). The
                        syncer creates the next file ahead of time, so that neither a creation nor
                        (in the writer) a removal ever holds the lock an append takes.

A record: 4-byte little-endian length, 4-byte CRC-32 of the payload, the payload (bytes the
prediction log encodes). A record whose length runs past the end of the file or whose checksum
fails ends the file: a torn last write after a crash is ignored, never replayed half.

This module deals in bytes only; the prediction log encodes and decodes its rows.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["PredictionWal", "Orphan", "orphans", "read_records"]

MAGIC = b"KEELWAL1"
_HEAD = struct.Struct("<II")  # payload length, CRC-32 of the payload
_MAX_RECORD = 1 << 30  # a length past this is garbage (a torn header), not a record
_DATA = re.compile(r"^(?P<owner>[0-9]+-[0-9a-f]{12})-(?P<n>[0-9]{6})\.wal$")
_LOCK = re.compile(r"^(?P<owner>[0-9]+-[0-9a-f]{12})\.lock$")
_STALE_NEW_S = 60.0  # a "<owner>.lock.new" this old was left by a crash between create and link


def frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path) -> tuple[list[bytes], int]:
    """The intact records of a write-ahead file, and how many bytes after them were ignored
    (a torn or corrupt tail)."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return [], len(data)
    out: list[bytes] = []
    pos = len(MAGIC)
    while pos + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if length > _MAX_RECORD or end > len(data):
            break
        payload = data[pos + _HEAD.size : end]
        if zlib.crc32(payload) != crc:
            break
        out.append(payload)
        pos = end
    return out, len(data) - pos


def _locked_file(path: Path) -> int | None:
    """Create `path` already flock-ed (temporary name, lock, hard link); None if it exists."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.link(tmp, path)  # fails if it exists: creation and locking are one step for everyone else
    except (FileExistsError, BlockingIOError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return fd


def _try_lock(path: Path) -> int | None:
    """An fd holding the flock of the existing lock file `path`; None when a live owner holds it
    (or the file went away meanwhile)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink == 0:  # another replayer finished with it and removed it
            raise BlockingIOError
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass(frozen=True)
class Orphan:
    """The write-ahead files of a dead owner, locked by the caller until `done()`."""

    owner: str
    files: tuple[Path, ...]
    lock_path: Path
    lock_fd: int

    def done(self, *, keep: tuple[Path, ...] = ()) -> None:
        """Remove the replayed files (all but `keep`) and the owner's lock, then release it."""
        for f in self.files:
            if f not in keep:
                f.unlink(missing_ok=True)
        if not keep:
            self.lock_path.unlink(missing_ok=True)
        os.close(self.lock_fd)


def orphans(directory: Path) -> Iterator[Orphan]:
    """The write-ahead files of owners no process holds, one owner at a time, each locked while
    the caller replays it (call `done()`; a file it cannot replay stays for the next start)."""
    if not directory.is_dir():
        return
    names = sorted(p.name for p in directory.iterdir())
    data: dict[str, list[Path]] = {}
    for name in names:
        m = _DATA.match(name)
        if m:
            data.setdefault(m["owner"], []).append(directory / name)
        elif name.endswith(".lock.new"):
            path = directory / name
            try:
                stale = time.time() - path.stat().st_mtime > _STALE_NEW_S
            except FileNotFoundError:
                continue
            fd = _try_lock(path) if stale else None
            if fd is not None:
                path.unlink(missing_ok=True)
                os.close(fd)
    locks = {m["owner"] for name in names if (m := _LOCK.match(name))}
    for owner in sorted(locks | set(data)):
        lock_path = directory / f"{owner}.lock"
        fd = _try_lock(lock_path) if owner in locks else _locked_file(lock_path)
        if fd is None:
            continue  # a live process owns it, or another replayer got there first
        files = tuple(sorted(p for p in directory.glob(f"{owner}-*.wal") if _DATA.match(p.name)))
        yield Orphan(owner, files, lock_path, fd)


class PredictionWal:
    """This process's write-ahead files: appends, group-committed syncs, rotation, removal.

    `append()` writes one record (a system call; no sync: enough to survive a crash of this process)
    and returns a ticket; `wait(ticket)`
    (or `await wait_async(ticket)`) returns once an `fdatasync` covered it. A syncer thread does
    the syncs, each covering every append made before it starts (group commit). A lone request
    is synced at once; while requests arrive together (the last sync covered several), syncs are
    at most every `sync_ms` ms, so that one covers all the appends of the interval. `paced`: nobody
    waits, so syncs are always at most every `sync_ms` ms (a power loss loses at most that much),
    and the syncer sleeps between them rather than being woken by each append.
    """

    def __init__(self, directory: Path, *, sync_ms: float = 5.0, paced: bool = False) -> None:
        if not sync_ms >= 0:
            raise ValueError(f"sync_ms must be >= 0, got {sync_ms}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sync_s = sync_ms / 1000
        self.paced = paced  # syncs always at most every sync_ms (nobody waits for them), not only under load
        self.owner = f"{os.getpid()}-{os.urandom(6).hex()}"
        self.lock_path = self.directory / f"{self.owner}.lock"
        fd = _locked_file(self.lock_path)
        if fd is None:  # pragma: no cover - 48 random bits collided
            raise FileExistsError(f"{self.lock_path} exists")
        self._lock_fd: int | None = fd
        self._lock = threading.Lock()  # appends and rotation
        # Rotation and the making of the next file: a file is created (a journaled directory change,
        # milliseconds on a busy disk) by the syncer ahead of time, under this lock but not under
        # self._lock, so that an append never waits for a file creation.
        self._rotating = threading.Lock()
        self._spare: tuple[int, int] | None = None  # (file id, fd): the next file, made ahead
        self._want_spare = True
        self._idle = False  # the syncer waits on self._cond (an append must wake it)
        self._cond = threading.Condition(threading.Lock())  # sync state
        self._file = -1
        self._fd = -1
        self._records = 0  # in the current file
        self._open(0)
        self._written = 0  # bytes appended in this process's life, over all files: the tickets
        self._synced = 0
        self._appends = 0
        self._covered_to = 0  # appends covered by the syncs so far
        self._last_covered = 0  # appends the last sync covered: more than one means requests arrive together
        self._unsynced: list[int] = []  # fds of rotated files waiting for their last sync, then close
        self._need_dir_sync = True
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._error: OSError | None = None  # the last sync's failure, reported to its waiters
        self._closing = False
        self._last_sync = -float("inf")
        self.syncs = 0
        self._syncer = threading.Thread(target=self._run, name="keel-predlog-wal", daemon=True)
        self._syncer.start()

    # -- files ---------------------------------------------------------------------------------
    def path(self, file_id: int) -> Path:
        return self.directory / f"{self.owner}-{file_id:06d}.wal"

    def _open(self, file_id: int) -> None:
        self._file, self._fd, self._records = file_id, self._create(file_id), 0

    def _create(self, file_id: int) -> int:
        fd = os.open(self.path(file_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        try:
            os.write(fd, MAGIC)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _make_spare(self) -> None:
        """Create the file the next rotation starts (on the syncer thread, off the appends' lock)."""
        with self._rotating:
            with self._lock, self._cond:
                self._want_spare = False
                if self._spare is not None or self._fd < 0:
                    return
                file_id = self._file + 1
            try:
                fd = self._create(file_id)
            except OSError as exc:  # rotate() creates it itself then
                logger.warning(
                    "prediction log: creating the next write-ahead file %s failed: %s", self.path(file_id), exc
                )
                return
            with self._lock:
                self._spare = (file_id, fd)

    @property
    def current(self) -> int:
        return self._file

    def append(self, payload: bytes) -> tuple[int, int, int]:
        """Write one record; return (file id, its index in the file, ticket for `wait`)."""
        data = frame(payload)
        with self._lock:
            os.write(self._fd, data)  # O_APPEND, one call: a crash leaves it whole or torn, never interleaved
            seq = self._records
            self._records += 1
            with self._cond:
                self._written += len(data)
                self._appends += 1
                ticket = self._written
                if self._idle:  # else the syncer is busy or asleep and looks at _written when it is due
                    self._cond.notify()
            return self._file, seq, ticket

    def rotate(self) -> int:
        """Start a new file (when the current one holds records); return the id of the new current file."""
        with self._rotating, self._lock:
            if self._records:
                old = self._fd
                spare, self._spare = self._spare, None
                if spare is not None and spare[0] == self._file + 1:
                    self._file, self._fd, self._records = spare[0], spare[1], 0
                else:  # pragma: no cover - the syncer had no spare ready (its creation failed)
                    self._open(self._file + 1)
                with self._cond:
                    self._unsynced.append(old)  # the syncer syncs and closes it
                    self._need_dir_sync = True  # the new file's name: synced with the next records
                    self._want_spare = True
                    self._cond.notify()
            return self._file

    def records(self, file_id: int) -> list[bytes]:
        """The records of one of this process's files (a rotated one: the current may be growing)."""
        return read_records(self.path(file_id))[0]

    def remove(self, file_id: int) -> None:
        """Delete a file whose rows are all in the log (never the current one)."""
        if file_id != self._file:
            self.path(file_id).unlink(missing_ok=True)

    # -- syncs ---------------------------------------------------------------------------------
    def wait(self, ticket: int, timeout: float | None = 30.0) -> None:
        """Block until an fdatasync covered `ticket`; raise OSError if that sync failed."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._synced >= ticket or self._error is not None or self._closing, timeout
            ):
                raise TimeoutError(f"the prediction log's write-ahead file was not synced within {timeout} s")
            if self._synced < ticket and self._error is not None:
                raise self._error

    async def wait_async(self, ticket: int) -> None:
        """`wait()` for the event loop: the syncer thread resolves the future after its sync."""
        with self._cond:
            if self._synced >= ticket or self._closing:
                return
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((ticket, loop, fut))
        await fut

    def _run(self) -> None:
        while True:
            pause = self._last_sync + self.sync_s - time.monotonic()
            if self.paced and pause > 0 and not self._closing:
                # Asleep until the next sync is due, rather than waiting on the condition: the
                # appends of the interval then never wake this thread, whose every wake-up takes
                # the GIL from the thread serving requests.
                time.sleep(pause)
            with self._cond:
                self._idle = True
                self._cond.wait_for(
                    lambda: self._written > self._synced or self._unsynced or self._closing or self._want_spare
                )
                self._idle = False
                if self._closing and self._written == self._synced and not self._unsynced:
                    return
                make_spare = self._want_spare and not self._closing
            if make_spare:
                self._make_spare()
                continue
            delay = self._last_sync + self.sync_s - time.monotonic()
            if delay > 0 and (self.paced or self._last_covered > 1):  # the appends of the interval share a sync
                time.sleep(delay)
            with self._lock, self._cond:  # the fds to sync cannot change under us
                target = self._written
                self._last_covered, self._covered_to = self._appends - self._covered_to, self._appends
                rotated, self._unsynced = self._unsynced, []
                fd = self._fd
                dir_sync, self._need_dir_sync = self._need_dir_sync, False
            self._last_sync = time.monotonic()
            error: OSError | None = None
            try:
                for old in rotated:
                    os.fdatasync(old)
                os.fdatasync(fd)
                if dir_sync:  # a new file's name, so that a power loss keeps it too
                    dfd = os.open(self.directory, os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            except OSError as exc:
                error = exc
                logger.error("prediction log: syncing the write-ahead file %s failed: %s", self.path(self._file), exc)
            finally:
                for old in rotated:
                    os.close(old)
            self.syncs += 1
            with self._cond:
                if error is None:
                    self._synced = max(self._synced, target)
                    self._error = None
                else:
                    self._error = error
                    self._synced = max(self._synced, target) if self._closing else self._synced
                ready = [w for w in self._waiters if w[0] <= self._synced or error is not None]
                self._waiters = [w for w in self._waiters if not (w[0] <= self._synced or error is not None)]
                self._cond.notify_all()
            for _, loop, fut in ready:
                _wake(loop, fut, error)
            if error is not None:
                time.sleep(0.1)  # a failing disk: retry, but do not spin

    def close(self, *, keep: frozenset[int] | set[int] = frozenset()) -> None:
        """Sync and stop; delete this process's files except those in `keep` (rows the log has not
        taken: they are replayed at the next start), and its lock when no file is kept."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._syncer.join(timeout=30)
        with self._rotating, self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._spare is not None:
                os.close(self._spare[1])  # its file goes with the others below
                self._spare = None
            for path in self.directory.glob(f"{self.owner}-*.wal"):
                m = _DATA.match(path.name)
                if m and int(m["n"]) not in keep:
                    path.unlink(missing_ok=True)
            if self._lock_fd is not None:
                if not keep:
                    self.lock_path.unlink(missing_ok=True)
                os.close(self._lock_fd)
                self._lock_fd = None
        with self._cond:
            waiters, self._waiters = self._waiters, []
        for _, loop, fut in waiters:
            _wake(loop, fut, None)

    @property
    def closed(self) -> bool:
        return self._lock_fd is None


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], error: OSError | None) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, fut, error)
    except RuntimeError:  # its loop was closed meanwhile: nobody waits any more
        pass


def _resolve(fut: asyncio.Future[None], error: OSError | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
