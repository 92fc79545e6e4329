"""What the prediction log's writer hands its sink: prediction ids, and requests as entries.

A prediction id is 12 hex digits of the request time (ms since the epoch) and 20 random ones, so an
id tells when it was made and ids sort by time. An `_Entry` is one request as the server gave it;
`entries_table` turns a batch of them into one Arrow table per (model, version) with the log's
columns (keel.monitoring.columns), and `_encode`/`_decode` are its form in the write-ahead file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from keel.monitoring.columns import AT, BY, ERROR, ID, LATENCY_MS, PREDICTION, VERSION, proba_column

__all__ = ["new_prediction_ids", "prediction_id_time", "entries_table"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_MS = timedelta(milliseconds=1)


_EARLIEST_ID_MS = 1_577_836_800_000  # 2020-01-01: older "times" mean the id is not one of ours


_AT_TYPE = pa.timestamp("ms", tz="UTC")


_COMPACT_ROWS = 50_000  # segments are merged up to this many rows


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


def _encode(entry: _Entry) -> bytes:
    """One request as a write-ahead record: JSON of its fields (arrays as lists)."""
    doc = {
        "m": entry.model_name,
        "v": entry.version,
        "r": list(entry.records),
        "i": list(entry.ids),
        "t": entry.at_ms,
        "l": entry.latency_ms,
        "e": entry.error,
        "b": entry.by,
        "p": None if entry.predictions is None else _tolist(entry.predictions),
        "q": None if entry.probabilities is None else np.asarray(entry.probabilities, dtype=float).tolist(),
        "c": None if entry.classes is None else _tolist(entry.classes),
    }
    try:
        import orjson
    except ImportError:  # pragma: no cover - the server extra brings orjson
        return json.dumps(doc, default=_json_default).encode()
    return orjson.dumps(doc, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _decode(payload: bytes) -> _Entry:
    doc = json.loads(payload)
    return _Entry(
        doc["m"],
        int(doc["v"]),
        doc["r"],
        doc["p"],
        doc["q"],
        doc["c"],
        doc["i"],
        int(doc["t"]),
        doc["l"],
        doc["e"],
        doc.get("b"),
    )


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
        ID: pa.array(ids, pa.string()),
        AT: pa.array(at, _AT_TYPE),
        VERSION: pa.array([e.version for e in entries for _ in e.records], pa.int64()),
        LATENCY_MS: pa.array(latency, pa.float64()),
        ERROR: pa.array(errors, pa.string()),
    }
    if any(e.by is not None for e in entries):  # who asked: feedback from below the writer role must match
        columns[BY] = pa.array([e.by for e in entries for _ in e.records], pa.string())
    for name in inputs:
        if not isinstance(name, str) or name.startswith("__"):
            continue  # the log's own namespace; such inputs are refused by any signature anyway
        columns[name] = _column([r.get(name) for e in entries for r in e.records])
    if any(e.predictions is not None for e in entries):
        preds: list[Any] = []
        for e in entries:
            preds.extend(_tolist(e.predictions) if e.predictions is not None else [None] * len(e.records))
        columns[PREDICTION] = _column(preds)
    classes = next((list(e.classes) for e in entries if e.probabilities is not None and e.classes), None)
    if classes is not None:
        blocks = [
            np.asarray(e.probabilities, dtype=float)
            if e.probabilities is not None
            else np.full((len(e.records), len(classes)), np.nan)
            for e in entries
        ]
        proba = np.vstack(blocks) if blocks else np.empty((0, len(classes)))  # (rows, classes)
        for j, c in enumerate(classes):
            columns[proba_column(c)] = pa.array(proba[:, j], pa.float64(), from_pandas=True)
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
