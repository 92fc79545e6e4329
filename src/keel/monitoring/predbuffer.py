"""The prediction log's writer: prediction ids, and the buffered logger a server calls per request.

Split from `predlog.py` (the log itself: segments, windows, feedback, retention): a request's rows
are buffered here (and appended to the write-ahead file, `predwal.py`) and written by a background
thread into a `PredictionSink`, which `PredictionLog` is. The columns a segment holds are listed
in `predlog.py`'s docstring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from keel.errors import InvalidInputError, KeelError, StoreUnavailableError
from keel.monitoring.predentries import (
    _decode,
    _encode,
    _Entry,
    _groups,
    entries_table,
    new_prediction_ids,
    prediction_id_time,
)
from keel.monitoring.predrows import request_entry, scored_table
from keel.monitoring.predwal import PredictionWal

logger = logging.getLogger(__name__)

__all__ = ["PredictionLogger", "PredictionSink", "new_prediction_ids", "prediction_id_time"]


# -- the logger ------------------------------------------------------------------------------------
class PredictionSink(Protocol):
    """Where a PredictionLogger writes: `PredictionLog`, or a test double."""

    def write(self, model_name: str, version: int, frame: Any) -> Any: ...


class PredictionLogger:
    """Buffer served predictions in memory and write them in batches from a background thread.

    `log()` never waits for the store. With a write-ahead file (`wal`, a factory of
    `keel.monitoring.predwal.PredictionWal`) each request is first appended to it, and `log()`
    (or `await log_async()`) returns once a sync covered the append: an answered prediction then
    survives a crash of the process, replayed at the next start. Rows past `max_buffer_rows` (the
    writer is behind) then spill: they stay in the write-ahead file only, and the writer reads
    them back. Without one, such rows are dropped; every dropped row (buffer full, or a write the
    store refused) is counted in `dropped` and reported in a rate-limited warning. `logged` counts
    rows written. A single request larger than the whole buffer is still kept, alone, when the
    buffer is empty. `maintenance` (retention, compaction), when given, runs every
    `maintenance_interval_s` seconds on a thread of its own, so that it never delays a write.

    >>> log = ws.predictions.logger()                                            # doctest: +SKIP
    >>> log.log("churn", 3, [{"tenure": 4}], predictions=[1], ids=["..."])       # doctest: +SKIP
    >>> log.close()                                                              # doctest: +SKIP
    """

    def __init__(
        self,
        sink: PredictionSink,
        *,
        max_buffer_rows: int = 10_000,
        flush_interval_s: float = 2.0,
        flush_rows: int | None = None,
        maintenance: Callable[[], object] | None = None,
        maintenance_interval_s: float = 600.0,
        wal: Callable[[], PredictionWal] | None = None,
        wait_for_sync: bool = False,
        warn_interval_s: float = 10.0,
    ) -> None:
        if max_buffer_rows < 1:
            raise InvalidInputError(f"max_buffer_rows must be >= 1, got {max_buffer_rows}")
        if not flush_interval_s > 0:
            raise InvalidInputError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.sink = sink
        self.max_buffer_rows = max_buffer_rows
        self.flush_interval_s = flush_interval_s
        # Write well before the buffer is full, so that rows arriving during a write find room.
        self.flush_rows = (
            max(1, max_buffer_rows // 4) if flush_rows is None else max(1, min(flush_rows, max_buffer_rows))
        )
        self.maintenance = maintenance
        self.maintenance_interval_s = maintenance_interval_s
        self.warn_interval_s = warn_interval_s
        self.logged = 0  # rows written to the sink
        self.dropped = 0  # rows lost: buffer full without a write-ahead file, or the sink refused them
        self._pending: list[_Entry] = []
        self._pending_rows = 0
        # Guards the buffer, the counters and the write-ahead appends; held for microseconds.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one batch written at a time
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None  # the running writer's own: a restarted writer gets a new one
        self._maintaining: threading.Thread | None = None
        self._warned_dropped = 0
        self._warned_at = -float("inf")
        self._next_maintenance = time.monotonic() + maintenance_interval_s
        self._wal_factory = wal
        # False: an answer waits for the append (a system call) only, which survives a crash of the
        # process; the syncer makes it survive an OS crash within sync_ms. True: it waits for the sync.
        self.wait_for_sync = wait_for_sync
        self._wal: PredictionWal | None = None
        self._wal_refs: dict[int, int] = {}  # write-ahead file -> its entries not yet in the sink
        self._spilled: dict[int, list[int]] = {}  # write-ahead file -> records of entries kept only there
        self._spilled_rows = 0
        self._released: list[tuple[PredictionWal, int]] = []  # files to delete once self._lock is released

    @property
    def pending(self) -> int:
        """Rows waiting to be written: buffered, and spilled to the write-ahead file."""
        return self._pending_rows + self._spilled_rows

    @property
    def spilled(self) -> int:
        """Rows past the buffer, kept in the write-ahead file only until the writer catches up."""
        return self._spilled_rows

    @property
    def wal(self) -> PredictionWal | None:
        """The write-ahead file in use, if any (opened by the first `log()`)."""
        return self._wal

    def new_ids(self, n: int) -> tuple[list[str], int]:
        """`n` prediction ids for a request being served now, and its time in ms (see `log(at_ms=)`)."""
        return new_prediction_ids(n)

    def log(
        self,
        model_name: str,
        version: int,
        records: Sequence[Mapping[str, Any]],
        *,
        predictions: Any = None,
        probabilities: Any = None,
        classes: Sequence[Any] | None = None,
        ids: Sequence[str] | None = None,
        latency_ms: float | None = None,
        error: str | None = None,
        at_ms: int | None = None,
        by: str | None = None,
        durable: bool = True,
    ) -> bool:
        """Buffer one request's rows; return False when they were dropped (buffer full, no write-ahead file).

        `ids` and `at_ms` come from `new_ids()`; without them fresh ones are made. `by` names who
        asked (kept in the column `__by`). With a write-ahead file and `durable`, this blocks until
        the rows are synced to it (a few ms at most); on the event loop use `log_async()`.
        """
        kept, ticket = self._log(
            request_entry(
                model_name, version, records, predictions, probabilities, classes, ids, latency_ms, error, at_ms, by
            )
        )
        if ticket > 0 and durable and self.wait_for_sync and self._wal is not None:
            self._wal.wait(ticket)
        return kept

    async def log_async(
        self,
        model_name: str,
        version: int,
        records: Sequence[Mapping[str, Any]],
        *,
        predictions: Any = None,
        probabilities: Any = None,
        classes: Sequence[Any] | None = None,
        ids: Sequence[str] | None = None,
        latency_ms: float | None = None,
        error: str | None = None,
        at_ms: int | None = None,
        by: str | None = None,
    ) -> bool:
        """`log()` for the event loop: awaits the write-ahead sync without blocking the loop.
        Raises StoreUnavailableError when the write-ahead file cannot be written or synced (the rows
        are still buffered; only the crash guarantee is missing)."""
        kept, ticket = self._log(
            request_entry(
                model_name, version, records, predictions, probabilities, classes, ids, latency_ms, error, at_ms, by
            )
        )
        wal = self._wal
        if ticket > 0 and self.wait_for_sync and wal is not None:
            try:
                await wal.wait_async(ticket)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"The prediction was not made durable: syncing the prediction log's write-ahead file failed ({exc}). "
                    "Free disk space under the workspace's predlog/ folder, or set KEEL_PREDLOG_WAL=off to serve "
                    "without the crash guarantee."
                ) from exc
        elif ticket < 0:
            raise StoreUnavailableError(
                "The prediction was not made durable: appending to the prediction log's write-ahead file failed "
                "(see the server log). Free disk space under the workspace's predlog/ folder, or set "
                "KEEL_PREDLOG_WAL=off to serve without the crash guarantee."
            )
        return kept

    def open(self) -> None:
        """Open the write-ahead file and start the writer now rather than on the first request
        (a server's warm-up calls it, so that its first prediction does not pay for them)."""
        with self._lock:
            if self._wal_factory is not None and (self._wal is None or self._wal.closed):
                self._wal = self._wal_factory()
                self._wal_refs = {}
            self._start_writer()

    def _log(self, entry: _Entry) -> tuple[bool, int]:
        """Buffer (or spill, or drop) one request; return (kept, write-ahead ticket: 0 none, -1 failed)."""
        n = len(entry.records)
        payload = _encode(entry) if self._wal_factory is not None else None  # outside the lock: the costly part
        ticket = 0
        with self._lock:
            fits = not (self._pending_rows and self._pending_rows + n > self.max_buffer_rows)
            if payload is not None:
                try:
                    if self._wal is None or self._wal.closed:
                        self._wal = self._wal_factory()  # type: ignore[misc]
                        self._wal_refs = {}
                    file_id, seq, ticket = self._wal.append(payload)
                except OSError as exc:
                    ticket = -1
                    logger.error(
                        "prediction log: appending to the write-ahead file failed (%s); "
                        "%d rows are kept in memory only",
                        exc,
                        n,
                    )
                else:
                    self._wal_refs[file_id] = self._wal_refs.get(file_id, 0) + 1
                    entry = entry._replace(wal_file=file_id, wal_seq=seq)
                    if not fits:  # in the write-ahead file already: the writer reads it back from there
                        self._spilled.setdefault(file_id, []).append(seq)
                        self._spilled_rows += n
                        self._wake.set()
                        self._start_writer()
                        return True, ticket
            if not fits:
                self.dropped += n
                wake = True
            else:
                self._pending.append(entry)
                self._pending_rows += n
                wake = self._pending_rows >= self.flush_rows
            self._start_writer()
        if wake:
            self._wake.set()
        return fits, ticket

    def _start_writer(self) -> None:
        if self._thread is None:  # under self._lock
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="keel-predlog", daemon=True)
            self._thread.start()

    def write_frame(
        self,
        model_name: str,
        version: int,
        frame: Any,
        *,
        predictions: Any,
        probabilities: Any = None,
        classes: Sequence[Any] | None = None,
        ids: Sequence[str],
        at_ms: int,
        latency_ms: float | None = None,
        by: str | None = None,
    ) -> bool:
        """Write a scored DataFrame chunk to the sink now, in the caller's thread (batch scoring,
        where a chunk is larger than the buffer); return False when the write failed (counted in `dropped`)."""
        n = len(frame)
        try:
            table = scored_table(
                frame,
                version,
                predictions=predictions,
                probabilities=probabilities,
                classes=classes,
                ids=ids,
                at_ms=at_ms,
                latency_ms=latency_ms,
                by=by,
            )
            self.sink.write(model_name, version, table)
        except Exception:  # the log must not fail the request it records: count and report the loss
            logger.exception("prediction log: writing %d rows of %s@%s failed; they are lost", n, model_name, version)
            with self._lock:
                self.dropped += n
            return False
        with self._lock:
            self.logged += n
        return True

    def flush(self) -> int:
        """Write every buffered and spilled row now; return how many were written. Waits for a write in progress."""
        with self._write_lock:
            with self._lock:
                batch, self._pending, self._pending_rows = self._pending, [], 0
                spilled, self._spilled, self._spilled_rows = self._spilled, {}, 0
                if self._wal is not None and not self._wal.closed:
                    # Every entry of the files before the new one is now in `batch` or `spilled`:
                    # each such file is deleted once they are written.
                    current = self._wal.rotate()
                    for file_id in [f for f, refs in self._wal_refs.items() if refs == 0 and f != current]:
                        self._release(file_id)
            self._remove_released()
            written = self._write(batch)
            for file_id, seqs in sorted(spilled.items()):
                written += self._write_spilled(file_id, seqs)
            return written

    def _write_spilled(self, file_id: int, seqs: list[int]) -> int:
        """Read spilled entries back from their write-ahead file and write them, a buffer's worth at a time."""
        assert self._wal is not None
        wanted = set(seqs)
        try:
            records = self._wal.records(file_id)
        except OSError as exc:
            rows = len(wanted)
            logger.error(
                "prediction log: reading spilled rows back from %s failed (%s); they stay there for the next start",
                self._wal.path(file_id),
                exc,
            )
            with self._lock:
                self.dropped += rows
            return 0
        written = 0
        chunk: list[_Entry] = []
        chunk_rows = 0
        for seq, payload in enumerate(records):
            if seq not in wanted:
                continue
            entry = _decode(payload)._replace(wal_file=file_id, wal_seq=seq)
            chunk.append(entry)
            chunk_rows += len(entry.records)
            if chunk_rows >= self.max_buffer_rows:
                written += self._write(chunk)
                chunk, chunk_rows = [], 0
        return written + self._write(chunk)

    def close(self) -> None:
        """Write everything and stop the writer thread. A later `log()` starts it again.
        The write-ahead file is removed, unless it holds rows the store refused (replayed at the next start)."""
        with self._lock:
            thread, stop, self._thread, self._stop = self._thread, self._stop, None, None
        if thread is not None and stop is not None:
            stop.set()
            self._wake.set()
            thread.join()
        self.flush()  # rows logged while the thread was stopping
        self._warn_dropped(force=True)
        with self._lock:
            wal, self._wal = self._wal, None
            keep = {f for f, refs in self._wal_refs.items() if refs > 0}
            self._wal_refs = {}
        if wal is not None:
            if keep:
                logger.warning(
                    "prediction log: write-ahead files %s keep rows that could not be written; the next "
                    "start replays them",
                    ", ".join(str(wal.path(f)) for f in sorted(keep)),
                )
            wal.close(keep=keep)

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self, stop: threading.Event) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = stop.is_set()
            self.flush()
            self._warn_dropped()
            if stopping:
                return
            if self.maintenance is not None and time.monotonic() >= self._next_maintenance:
                self._next_maintenance = time.monotonic() + self.maintenance_interval_s
                if self._maintaining is None or not self._maintaining.is_alive():
                    # on a thread of its own: a long retention or compaction pass never delays a write
                    self._maintaining = threading.Thread(
                        target=self._maintain, name="keel-predlog-maintenance", daemon=True
                    )
                    self._maintaining.start()

    def _warn_dropped(self, *, force: bool = False) -> None:
        """A warning with the counts whenever rows were dropped, at most every `warn_interval_s` seconds."""
        dropped = self.dropped
        if dropped > self._warned_dropped and (force or time.monotonic() - self._warned_at >= self.warn_interval_s):
            logger.warning(
                "prediction log: %d rows dropped (%d since the last warning; buffer of %d rows full without "
                "a write-ahead file, or writes failing); %d written",
                dropped,
                dropped - self._warned_dropped,
                self.max_buffer_rows,
                self.logged,
            )
            self._warned_dropped = dropped
            self._warned_at = time.monotonic()

    def _maintain(self) -> None:
        assert self.maintenance is not None
        try:
            self.maintenance()
        except KeelError as exc:
            logger.warning("prediction log maintenance failed: %s", exc)

    def _write(self, batch: list[_Entry]) -> int:
        written = 0
        for (model_name, version, _), entries in _groups(batch).items():
            rows = sum(len(e.records) for e in entries)
            try:
                table = entries_table(entries)
                self.sink.write(model_name, version, table)
            except StoreUnavailableError as exc:
                if self._requeue(entries, rows):
                    logger.warning(
                        "prediction log: the store is unavailable (%s); %d rows wait for the next write", exc, rows
                    )
                else:
                    logger.error("prediction log: the store is unavailable (%s); %d rows lost", exc, rows)
                continue
            except Exception:  # a background thread: whatever the sink raised, count and report the loss
                kept = self._wal is not None and all(e.wal_file >= 0 for e in entries)
                logger.exception(
                    "prediction log: writing %d rows of %s@%s failed; %s",
                    rows,
                    model_name,
                    version,
                    "they stay in the write-ahead file for the next start" if kept else "they are lost",
                )
                with self._lock:
                    self.dropped += rows  # not in the log while this process runs
                continue
            written += rows
            with self._lock:
                self.logged += rows
                for e in entries:
                    self._unref(e.wal_file)
            self._remove_released()
        return written

    def _unref(self, file_id: int) -> None:
        """An entry of write-ahead file `file_id` is in the sink (under self._lock)."""
        if file_id < 0 or file_id not in self._wal_refs:
            return
        self._wal_refs[file_id] -= 1
        if self._wal_refs[file_id] == 0 and self._wal is not None and file_id != self._wal.current:
            self._release(file_id)

    def _release(self, file_id: int) -> None:
        """A write-ahead file whose rows are all in the sink: removed by `_remove_released()` (under self._lock)."""
        assert self._wal is not None
        del self._wal_refs[file_id]
        self._released.append((self._wal, file_id))

    def _remove_released(self) -> None:
        """Delete the released write-ahead files, outside self._lock: an unlink is a journaled
        directory change (milliseconds on a busy disk) that a request's `log()` must not wait for."""
        with self._lock:
            released, self._released = self._released, []
        for wal, file_id in released:
            try:
                wal.remove(file_id)
            except OSError as exc:  # its rows are in the log: a replay would skip them
                logger.warning(
                    "prediction log: removing the written write-ahead file %s failed: %s", wal.path(file_id), exc
                )

    def _requeue(self, entries: list[_Entry], rows: int) -> bool:
        """Put rows whose write failed back in front of the buffer, if they fit (or spill them to
        their write-ahead file); else count them lost."""
        with self._lock:
            closing = self._thread is None  # no later write
            if not closing and self._pending_rows + rows <= self.max_buffer_rows:
                self._pending[:0] = entries
                self._pending_rows += rows
                return True
            if not closing and self._wal is not None and all(e.wal_file >= 0 for e in entries):
                for e in entries:
                    self._spilled.setdefault(e.wal_file, []).append(e.wal_seq)
                self._spilled_rows += rows
                return True
            self.dropped += rows
            return False
