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

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.data.tables import parquet_bytes, read_parquet, to_arrow
from keel.errors import AccessDeniedError, InvalidInputError, NotFoundError, StoreUnavailableError
from keel.monitoring.columns import AT, BY, ID, LABEL
from keel.monitoring.predbuffer import PredictionLogger, PredictionSink  # noqa: F401 - the writer, re-exported
from keel.monitoring.predentries import (  # noqa: F401 - ids re-exported
    _COMPACT_ROWS,
    _EPOCH,
    _MS,
    _decode,
    _groups,
    _ms,
    entries_table,
    new_prediction_ids,
    prediction_id_time,
)
from keel.monitoring.predexport import export_window
from keel.monitoring.predfeedback import feedback_values, shown_ids
from keel.monitoring.predsegments import compaction_runs, complete_table, concat_segments, merged_segments, rows_between
from keel.monitoring.predsegments import spans_any as _spans_any
from keel.monitoring.predwal import PredictionWal, orphans
from keel.refs import check_name

if TYPE_CHECKING:
    import pandas as pd

    from keel.data import Datasets
    from keel.entities import DatasetVersion
    from keel.monitoring.predsummaries import SummaryWindow
    from keel.monitoring.windowsummary import SummaryPlan
    from keel.storage import BlobStore, MetadataStore
    from keel.storage.predictions import PredictionSegment


