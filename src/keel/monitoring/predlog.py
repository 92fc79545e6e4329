"""The prediction log: every prediction served, with its inputs, outputs, latency and, later, its true label.

Two objects:

- `PredictionLogger`, what a server calls once per request. `log()` appends to a bounded
  in-memory buffer under a lock; a background thread writes the buffer every `flush_interval_s`
  seconds, or sooner once it holds `flush_rows` rows. With a write-ahead file (`predwal.py`, the
  default of `ws.predictions.logger()`) each request is appended to it first and `log()` returns
  once a sync covered it: a crash then loses nothing answered, the next logger replays the file;
  rows past the buffer spill to that file instead of being dropped. Without one, a full buffer
  drops new rows (counted in `dropped`, warned about), and a crash loses the buffer. Either way a
  slow store never slows a request. `close()` writes everything: a clean stop loses nothing.
- `PredictionLog` (`ws.predictions`), the log itself: Parquet segments (content-addressed blobs)
  indexed by model, version and time in the metadata store; windows of it as DataFrames;
  feedback (true labels by prediction id); retention; export of a slice as a dataset version.

A segment holds the rows of one model version. Its columns:

    __id          prediction id: 32 hex, the first 12 the UTC time in ms (so ids sort by time and
                  feedback finds its segment by time), the other 20 random
    __at          UTC timestamp (ms) of the request
    __version     the model version that answered
    __latency_ms  model time for the whole request (the same for each of its rows)
    __error       null, or why the request was refused (a signature error); inputs kept as sent
    <inputs>      the input columns under their own names
    __prediction  the prediction
    __proba_<c>   the probability of class c, when the model gives probabilities

`window()` adds `__label`, the feedback, or None. Refused requests go to segments of their own,
so that their inputs never change the column types of served rows; a column whose values have
mixed types ("high" next to 10.4) is stored as JSON text, marked in its field metadata, and
`window()` gives the values back as they were sent. A server writes a segment every few seconds;
`compact()` merges them (per version and UTC day, so retention still works by day).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.data.tables import parquet_bytes, read_parquet, to_arrow
from keel.errors import AccessDeniedError, InvalidInputError, KeelError, NotFoundError, StoreUnavailableError
from keel.monitoring.predwal import PredictionWal, orphans
from keel.refs import check_name

if TYPE_CHECKING:
    import pandas as pd

    from keel.data import Datasets
    from keel.entities import DatasetVersion
    from keel.storage import BlobStore, MetadataStore
    from keel.storage.predictions import PredictionSegment

logger = logging.getLogger(__name__)

__all__ = ["PredictionLog", "PredictionLogger", "PredictionSink", "new_prediction_ids", "prediction_id_time"]

META_COLUMNS = ("__id", "__at", "__version", "__latency_ms", "__error")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_EARLIEST_ID_MS = 1_577_836_800_000  # 2020-01-01: older "times" mean the id is not one of ours
_AT_TYPE = pa.timestamp("ms", tz="UTC")
_COMPACT_ROWS = 50_000  # segments are merged up to this many rows


# -- prediction ids ------------------------------------------------------------------------------
def new_prediction_ids(n: int, at_ms: int | None = None) -> tuple[list[str], int]:
    """`n` fresh prediction ids for one request, and the request time they encode (ms since epoch).

    >>> ids, at_ms = new_prediction_ids(2)
    >>> len(ids[0]), prediction_id_time(ids[0]) == at_ms
    (32, True)
    """
    at_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    prefix = f"{at_ms:012x}"
    rand = os.urandom(10 * n).hex()
    return [prefix + rand[20 * i : 20 * i + 20] for i in range(n)], at_ms


def prediction_id_time(prediction_id: str) -> int | None:
    """The request time (ms since epoch) a keel prediction id encodes; None for other ids."""
    if len(prediction_id) != 32:
        return None
    try:
        ms = int(prediction_id[:12], 16)
        int(prediction_id[12:], 16)
    except ValueError:
        return None
    if not _EARLIEST_ID_MS <= ms <= time.time_ns() // 1_000_000 + 86_400_000:
        return None
    return ms


def _ms(value: datetime) -> int:
    return (value - _EPOCH) // _MS


# -- the logger ------------------------------------------------------------------------------------
class PredictionSink(Protocol):
    """Where a PredictionLogger writes: `PredictionLog`, or a test double."""

    def write(self, model_name: str, version: int, frame: Any) -> Any: ...


class _Entry(NamedTuple):
    """One request, kept as given until the writer thread turns a batch of them into a table."""

    model_name: str
    version: int
    records: Sequence[Mapping[str, Any]]
    predictions: Any  # (rows,) array or list; None for a refused request
    probabilities: Any  # (rows, classes) array or None
    classes: Sequence[Any] | None
    ids: Sequence[str]
    at_ms: int
    latency_ms: float | None
    error: str | None
    by: str | None = None  # who asked: the API token's prefix, or the principal's name
    wal_file: int = -1  # where its write-ahead record is: file id and index in the file
    wal_seq: int = -1


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
        self.flush_rows = max(1, max_buffer_rows // 4) if flush_rows is None else max(1, min(flush_rows, max_buffer_rows))
        self.maintenance = maintenance
        self.maintenance_interval_s = maintenance_interval_s
        self.warn_interval_s = warn_interval_s
        self.logged = 0  # rows written to the sink
        self.dropped = 0  # rows lost: buffer full without a write-ahead file, or the sink refused them
        self._pending: list[_Entry] = []
        self._pending_rows = 0
        self._lock = threading.Lock()  # guards the buffer, the counters and the write-ahead appends; held for microseconds
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
        kept, ticket = self._log(model_name, version, records, predictions, probabilities, classes, ids, latency_ms,
                                 error, at_ms, by)  # fmt: skip
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
        kept, ticket = self._log(model_name, version, records, predictions, probabilities, classes, ids, latency_ms,
                                 error, at_ms, by)  # fmt: skip
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

    def _log(self, model_name: str, version: int, records: Sequence[Mapping[str, Any]], predictions: Any,
             probabilities: Any, classes: Sequence[Any] | None, ids: Sequence[str] | None, latency_ms: float | None,
             error: str | None, at_ms: int | None, by: str | None) -> tuple[bool, int]:  # fmt: skip
        """Buffer (or spill, or drop) one request; return (kept, write-ahead ticket: 0 none, -1 failed)."""
        n = len(records)
        if ids is None:
            ids, at_ms = new_prediction_ids(n, at_ms)
        elif at_ms is None:
            at_ms = prediction_id_time(ids[0]) if n else None
            at_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
        entry = _Entry(model_name, version, records, predictions, probabilities, classes, ids, at_ms, latency_ms, error, by)
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
                    logger.error("prediction log: appending to the write-ahead file failed (%s); "
                                 "%d rows are kept in memory only", exc, n)  # fmt: skip
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
            table = to_arrow(frame.reset_index(drop=True))
            columns: dict[str, Any] = {
                "__id": pa.array(ids, pa.string()),
                "__at": pa.array([at_ms] * n, _AT_TYPE),
                "__version": pa.array([version] * n, pa.int64()),
                "__latency_ms": pa.array([latency_ms] * n, pa.float64()),
                "__error": pa.nulls(n, pa.string()),
            }
            if by is not None:
                columns["__by"] = pa.array([by] * n, pa.string())
            columns.update({c: table.column(c) for c in table.column_names if not c.startswith("__")})
            columns["__prediction"] = _column(_tolist(predictions))
            if probabilities is not None and classes:
                proba = np.asarray(probabilities, dtype=float)  # (rows, classes)
                columns.update({f"__proba_{c}": pa.array(proba[:, j], pa.float64()) for j, c in enumerate(classes)})
            self.sink.write(model_name, version, _table(columns))
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
            logger.error("prediction log: reading spilled rows back from %s failed (%s); they stay there for the next start",
                         self._wal.path(file_id), exc)  # fmt: skip
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
                logger.warning("prediction log: write-ahead files %s keep rows that could not be written; the next "
                               "start replays them", ", ".join(str(wal.path(f)) for f in sorted(keep)))  # fmt: skip
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
                    self._maintaining = threading.Thread(target=self._maintain, name="keel-predlog-maintenance", daemon=True)
                    self._maintaining.start()

    def _warn_dropped(self, *, force: bool = False) -> None:
        """A warning with the counts whenever rows were dropped, at most every `warn_interval_s` seconds."""
        dropped = self.dropped
        if dropped > self._warned_dropped and (force or time.monotonic() - self._warned_at >= self.warn_interval_s):
            logger.warning("prediction log: %d rows dropped (%d since the last warning; buffer of %d rows full without "
                           "a write-ahead file, or writes failing); %d written", dropped, dropped - self._warned_dropped,
                           self.max_buffer_rows, self.logged)  # fmt: skip
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
                    logger.warning("prediction log: the store is unavailable (%s); %d rows wait for the next write", exc, rows)
                else:
                    logger.error("prediction log: the store is unavailable (%s); %d rows lost", exc, rows)
                continue
            except Exception:  # a background thread: whatever the sink raised, count and report the loss
                kept = self._wal is not None and all(e.wal_file >= 0 for e in entries)
                logger.exception("prediction log: writing %d rows of %s@%s failed; %s", rows, model_name, version,
                                 "they stay in the write-ahead file for the next start" if kept else "they are lost")  # fmt: skip
                with self._lock:
                    self.dropped += rows  # not in the log while this process runs
                continue
            written += rows
            with self._lock:
                self.logged += rows
                for e in entries:
                    self._unref(e.wal_file)
        return written

    def _unref(self, file_id: int) -> None:
        """An entry of write-ahead file `file_id` is in the sink (under self._lock)."""
        if file_id < 0 or file_id not in self._wal_refs:
            return
        self._wal_refs[file_id] -= 1
        if self._wal_refs[file_id] == 0 and self._wal is not None and file_id != self._wal.current:
            self._release(file_id)

    def _release(self, file_id: int) -> None:
        assert self._wal is not None
        del self._wal_refs[file_id]
        try:
            self._wal.remove(file_id)
        except OSError as exc:  # its rows are in the log: a replay would skip them
            logger.warning("prediction log: removing the written write-ahead file %s failed: %s", self._wal.path(file_id), exc)

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


def _encode(entry: _Entry) -> bytes:
    """One request as a write-ahead record: JSON of its fields (arrays as lists)."""
    doc = {
        "m": entry.model_name, "v": entry.version, "r": list(entry.records), "i": list(entry.ids), "t": entry.at_ms,
        "l": entry.latency_ms, "e": entry.error, "b": entry.by,
        "p": None if entry.predictions is None else _tolist(entry.predictions),
        "q": None if entry.probabilities is None else np.asarray(entry.probabilities, dtype=float).tolist(),
        "c": None if entry.classes is None else _tolist(entry.classes),
    }  # fmt: skip
    try:
        import orjson
    except ImportError:  # pragma: no cover - the server extra brings orjson
        return json.dumps(doc, default=_json_default).encode()
    return orjson.dumps(doc, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _decode(payload: bytes) -> _Entry:
    doc = json.loads(payload)
    return _Entry(doc["m"], int(doc["v"]), doc["r"], doc["p"], doc["q"], doc["c"], doc["i"], int(doc["t"]), doc["l"],
                  doc["e"], doc.get("b"))  # fmt: skip


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)  # dates and other objects: as text, as a JSON-encoded log column would keep them


def _groups(batch: list[_Entry]) -> dict[tuple[str, int, bool], list[_Entry]]:
    """Entries by (model, version, refused): refused requests get segments of their own, so
    their inputs, typed as sent, never change the column types of served rows."""
    out: dict[tuple[str, int, bool], list[_Entry]] = {}
    for e in batch:
        out.setdefault((e.model_name, e.version, e.error is not None), []).append(e)
    return out


def entries_table(entries: Sequence[_Entry]) -> pa.Table:
    """One table of the rows of `entries` (all of one model version), columns as in the module docstring."""
    ids: list[str] = []
    at: list[int] = []
    latency: list[float | None] = []
    errors: list[str | None] = []
    inputs: dict[str, None] = {}
    for e in entries:
        n = len(e.records)
        ids.extend(e.ids)
        at.extend([e.at_ms] * n)
        latency.extend([e.latency_ms] * n)
        errors.extend([e.error] * n)
        for r in e.records:
            inputs.update(dict.fromkeys(r))
    n_rows = len(ids)
    columns: dict[str, Any] = {
        "__id": pa.array(ids, pa.string()),
        "__at": pa.array(at, _AT_TYPE),
        "__version": pa.array([e.version for e in entries for _ in e.records], pa.int64()),
        "__latency_ms": pa.array(latency, pa.float64()),
        "__error": pa.array(errors, pa.string()),
    }
    if any(e.by is not None for e in entries):  # who asked: feedback from below the writer role must match
        columns["__by"] = pa.array([e.by for e in entries for _ in e.records], pa.string())
    for name in inputs:
        if not isinstance(name, str) or name.startswith("__"):
            continue  # the log's own namespace; such inputs are refused by any signature anyway
        columns[name] = _column([r.get(name) for e in entries for r in e.records])
    if any(e.predictions is not None for e in entries):
        preds: list[Any] = []
        for e in entries:
            preds.extend(_tolist(e.predictions) if e.predictions is not None else [None] * len(e.records))
        columns["__prediction"] = _column(preds)
    classes = next((list(e.classes) for e in entries if e.probabilities is not None and e.classes), None)
    if classes is not None:
        blocks = [np.asarray(e.probabilities, dtype=float) if e.probabilities is not None
                  else np.full((len(e.records), len(classes)), np.nan) for e in entries]  # fmt: skip
        proba = np.vstack(blocks) if blocks else np.empty((0, len(classes)))  # (rows, classes)
        for j, c in enumerate(classes):
            columns[f"__proba_{c}"] = pa.array(proba[:, j], pa.float64(), from_pandas=True)
    table = _table(columns)
    assert table.num_rows == n_rows
    return table


def _tolist(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


_JSON_KEY = b"keel.json"  # field metadata: the column holds values of mixed types as JSON text


class _Json(NamedTuple):
    array: pa.Array


def _column(values: list[Any]) -> pa.Array | _Json:
    """Arrow infers the type; values of mixed types (a refused request's "high" in a number column)
    are kept exactly, as JSON text in a column marked as such (`window()` decodes it)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return _Json(pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string()))


