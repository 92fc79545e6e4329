"""Schema and profile of a table: what a dataset version records about its columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["column_schema", "profile_table", "is_numeric", "HIST_BINS", "TOP_CATEGORIES"]

HIST_BINS = 20
TOP_CATEGORIES = 20
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _categories(col: pa.ChunkedArray) -> list[str] | None:
    if not pa.types.is_dictionary(col.type):
        return None
    cats: list[str] = []
    for chunk in col.chunks:
        for v in chunk.dictionary.to_pylist():
            s = str(v)
            if s not in cats:
                cats.append(s)
    return cats


def column_schema(table: pa.Table) -> list[dict[str, Any]]:
    out = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        entry: dict[str, Any] = {"name": name, "type": str(col.type), "nullable": col.null_count > 0}
        cats = _categories(col)
        if cats is not None:
            entry["categories"] = cats
        out.append(entry)
    return out


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def numeric_values(col: pa.ChunkedArray) -> np.ndarray:
    """The column's non-null values as float64."""
    arr = pc.drop_null(col)
    if pa.types.is_decimal(col.type):
        arr = pc.cast(arr, pa.float64())
    return np.asarray(arr.to_numpy() if isinstance(arr, pa.ChunkedArray) else arr, dtype=np.float64)


def profile_column(col: pa.ChunkedArray) -> dict[str, Any]:
    n = len(col)
    missing = col.null_count
    entry: dict[str, Any] = {"type": str(col.type), "count": n - missing, "missing": missing}
    t = col.type
    if is_numeric(t):
        values = numeric_values(col)
        finite = _finite(values)
        entry["kind"] = "numeric"
        nan_count = int(values.size - finite.size)
        if nan_count:
            entry["missing"] += nan_count
            entry["count"] -= nan_count
        if finite.size:
            entry.update(
                mean=float(finite.mean()),
                std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                min=float(finite.min()),
                max=float(finite.max()),
                quantiles={f"p{int(q * 100)}": float(v) for q, v in zip(_QUANTILES, np.quantile(finite, _QUANTILES))},
                distinct=int(np.unique(finite).size) if finite.size <= 1_000_000 else None,
            )
            lo, hi = float(finite.min()), float(finite.max())
            counts, edges = np.histogram(finite, bins=HIST_BINS, range=(lo, hi if hi > lo else lo + 1.0))
            entry["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
        return entry
    if pa.types.is_boolean(t):
        trues = int(pc.sum(col).as_py() or 0)
        entry.update(kind="boolean", true=trues, false=n - missing - trues)
        return entry
    if pa.types.is_temporal(t):
        entry["kind"] = "datetime"
        if n - missing:
            entry.update(min=str(pc.min(col).as_py()), max=str(pc.max(col).as_py()))
        return entry
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        values = col if not pa.types.is_dictionary(t) else pc.cast(col, pa.string())
        vc = pc.value_counts(pc.drop_null(values))
        counts = vc.field("counts").to_numpy()
        labels = vc.field("values").to_pylist()
        order = np.argsort(-counts, kind="stable")
        entry.update(
            kind="categorical",
            distinct=len(labels),
            top=[{"value": str(labels[i]), "count": int(counts[i])} for i in order[:TOP_CATEGORIES]],
        )
        return entry
    entry["kind"] = "other"
    return entry


def profile_table(table: pa.Table) -> dict[str, Any]:
    """Row count plus a per-column summary: statistics and histogram, or top categories."""
    return {
        "num_rows": table.num_rows,
        "num_columns": table.num_columns,
        "columns": {name: profile_column(col) for name, col in zip(table.column_names, table.columns, strict=True)},
    }