logger = logging.getLogger(__name__)
__all__ = ["PredictionLog", "PredictionLogger", "PredictionSink", "new_prediction_ids", "prediction_id_time"]


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
        # (model, version) -> the profiles a segment's summary is taken against, or None (set by
        # Monitoring: keel.monitoring.windowsummary). Checks merge summaries instead of reading rows.
        self.summary_plan: Callable[[str, int], SummaryPlan | None] | None = None

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
                    logger.exception(
                        "prediction log: the rows of %s cannot be written; kept as %s.failed", path, path.name
                    )
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
                table = table.filter(
                    pc.invert(pc.is_in(table.column(ID), value_set=pa.array(sorted(known), pa.string())))
                )
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
        table = complete_table(table, version)
        first, last = pc.min_max(table.column(AT)).values()
        data = parquet_bytes(table)
        digest = self._blobs.put_bytes(data)
        segment = self._meta.predictions.add_segment(
            model_name=model_name,
            model_version=version,
            first_at=first.as_py(),
            last_at=last.as_py(),
            rows=table.num_rows,
            digest=digest,
            size_bytes=len(data),
        )
        if self.summary_plan is not None:
            from keel.monitoring.predsummaries import store_summary

            store_summary(self, segment, table)
        return segment

    def window_summary(
        self,
        model_name: str,
        plan: SummaryPlan,
        *,
        last_rows: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        version: int | None = None,
    ) -> SummaryWindow | None:
        """The window `window()` would give, as one summary against `plan` (see
        keel.monitoring.predsummaries), or None where the rows must be read."""
        from keel.monitoring.predsummaries import window_summary

        since, until = _aware(since, "since"), _aware(until, "until")
        return window_summary(self, model_name, plan, since=since, until=until, last_rows=last_rows, version=version)

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
        for seg in self._meta.predictions.segments(
            model_name, version=version, since=since, until=until, newest_first=True
        ):
            if last_rows is not None and threshold is not None and _ms(seg.last_at) < threshold:
                break  # every row still unread is older than the newest last_rows already in hand
            table = self._read(seg)
            table = rows_between(table, since, until)
            found = self._meta.predictions.feedback(model_name, table.column(ID).to_pylist())
            labels.update(found)
            if labelled_only:
                table = table.filter(pc.is_in(table.column(ID), value_set=pa.array(list(found), pa.string())))
            if table.num_rows == 0:
                continue
            parts.append(table)
            if last_rows is not None:
                newest.append(table.column(AT).cast(pa.int64()).to_numpy())
                stamps = np.concatenate(newest)
                if len(stamps) >= last_rows > 0:
                    threshold = int(np.partition(stamps, len(stamps) - last_rows)[len(stamps) - last_rows])
                elif last_rows == 0:
                    break
        frame = concat_segments(parts[::-1])  # oldest segment first; a stable sort keeps each request's row order
        if len(frame):
            frame = frame.sort_values(AT, kind="stable", ignore_index=True)
        if last_rows is not None:
            frame = frame.iloc[len(frame) - min(last_rows, len(frame)) :].reset_index(drop=True)
        frame[LABEL] = pd.Series([labels.get(i) for i in frame[ID]], index=frame.index, dtype=object)
        return frame

    def _read(self, seg: PredictionSegment, columns: list[str] | None = None) -> pa.Table:
        table = read_parquet(self._blobs.get_bytes(seg.digest))
        return table.select(columns) if columns else table

    # -- feedback ------------------------------------------------------------------------------
    def feedback(
        self, model_name: str, items: Iterable[tuple[str, Any]] | Mapping[str, Any], *, made_by: str | None = None
    ) -> int:
        """Record true labels (or values) for logged predictions: {prediction_id: label} or pairs.

        All or nothing: any id that `model_name` never logged raises NotFoundError naming it, and
        nothing is stored. With `made_by` (what a server passes for a caller below the writer role),
        any id whose prediction was not logged with that `__by` raises AccessDeniedError naming it,
        and nothing is stored. A second label for an id replaces the first (corrections are
        allowed); within one call the last one wins. Returns how many labels were stored.
        """
        values = feedback_values(items)
        if not values:
            return 0
        makers = self._makers(model_name, set(values))
        unknown = sorted(set(values) - set(makers))
        if unknown:
            raise NotFoundError(
                f"Model {model_name!r} has no logged prediction with id {shown_ids(unknown)}; no feedback was stored. "
                "Use the ids the predict endpoint returned; a server writes them to the log within seconds."
            )
        if made_by is not None:
            foreign = sorted(i for i in values if makers[i] != made_by)
            if foreign:
                raise AccessDeniedError(
                    f"Predictions {shown_ids(foreign)} of {model_name!r} were not made by token {made_by!r}; no feedback was "
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
            segs = [
                s
                for s in self._meta.predictions.segments(model_name, since=since, until=until)
                if _spans_any(timed, _ms(s.first_at), _ms(s.last_at))
            ]
        else:
            segs = []
        known: dict[str, str | None] = {}
        for seg in segs:
            table = self._read(seg)
            ids = table.column(ID).to_pylist()
            by = table.column(BY).to_pylist() if BY in table.column_names else [None] * len(ids)
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
            logger.info(
                "prediction log retention: deleted %d segments (%d rows) older than %s",
                len(gone),
                sum(g.rows for g in gone),
                cutoff.isoformat(timespec="seconds"),
            )
        return len(gone)

    def compact(self, model_name: str, *, target_rows: int = _COMPACT_ROWS) -> int:
        """Merge runs of small segments of one version and one UTC day (retention works by day)
        into segments of up to `target_rows` rows; return how many segments fewer there are.

        A server writes a segment every few seconds; reading a window reads far fewer after this.
        """
        removed = 0
        for version, run in compaction_runs(self._meta.predictions.segments(model_name), target_rows):
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
                both = merged_segments(merged, table)
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
        first, last = pc.min_max(table.column(AT)).values()
        new = PredictionSegment(
            0, model_name, version, first.as_py(), last.as_py(), table.num_rows, digest, len(data), datetime.now(UTC)
        )
        from keel.monitoring.predsummaries import merged_summary

        summary = merged_summary(self, old, model_name, version)  # read before the old ones go
        merged = self._meta.predictions.replace_segments(old, new)
        if summary is not None:
            self._meta.predictions.add_summary(merged.id, *summary)

    def maintain(self) -> None:
        """Retention, then compaction of every model's log: what a server's logger runs now and then.
        Under a lease in the store: of several processes sharing the log, one does it at a time (two
        compacting the same segments at once would each write the merged rows)."""
        with self._meta.leases.held("predlog-maintenance", ttl_s=60) as held:
            if not held:
                return
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
        return export_window(
            self._datasets,
            window,
            model_name,
            dataset_name,
            since=since,
            until=until,
            labelled_only=labelled_only,
            target=target,
        )


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what} must be a datetime, got {type(value).__name__}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
