"""A window of the prediction log as one merged summary (keel.monitoring.windowsummary): what a
monitor check reads instead of the window's rows. `PredictionLog.window_summary` calls this.

    window_summary(log, model, plan, since=, until=, last_rows=, version=) -> SummaryWindow | None

Segments wholly inside the window contribute their stored summary; one without a summary for the
plan (logged before the monitor's profiles existed, or against other ones) is read once,
summarized and its summary stored, so the next check finds it. The rows of segments a window
boundary cuts are read (a boundary inside a segment needs its rows' times; a server writes a
segment every few seconds, so only a few seconds of rows are read), and so are those of segments
whose column types depend on the rest of the window (JSON-marked, text in a numeric feature):
those rows are read together as `window()` reads them and summarized as one part.

By count (`last_rows`), whole segments are taken newest first while they fit; the rest comes from
the older rows, read. That is the window's newest rows only when no older segment reaches into
the time of the segments taken (several servers writing at once can interleave): otherwise, and
when anything cannot be summarized, this returns None and the check reads the window's rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from keel.monitoring.columns import AT, ERROR, ID, LABEL, PREDICTION, PROBA_PREFIX
from keel.monitoring.predsegments import concat_segments, rows_between
from keel.monitoring.windowsummary import SummaryPlan, WindowSummary, clean_for, decode, encode, merge, summarize

if TYPE_CHECKING:
    from keel.monitoring.predlog import PredictionLog
    from keel.storage.predictions import PredictionSegment

logger = logging.getLogger("keel.monitoring.predlog")

__all__ = ["SummaryWindow", "merged_summary", "segment_summary", "store_summary", "window_summary"]


@dataclass(frozen=True)
class SummaryWindow:
    """A window as its merged summary, its labelled served rows, its span, and how it was made:
    segments whose stored summary was used, and segments whose rows were read."""

    summary: WindowSummary
    labelled: pd.DataFrame
    start: datetime | None
    end: datetime | None
    summarized: int
    read: int


def segment_summary(table: pa.Table, plan: SummaryPlan) -> bytes | None:
    """The stored form of a segment's summary, or None when its column types need the rest of
    its window (the segment's rows are then read by checks)."""
    if not clean_for(table, plan):
        return None
    wanted = [c for c in table.column_names if c in plan.features or c == ERROR or _output(c, plan)]
    return encode(summarize(table.select(wanted).to_pandas(), plan), plan)


def store_summary(log: PredictionLog, segment: PredictionSegment, table: pa.Table) -> None:
    """Store a new `segment`'s summary for its version's monitor, when there is one. A summary
    that fails costs only speed: checks read the segment's rows instead."""
    try:
        plan = log.summary_plan(segment.model_name, segment.model_version) if log.summary_plan else None
        data = segment_summary(table, plan) if plan is not None else None
        if plan is not None and data is not None:
            log._meta.predictions.add_summary(segment.id, plan.key, log._blobs.put_bytes(data))
    except Exception:  # the rows are stored; a check reads them instead
        logger.warning("summary of prediction segment %d not stored", segment.id, exc_info=True)


def merged_summary(
    log: PredictionLog, old: list[PredictionSegment], model: str, version: int
) -> tuple[str, str] | None:
    """(plan key, blob digest) of the summary of a compacted segment, merged from those of the
    `old` segments it replaces (counts add up), when they all have one for the version's plan;
    else None, and the next check summarizes it from its rows."""
    try:
        plan = log.summary_plan(model, version) if log.summary_plan else None
        if plan is None:
            return None
        stored = log._meta.predictions.summaries([o.id for o in old], plan.key)
        parts = [decode(log._blobs.get_bytes(stored[o.id]), plan) for o in old if o.id in stored]
        kept = [p for p in parts if p is not None]
        if len(kept) < len(old):
            return None
        return plan.key, log._blobs.put_bytes(encode(merge(kept, plan), plan))
    except Exception:  # the merged rows are stored; a check summarizes them
        logger.warning("summary of a compacted prediction segment of %s@%s not made", model, version, exc_info=True)
        return None


def _output(column: str, plan: SummaryPlan) -> bool:
    return plan.outputs is not None and column in plan.outputs.columns


def window_summary(
    log: PredictionLog,
    model: str,
    plan: SummaryPlan,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    last_rows: int | None = None,
    version: int | None = None,
) -> SummaryWindow | None:
    segs = log._meta.predictions.segments(model, version=version, since=since, until=until)
    if last_rows is None:
        whole = [s for s in segs if (since is None or s.first_at >= since) and (until is None or s.last_at <= until)]
        whole_ids = {s.id for s in whole}
        cut = [rows_between(log._read(s), since, until) for s in segs if s.id not in whole_ids]
        return _assemble(log, model, plan, whole, cut, None)
    if since is not None:
        return None  # by count and by time at once: a monitor asks for one or the other
    whole, total = [], 0
    for seg in reversed(segs):  # newest first
        if (until is not None and seg.last_at > until) or total + seg.rows > last_rows:
            break
        whole.append(seg)
        total += seg.rows
    if not whole:
        return None  # the newest segment alone is larger than the window: its rows are read anyway
    older = segs[: len(segs) - len(whole)]
    first = min(w.first_at for w in whole)
    if any(s.last_at >= first for s in older):
        return None  # an older segment reaches into the newest ones' time: rows interleave
    rest = None
    if older and total < last_rows:
        # Every older row is before `first`: the window's remaining rows are the newest of them.
        bound = first - timedelta(milliseconds=1)
        rest = log.window(model, last_rows=last_rows - total, until=bound, version=version)
    return _assemble(log, model, plan, whole, [], rest)


def _assemble(
    log: PredictionLog,
    model: str,
    plan: SummaryPlan,
    whole: list[PredictionSegment],
    cut: list[pa.Table],
    rest: pd.DataFrame | None,
) -> SummaryWindow | None:
    """Merge the stored summaries of `whole` segments (summarizing and storing missing ones) with
    a summary of the rows read: the `cut` segments' rows in the window, segments that cannot be
    summarized alone, and `rest` (rows read by count)."""
    from keel.monitoring.check import _flat

    store = log._meta.predictions
    stored = store.summaries([s.id for s in whole], plan.key)
    parts: list[WindowSummary] = []
    unclean: list[pa.Table] = []
    read = 0
    labelled_segs: list[PredictionSegment] = []
    for seg in whole:
        found = decode(log._blobs.get_bytes(stored[seg.id]), plan) if seg.id in stored else None
        if found is None:
            table = log._read(seg)
            read += 1
            data = segment_summary(table, plan)
            if data is None:
                unclean.append(table)
                continue
            store.add_summary(seg.id, plan.key, log._blobs.put_bytes(data))
            found = decode(data, plan)
            assert found is not None
        parts.append(found)
        labelled_segs.append(seg)
    if rest is not None and len(rest) and unclean:
        return None  # two frames whose column types were promoted apart: the check reads the rows
    frames = [f for f in (rest, _with_labels(log, model, cut + unclean)) if f is not None and len(f)]
    if frames:
        rows = _flat(frames[0], list(plan.features))
        try:
            parts.append(summarize(rows, plan))
        except Exception:  # a cell the statistics cannot read: the check reads the rows and says which
            return None
    labelled = [_labelled_rows(log, model, labelled_segs)] + [_served_labelled(f) for f in frames]
    starts = [s.first_at for s in labelled_segs] + [t for f in frames if (t := _ts(f[AT].min())) is not None]
    ends = [s.last_at for s in labelled_segs] + [t for f in frames if (t := _ts(f[AT].max())) is not None]
    return SummaryWindow(
        summary=merge(parts, plan),
        labelled=pd.concat([x for x in labelled if len(x)] or labelled[:1], ignore_index=True),
        start=min(starts) if starts else None,
        end=max(ends) if ends else None,
        summarized=len(labelled_segs),
        read=read + len(cut),
    )


def _with_labels(log: PredictionLog, model: str, tables: list[pa.Table]) -> pd.DataFrame | None:
    """Rows of `tables` as `window()` gives them: one frame, by time, with `__label`."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    frame = concat_segments(tables).sort_values(AT, kind="stable", ignore_index=True)
    labels = log._meta.predictions.feedback(model, frame[ID].tolist())
    frame[LABEL] = pd.Series([labels.get(i) for i in frame[ID]], index=frame.index, dtype=object)
    return frame


def _labelled_rows(log: PredictionLog, model: str, segs: list[PredictionSegment]) -> pd.DataFrame:
    """The served rows of `segs` with feedback: their ids, outputs and `__label` only."""
    empty = pd.DataFrame({ID: pd.Series([], dtype=object), LABEL: pd.Series([], dtype=object)})
    if not segs or not log._meta.predictions.feedback_count(model):
        return empty
    frames = []
    for seg in segs:
        table = log._read(seg)
        keep = [c for c in table.column_names if c in (ID, ERROR, PREDICTION) or c.startswith(PROBA_PREFIX)]
        frame = table.select(keep).to_pandas()
        labels = log._meta.predictions.feedback(model, frame[ID].tolist())
        if labels:
            frame[LABEL] = pd.Series([labels.get(i) for i in frame[ID]], index=frame.index, dtype=object)
            frames.append(_served_labelled(frame))
    return pd.concat(frames, ignore_index=True) if frames else empty


def _served_labelled(frame: pd.DataFrame) -> pd.DataFrame:
    served = frame[frame[ERROR].isna()] if ERROR in frame.columns else frame
    return served[served[LABEL].notna()]


def _ts(value: object) -> datetime | None:
    from keel.monitoring.check import _ts as ts

    return ts(value)
