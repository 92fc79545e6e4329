"""What the prediction log's writer is given, as log rows: a served request as an entry, with its ids
and time filled in (`PredictionLogger.log`), and a batch-scored chunk as a segment's table
(`PredictionLogger.write_frame`: the chunk's own columns beside the log's `__` columns)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from keel.data.tables import to_arrow
from keel.monitoring.columns import AT, BY, ERROR, ID, LATENCY_MS, PREDICTION, VERSION, proba_column
from keel.monitoring.predentries import (
    _AT_TYPE,
    _column,
    _Entry,
    _table,
    _tolist,
    new_prediction_ids,
    prediction_id_time,
)

__all__ = ["request_entry", "scored_table"]


def request_entry(
    model_name: str,
    version: int,
    records: Sequence[Mapping[str, Any]],
    predictions: Any,
    probabilities: Any,
    classes: Sequence[Any] | None,
    ids: Sequence[str] | None,
    latency_ms: float | None,
    error: str | None,
    at_ms: int | None,
    by: str | None,
) -> _Entry:
    """One request's entry: new ids (and time) when `ids` is None; else the time the first id
    carries, or now, when `at_ms` is None."""
    n = len(records)
    if ids is None:
        ids, at_ms = new_prediction_ids(n, at_ms)
    elif at_ms is None:
        at_ms = prediction_id_time(ids[0]) if n else None
        at_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    return _Entry(model_name, version, records, predictions, probabilities, classes, ids, at_ms, latency_ms, error, by)


def scored_table(
    frame: Any,
    version: int,
    *,
    predictions: Any,
    probabilities: Any = None,
    classes: Sequence[Any] | None = None,
    ids: Sequence[str],
    at_ms: int,
    latency_ms: float | None = None,
    by: str | None = None,
) -> pa.Table:
    """The segment rows of a scored DataFrame chunk: its inputs (columns not starting with '__'),
    the predictions, and the probabilities of `classes` when given."""
    n = len(frame)
    table = to_arrow(frame.reset_index(drop=True))
    columns: dict[str, Any] = {
        ID: pa.array(ids, pa.string()),
        AT: pa.array([at_ms] * n, _AT_TYPE),
        VERSION: pa.array([version] * n, pa.int64()),
        LATENCY_MS: pa.array([latency_ms] * n, pa.float64()),
        ERROR: pa.nulls(n, pa.string()),
    }
    if by is not None:
        columns[BY] = pa.array([by] * n, pa.string())
    columns.update({c: table.column(c) for c in table.column_names if not c.startswith("__")})
    columns[PREDICTION] = _column(_tolist(predictions))
    if probabilities is not None and classes:
        proba = np.asarray(probabilities, dtype=float)  # (rows, classes)
        columns.update({proba_column(c): pa.array(proba[:, j], pa.float64()) for j, c in enumerate(classes)})
    return _table(columns)
