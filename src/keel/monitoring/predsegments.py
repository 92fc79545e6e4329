"""The prediction log's segments as Arrow tables: completing a written frame with the log's columns,
filtering by time, reading several segments as one DataFrame, merging segments, and planning
which segments a compaction merges. No storage: `PredictionLog` (predlog.py) reads and writes
the blobs and the index. The columns are described in predlog.py's docstring.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from keel.errors import InvalidInputError
from keel.monitoring.columns import AT, ERROR, ID, LATENCY_MS, META_COLUMNS, VERSION
from keel.monitoring.predentries import _AT_TYPE, _JSON_KEY, _json_columns, new_prediction_ids, prediction_id_time

if TYPE_CHECKING:
    import pandas as pd

    from keel.storage.predictions import PredictionSegment

__all__ = ["compaction_runs", "complete_table", "concat_segments", "merged_segments", "rows_between", "spans_any"]


def complete_table(table: pa.Table, version: int) -> pa.Table:
    """`table` with every log column present and typed; ids made from `__at` where missing."""
    n = table.num_rows
    if AT in table.column_names:
        at = table.column(AT)
        if pa.types.is_timestamp(at.type) and at.type.tz is None:
            at = at.cast(pa.timestamp(at.type.unit, tz="UTC"))
        at = at.cast(_AT_TYPE, safe=False)
    else:  # Keel ids carry their time: rows logged with ids but no times keep the ids' times
        now_ms = time.time_ns() // 1_000_000
        ids = table.column(ID).to_pylist() if ID in table.column_names else [None] * n
        stamps = [(prediction_id_time(str(i)) if i is not None else None) or now_ms for i in ids]
        at = pa.chunked_array([pa.array(stamps, pa.int64()).cast(_AT_TYPE)])
    if at.null_count:
        raise InvalidInputError("Column __at has missing times; every logged row needs one")
    columns = {AT: at}
    if ID in table.column_names:
        columns[ID] = table.column(ID).cast(pa.string())
    else:
        stamps = at.cast(pa.int64()).to_pylist()
        columns[ID] = pa.chunked_array([pa.array([new_prediction_ids(1, s)[0][0] for s in stamps], pa.string())])
    columns[VERSION] = pa.chunked_array([pa.array([version] * n, pa.int64())])
    for name, dtype in ((LATENCY_MS, pa.float64()), (ERROR, pa.string())):
        columns[name] = (
            table.column(name).cast(dtype) if name in table.column_names else pa.chunked_array([pa.nulls(n, dtype)])
        )
    fields = [pa.field(c, columns[c].type) for c in META_COLUMNS]
    fields += [f for f in table.schema if f.name not in META_COLUMNS]  # with their JSON marking
    arrays = [columns[c] for c in META_COLUMNS] + [table.column(f.name) for f in fields[len(META_COLUMNS) :]]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def rows_between(table: pa.Table, since: datetime | None, until: datetime | None) -> pa.Table:
    if since is None and until is None:
        return table
    at = table.column(AT)
    mask = None
    if since is not None:
        mask = pc.greater_equal(at, pa.scalar(since, _AT_TYPE))
    if until is not None:
        upper = pc.less_equal(at, pa.scalar(until, _AT_TYPE))
        mask = upper if mask is None else pc.and_(mask, upper)
    return table.filter(mask)


def concat_segments(parts: list[pa.Table]) -> pd.DataFrame:
    """One DataFrame of the segments read: column types promoted where they differ; text and
    numbers (a refused request's inputs next to served ones) meet as objects."""
    import pandas as pd

    if not parts:
        return pd.DataFrame(
            {
                ID: pd.Series([], dtype=object),
                AT: pd.Series([], dtype="datetime64[ms, UTC]"),
                VERSION: pd.Series([], dtype="int64"),
                LATENCY_MS: pd.Series([], dtype=float),
                ERROR: pd.Series([], dtype=object),
            }
        )
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
    frame[AT] = pd.to_datetime(frame[AT], utc=True).astype("datetime64[ms, UTC]")
    return frame


def _decoded(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas().astype(object)
    for name in _json_columns(table):
        # From Arrow, not from the frame: pandas 3 reads a missing string as NaN, not None.
        frame[name] = [None if v is None else json.loads(v) for v in table.column(name).to_pylist()]
    return frame


def merged_segments(a: pa.Table, b: pa.Table) -> pa.Table | None:
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


def compaction_runs(segments: list[PredictionSegment], target_rows: int) -> list[tuple[int, list[PredictionSegment]]]:
    """The runs of small segments that a compaction merges, as (version, segments): consecutive
    segments of one version and one UTC day (retention works by day), up to `target_rows` rows."""
    runs: list[tuple[int, list[PredictionSegment]]] = []
    by_version: dict[int, list[PredictionSegment]] = {}
    for seg in segments:
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
                runs.append((version, run))
            run, run_rows = ([seg], seg.rows) if seg.rows < target_rows else ([], 0)
        if len(run) > 1:
            runs.append((version, run))
    return runs


def spans_any(sorted_ms: list[int], first: int, last: int) -> bool:
    """Whether any of the sorted times `sorted_ms` lies in [first, last] (a segment's span)."""
    import bisect

    i = bisect.bisect_left(sorted_ms, first)
    return i < len(sorted_ms) and sorted_ms[i] <= last