def _table(columns: dict[str, Any]) -> pa.Table:
    fields, arrays = [], []
    for name, col in columns.items():
        if isinstance(col, _Json):
            fields.append(pa.field(name, pa.string(), metadata={_JSON_KEY: b"1"}))
            arrays.append(col.array)
        else:
            fields.append(pa.field(name, col.type))
            arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _json_columns(table: pa.Table) -> set[str]:
    return {f.name for f in table.schema if f.metadata and f.metadata.get(_JSON_KEY)}


def _plain_column(values: list[Any]) -> pa.Array:
    """A dataset column: Arrow's type, or text when the values' types differ."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


# -- the log -----------------------------------------------------------------------------------------
class PredictionLog:
    """The prediction log of one workspace: `ws.predictions`.

    >>> ws.predictions.window("churn", last_rows=1000)          # doctest: +SKIP
    >>> ws.predictions.feedback("churn", {"0194f...": 1})      # doctest: +SKIP
    >>> ws.predictions.export("churn", "churn-live", target="churned")   # doctest: +SKIP
    """

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        *,
        datasets: Datasets,
        retention_days: int = 90,
        buffer_rows: int = 10_000,
        flush_s: float = 2.0,
        wal_dir: Path | None = None,
        wal: bool = True,
        wal_sync_ms: float = 100.0,
        wal_wait_for_sync: bool = False,
    ) -> None:
        self._meta = meta
        self._blobs = blobs
        self._datasets = datasets
        self.retention_days = retention_days
        self.buffer_rows = buffer_rows
        self.flush_s = flush_s
        self.wal_dir = None if wal_dir is None else Path(wal_dir)
        self.wal = wal and wal_dir is not None
        self.wal_sync_ms = wal_sync_ms
        self.wal_wait_for_sync = wal_wait_for_sync

    def logger(self, *, max_buffer_rows: int | None = None, flush_interval_s: float | None = None) -> PredictionLogger:
        """A buffered writer into this log (what `keel serve` uses), sized by the `predlog_*` settings;
        it also runs retention and compaction every 10 minutes. Close it to write its last rows.

        First it replays the write-ahead files that dead processes left (`replay()`); with
        `predlog_wal` on, it writes one of its own, so that answered rows survive a crash.
        """
        self.replay()
        factory = None
        if self.wal and self.wal_dir is not None:
            wal_dir, sync_ms = self.wal_dir, self.wal_sync_ms
            paced = not self.wal_wait_for_sync  # nobody waits for a sync: one every sync_ms covers all
            factory = lambda: PredictionWal(wal_dir, sync_ms=sync_ms, paced=paced)  # noqa: E731 - opened by the first log()
        return PredictionLogger(
            self,
            max_buffer_rows=self.buffer_rows if max_buffer_rows is None else max_buffer_rows,
            flush_interval_s=self.flush_s if flush_interval_s is None else flush_interval_s,
            maintenance=self.maintain,
            wal=factory,
            wait_for_sync=self.wal_wait_for_sync,
        )

    def replay(self) -> int:
        """Write into the log the rows of write-ahead files left by processes that died (a crash,
        `kill -9`), exactly once: rows whose id is already in the log are skipped. Return how many
        rows were written. Files of live processes (their lock is held) are left alone; a file
        that cannot be written stays for the next try, renamed `*.failed` when its rows are refused."""
        if self.wal_dir is None:
            return 0
        total = 0
        for orphan in orphans(self.wal_dir):
            keep: list[Path] = []
            for path in orphan.files:
                try:
                    total += self._replay_file(path)
                except StoreUnavailableError as exc:
                    logger.warning("prediction log: replaying %s failed (%s); the next start tries again", path, exc)
                    keep.append(path)
                except Exception:  # a file whose rows the log refuses: keep it aside, never block the start
                    logger.exception("prediction log: the rows of %s cannot be written; kept as %s.failed", path, path.name)
                    path.rename(path.with_name(path.name + ".failed"))
            orphan.done(keep=tuple(keep))
        return total

    def _replay_file(self, path: Path) -> int:
        from keel.monitoring.predwal import read_records

        records, torn = read_records(path)
        if torn:
            logger.warning("prediction log: ignored %d bytes of a torn or corrupt record at the end of %s", torn, path)
        entries = [_decode(r) for r in records]
        written = 0
        for (model_name, version, _), group in _groups(entries).items():
            known = self._known_ids(model_name, {i for e in group for i in e.ids})
            fresh = [e for e in group if not known.issuperset(e.ids)]
            if not fresh:
                continue  # written before the crash, and the file not yet deleted
            table = entries_table(fresh)
            if known:
                table = table.filter(pc.invert(pc.is_in(table.column("__id"), value_set=pa.array(sorted(known), pa.string()))))
            self.write(model_name, version, table)
            written += table.num_rows
        if written:
            logger.info("prediction log: replayed %d rows from %s", written, path)
        return written

    # -- write ---------------------------------------------------------------------------------
    def write(self, model_name: str, version: int, frame: Any) -> PredictionSegment | None:
        """Store the rows of `frame` (a DataFrame or Arrow table) as one segment of `model_name@version`.

        Missing `__id`, `__at`, `__latency_ms` and `__error` columns are filled in (new ids; the
        time each Keel id carries, else now; nulls); a naive `__at` is read as UTC. Returns None
        for an empty frame.
        """
        check_name(model_name, what="model name")
        table = to_arrow(frame)
        if table.num_rows == 0:
            return None
        table = _complete(table, version)
        first, last = pc.min_max(table.column("__at")).values()
        data = parquet_bytes(table)
        digest = self._blobs.put_bytes(data)
        return self._meta.predictions.add_segment(
            model_name=model_name, model_version=version, first_at=first.as_py(), last_at=last.as_py(),
            rows=table.num_rows, digest=digest, size_bytes=len(data),
        )  # fmt: skip

    # -- read ----------------------------------------------------------------------------------
    def count(self, model_name: str, *, version: int | None = None) -> int:
        """Rows logged for `model_name` (written ones; a server's buffer is not counted)."""
        return self._meta.predictions.count(model_name, version=version)

    def segments(self, model_name: str, *, version: int | None = None) -> list[PredictionSegment]:
        return self._meta.predictions.segments(model_name, version=version)

    def window(
        self,
        model_name: str,
        *,
        last_rows: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        version: int | None = None,
        labelled_only: bool = False,
    ) -> pd.DataFrame:
        """Logged rows of `model_name`, oldest first, with their feedback as `__label` (None if none).

        Filters apply first (`since` <= __at <= `until`, `version`, `labelled_only`), then
        `last_rows` keeps the newest rows. Only the segments that can hold such rows are read.
        """
        import pandas as pd

        if last_rows is not None and last_rows < 0:
            raise InvalidInputError(f"last_rows must be >= 0, got {last_rows}")
        since, until = _aware(since, "since"), _aware(until, "until")
        parts: list[pa.Table] = []
        labels: dict[str, Any] = {}
        newest: list[np.ndarray] = []
        threshold: int | None = None  # __at (ms) of the last_rows-th newest row read so far
        for seg in self._meta.predictions.segments(model_name, version=version, since=since, until=until, newest_first=True):
            if last_rows is not None and threshold is not None and _ms(seg.last_at) < threshold:
                break  # every row still unread is older than the newest last_rows already in hand
            table = self._read(seg)
            table = _between(table, since, until)
            found = self._meta.predictions.feedback(model_name, table.column("__id").to_pylist())
            labels.update(found)
            if labelled_only:
                table = table.filter(pc.is_in(table.column("__id"), value_set=pa.array(list(found), pa.string())))
            if table.num_rows == 0:
                continue
            parts.append(table)
            if last_rows is not None:
                newest.append(table.column("__at").cast(pa.int64()).to_numpy())
                stamps = np.concatenate(newest)
                if len(stamps) >= last_rows > 0:
                    threshold = int(np.partition(stamps, len(stamps) - last_rows)[len(stamps) - last_rows])
                elif last_rows == 0:
                    break
        frame = _concat(parts[::-1])  # oldest segment first; a stable sort keeps each request's row order
        if len(frame):
            frame = frame.sort_values("__at", kind="stable", ignore_index=True)
        if last_rows is not None:
            frame = frame.iloc[len(frame) - min(last_rows, len(frame)) :].reset_index(drop=True)
        frame["__label"] = pd.Series([labels.get(i) for i in frame["__id"]], index=frame.index, dtype=object)
        return frame

    def _read(self, seg: PredictionSegment, columns: list[str] | None = None) -> pa.Table:
        table = read_parquet(self._blobs.get_bytes(seg.digest))
        return table.select(columns) if columns else table

    # -- feedback ------------------------------------------------------------------------------
    def feedback(self, model_name: str, items: Iterable[tuple[str, Any]] | Mapping[str, Any], *,
                 made_by: str | None = None) -> int:  # fmt: skip
        """Record true labels (or values) for logged predictions: {prediction_id: label} or pairs.

        All or nothing: any id that `model_name` never logged raises NotFoundError naming it, and
        nothing is stored. With `made_by` (what a server passes for a caller below the writer role),
        any id whose prediction was not logged with that `__by` raises AccessDeniedError naming it,
        and nothing is stored. A second label for an id replaces the first (corrections are
        allowed); within one call the last one wins. Returns how many labels were stored.
        """
        values = _feedback_values(items)
        if not values:
            return 0
        makers = self._makers(model_name, set(values))
        unknown = sorted(set(values) - set(makers))
        if unknown:
            raise NotFoundError(
                f"Model {model_name!r} has no logged prediction with id {_shown(unknown)}; no feedback was stored. "
                "Use the ids the predict endpoint returned; a server writes them to the log within seconds."
            )
        if made_by is not None:
            foreign = sorted(i for i in values if makers[i] != made_by)
            if foreign:
                raise AccessDeniedError(
                    f"Predictions {_shown(foreign)} of {model_name!r} were not made by token {made_by!r}; no feedback was "
                    "stored. A token may label the predictions it asked for; labelling others' needs the writer role."
                )
        stored = self._meta.predictions.save_feedback(model_name, values)
        logger.debug("feedback: %d labels for %s", stored, model_name)
        return stored

    def makers(self, model_name: str, ids: Iterable[str]) -> dict[str, str | None]:
        """{prediction id: who asked for it (the `__by` column; None when not recorded)} for those
        of `ids` that `model_name` logged."""
        return self._makers(model_name, set(ids))

    def _known_ids(self, model_name: str, wanted: set[str]) -> set[str]:
        return set(self._makers(model_name, wanted))

    def _makers(self, model_name: str, wanted: set[str]) -> dict[str, str | None]:
        """Who made each id of `wanted` that is in the log. Keel ids carry their time, so only the
        segments spanning those times are read; any other id means reading every segment of the model."""
        times = {i: prediction_id_time(i) for i in wanted}
        timed = sorted({t for t in times.values() if t is not None})
        untimed = any(t is None for t in times.values())
        if untimed:
            segs = self._meta.predictions.segments(model_name)
        elif timed:
            since = _EPOCH + timed[0] * _MS
            until = _EPOCH + timed[-1] * _MS
            segs = [s for s in self._meta.predictions.segments(model_name, since=since, until=until)
                    if _spans_any(timed, _ms(s.first_at), _ms(s.last_at))]  # fmt: skip
        else:
            segs = []
        known: dict[str, str | None] = {}
        for seg in segs:
            table = self._read(seg)
            ids = table.column("__id").to_pylist()
            by = table.column("__by").to_pylist() if "__by" in table.column_names else [None] * len(ids)
            known.update((i, b) for i, b in zip(ids, by, strict=True) if i in wanted)
            if len(known) == len(wanted):
                break
        return known

    # -- retention and compaction --------------------------------------------------------------
    def apply_retention(self, older_than_days: float | None = None) -> int:
        """Delete segments whose rows are all older than `older_than_days` (default: the
        `predlog_retention_days` setting; 0 there keeps everything); return how many.

        Their blobs are then unreferenced, and `ws.gc()` removes them. Feedback received before
        the cutoff goes too.
        """
        days = self.retention_days if older_than_days is None else older_than_days
        if older_than_days is None and days == 0:
            return 0
        if days < 0:
            raise InvalidInputError(f"older_than_days must be >= 0, got {days}")
        cutoff = datetime.now(UTC) - timedelta(days=days)
        gone = self._meta.predictions.delete_before(cutoff)
        if gone:
            logger.info("prediction log retention: deleted %d segments (%d rows) older than %s",
                        len(gone), sum(g.rows for g in gone), cutoff.isoformat(timespec="seconds"))  # fmt: skip
        return len(gone)

    def compact(self, model_name: str, *, target_rows: int = _COMPACT_ROWS) -> int:
        """Merge runs of small segments of one version and one UTC day (retention works by day)
        into segments of up to `target_rows` rows; return how many segments fewer there are.

        A server writes a segment every few seconds; reading a window reads far fewer after this.
        """
        removed = 0
        by_version: dict[int, list[PredictionSegment]] = {}
        for seg in self._meta.predictions.segments(model_name):
            by_version.setdefault(seg.model_version, []).append(seg)
        for version, segs in by_version.items():
            run: list[PredictionSegment] = []
            run_rows = 0
            for seg in sorted(segs, key=lambda s: (s.first_at, s.id)):
                fits = seg.rows < target_rows and run_rows + seg.rows <= target_rows
                if run and fits and run[-1].first_at.date() == seg.first_at.date():
                    run.append(seg)
                    run_rows += seg.rows
                    continue
                if len(run) > 1:
                    removed += self._merge(model_name, version, run)
                run, run_rows = ([seg], seg.rows) if seg.rows < target_rows else ([], 0)
            if len(run) > 1:
                removed += self._merge(model_name, version, run)
        return removed

    def _merge(self, model_name: str, version: int, run: list[PredictionSegment]) -> int:
        """Merge `run` into as few segments as their column types allow (refused requests' text
        inputs do not merge with served numbers); return how many segments fewer there are."""
        removed = 0
        group: list[tuple[PredictionSegment, pa.Table]] = []
        merged: pa.Table | None = None
        for seg in [*run, None]:
            table = self._read(seg) if seg is not None else None
            if table is not None and merged is not None:
                both = _merged(merged, table)
                if both is not None:
                    merged = both
                    group.append((seg, table))  # type: ignore[arg-type]
                    continue
            if len(group) > 1 and merged is not None:
                self._replace([g for g, _ in group], model_name, version, merged)
                removed += len(group) - 1
            group = [(seg, table)] if seg is not None and table is not None else []
            merged = table
        return removed

    def _replace(self, old: list[PredictionSegment], model_name: str, version: int, table: pa.Table) -> None:
        from keel.storage.predictions import PredictionSegment

        data = parquet_bytes(table.combine_chunks())
        digest = self._blobs.put_bytes(data)
        first, last = pc.min_max(table.column("__at")).values()
        new = PredictionSegment(0, model_name, version, first.as_py(), last.as_py(), table.num_rows, digest,
                                len(data), datetime.now(UTC))  # fmt: skip
        self._meta.predictions.replace_segments(old, new)

    def maintain(self) -> None:
        """Retention, then compaction of every model's log: what a server's logger runs now and then."""
        self.apply_retention()
        for name in self._meta.predictions.model_names():
            self.compact(name)

    # -- export --------------------------------------------------------------------------------
    def export(
        self,
        model_name: str,
        dataset_name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        version: int | None = None,
        labelled_only: bool = True,
        target: str | None = None,
    ) -> DatasetVersion:
        """Store a slice of the log as a new version of dataset `dataset_name`: the inputs of the
        served (not refused) rows, oldest first, and their label as column `target` (default '__label').

        The version's tags record where it came from (model, versions, window, rows), its
        description says it in words. Raises InvalidInputError when the slice is empty.
        """
        window = self.window(model_name, since=since, until=until, version=version, labelled_only=labelled_only)
        if "__error" in window.columns:
            window = window[window["__error"].isna()]
        if window.empty:
            what = "labelled predictions" if labelled_only else "served predictions"
            raise InvalidInputError(
                f"Model {model_name!r} has no {what} in the window {_span(since, until)}; nothing was exported. "
                + ("Send feedback first, or pass labelled_only=False." if labelled_only else "")
            )
        label = target or "__label"
        inputs = [c for c in window.columns if not c.startswith("__")]
        if label in inputs:
            raise InvalidInputError(f"target {label!r} is also an input column of {model_name!r}; choose another name")
        columns = {c: window[c].tolist() for c in inputs}
        columns[label] = window["__label"].tolist()
        table = pa.table({c: _plain_column(v) for c, v in columns.items()})
        start, end = window["__at"].min().to_pydatetime(), window["__at"].max().to_pydatetime()
        versions = ",".join(str(v) for v in sorted(set(window["__version"].tolist())))
        labelled = int(window["__label"].notna().sum())
        tags = {
            "source": "prediction_log",
            "model": model_name,
            "model_versions": versions,
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "rows": str(len(window)),
            "labelled_rows": str(labelled),
            "label_column": label,
        }
        description = (
            f"{len(window)} predictions served by {model_name} (version {versions}) from "
            f"{start.isoformat(timespec='seconds')} to {end.isoformat(timespec='seconds')}, {labelled} with "
            f"feedback; exported from the prediction log, label in column {label!r}."
        )
        result = self._datasets.add(dataset_name, table, description=description, tags=tags)
        logger.info("exported %d logged predictions of %s as %s", len(window), model_name, result.ref)
        return result


def _complete(table: pa.Table, version: int) -> pa.Table:
    """`table` with every log column present and typed; ids made from `__at` where missing."""
    n = table.num_rows
    if "__at" in table.column_names:
        at = table.column("__at")
        if pa.types.is_timestamp(at.type) and at.type.tz is None:
            at = at.cast(pa.timestamp(at.type.unit, tz="UTC"))
        at = at.cast(_AT_TYPE, safe=False)
    else:  # Keel ids carry their time: rows logged with ids but no times keep the ids' times
        now_ms = time.time_ns() // 1_000_000
        ids = table.column("__id").to_pylist() if "__id" in table.column_names else [None] * n
        stamps = [(prediction_id_time(str(i)) if i is not None else None) or now_ms for i in ids]
        at = pa.chunked_array([pa.array(stamps, pa.int64()).cast(_AT_TYPE)])
    if at.null_count:
        raise InvalidInputError("Column __at has missing times; every logged row needs one")
    columns = {"__at": at}
    if "__id" in table.column_names:
        columns["__id"] = table.column("__id").cast(pa.string())
    else:
        stamps = at.cast(pa.int64()).to_pylist()
        columns["__id"] = pa.chunked_array([pa.array([new_prediction_ids(1, s)[0][0] for s in stamps], pa.string())])
    columns["__version"] = pa.chunked_array([pa.array([version] * n, pa.int64())])
    for name, dtype in (("__latency_ms", pa.float64()), ("__error", pa.string())):
        columns[name] = table.column(name).cast(dtype) if name in table.column_names else pa.chunked_array([pa.nulls(n, dtype)])
    fields = [pa.field(c, columns[c].type) for c in META_COLUMNS]
    fields += [f for f in table.schema if f.name not in META_COLUMNS]  # with their JSON marking
    arrays = [columns[c] for c in META_COLUMNS] + [table.column(f.name) for f in fields[len(META_COLUMNS):]]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, got {type(value).__name__}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _between(table: pa.Table, since: datetime | None, until: datetime | None) -> pa.Table:
    if since is None and until is None:
        return table
    at = table.column("__at")
    mask = None
    if since is not None:
        mask = pc.greater_equal(at, pa.scalar(since, _AT_TYPE))
    if until is not None:
        upper = pc.less_equal(at, pa.scalar(until, _AT_TYPE))
        mask = upper if mask is None else pc.and_(mask, upper)
    return table.filter(mask)


def _concat(parts: list[pa.Table]) -> pd.DataFrame:
    """One DataFrame of the segments read: column types promoted where they differ; text and
    numbers (a refused request's inputs next to served ones) meet as objects."""
    import pandas as pd

    if not parts:
        return pd.DataFrame({"__id": pd.Series([], dtype=object), "__at": pd.Series([], dtype="datetime64[ms, UTC]"),
                             "__version": pd.Series([], dtype="int64"), "__latency_ms": pd.Series([], dtype=float),
                             "__error": pd.Series([], dtype=object)})  # fmt: skip
    if not any(_json_columns(t) for t in parts):
        try:
            return pa.concat_tables(parts, promote_options="permissive").to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    columns: dict[str, None] = {}
    for t in parts:
        columns.update(dict.fromkeys(t.column_names))
    frames = [_decoded(t).reindex(columns=list(columns)) for t in parts]
    frame = pd.DataFrame({c: [v for f in frames for v in f[c].tolist()] for c in columns})
    frame["__at"] = pd.to_datetime(frame["__at"], utc=True).astype("datetime64[ms, UTC]")
    return frame


def _decoded(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas().astype(object)
    for name in _json_columns(table):
        # From Arrow, not from the frame: pandas 3 reads a missing string as NaN, not None.
        frame[name] = [None if v is None else json.loads(v) for v in table.column(name).to_pylist()]
    return frame


def _merged(a: pa.Table, b: pa.Table) -> pa.Table | None:
    """`a` and `b` as one table, or None when a column's type (or its JSON marking) differs."""
    ja, jb = _json_columns(a), _json_columns(b)
    common = set(a.column_names) & set(b.column_names)
    if (ja ^ jb) & common:
        return None
    try:
        table = pa.concat_tables([a, b], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    marked = ja | jb
    schema = pa.schema([f.with_metadata({_JSON_KEY: b"1"}) if f.name in marked else f for f in table.schema])
    return table.cast(schema) if schema != table.schema or marked else table


def _spans_any(sorted_ms: list[int], first: int, last: int) -> bool:
    import bisect

    i = bisect.bisect_left(sorted_ms, first)
    return i < len(sorted_ms) and sorted_ms[i] <= last


def _feedback_values(items: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
    pairs = items.items() if isinstance(items, Mapping) else items
    out: dict[str, Any] = {}
    for pair in pairs:
        try:
            prediction_id, value = pair
        except (TypeError, ValueError):
            raise InvalidInputError(f"Feedback items are (prediction_id, label) pairs; got {pair!r}") from None
        if not isinstance(prediction_id, str) or not prediction_id:
            raise InvalidInputError(f"A prediction id is a non-empty string; got {prediction_id!r}")
        if len(prediction_id) > 32:
            raise InvalidInputError(f"Prediction ids have at most 32 characters; got {prediction_id[:40]!r}...")
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and value != value):
            raise InvalidInputError(f"The label for prediction {prediction_id} is missing; send a value")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidInputError(f"The label for prediction {prediction_id} is not a JSON value: {value!r}") from None
        out[prediction_id] = value
    return out


def _shown(ids: list[str]) -> str:
    return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def _span(since: datetime | None, until: datetime | None) -> str:
    return f"{since.isoformat() if since else 'start'} .. {until.isoformat() if until else 'now'}"
