"""Schema and profile of a table: what a dataset version records about its columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "column_schema",
    "profile_table",
    "profile_column",
    "is_numeric",
    "numeric_values",
    "json_float",
    "HIST_BINS",
    "TOP_CATEGORIES",
]

HIST_BINS = 20
TOP_CATEGORIES = 20
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _categories(col: pa.ChunkedArray) -> list[str] | None:
    if not pa.types.is_dictionary(col.type):
        return None
    cats: dict[str, None] = {}  # ordered and de-duplicated: chunks may repeat a dictionary
    for chunk in col.chunks:
        cats.update(dict.fromkeys(str(v) for v in chunk.dictionary.to_pylist()))
    return list(cats)


def column_schema(table: pa.Table) -> list[dict[str, Any]]:
    out = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        entry: dict[str, Any] = {"name": name, "type": str(col.type), "nullable": col.null_count > 0}
        cats = _categories(col)
        if cats is not None:
            entry["categories"] = cats
        out.append(entry)
    return out


def numeric_values(col: pa.ChunkedArray) -> np.ndarray:
    """The column's non-null values as float64."""
    arr = pc.drop_null(col)
    if pa.types.is_decimal(col.type):
        arr = pc.cast(arr, pa.float64())
    return np.asarray(arr.to_numpy() if isinstance(arr, pa.ChunkedArray) else arr, dtype=np.float64)


def json_float(value: float) -> float | None:
    """`value`, or None where JSON (and PostgreSQL's JSON type) has no number for it."""
    return float(value) if np.isfinite(value) else None


def profile_column(col: pa.ChunkedArray) -> dict[str, Any]:
    n = len(col)
    missing = col.null_count
    entry: dict[str, Any] = {"type": str(col.type), "count": n - missing, "missing": missing}
    t = col.type
    if is_numeric(t):
        values = numeric_values(col)
        finite = values[np.isfinite(values)]
        entry["kind"] = "numeric"
        nan_count = int(np.isnan(values).sum())  # pandas' missing marker for floats
        entry["missing"] += nan_count
        entry["count"] -= nan_count
        infinite = int(values.size - nan_count - finite.size)
        if infinite:
            entry["infinite"] = infinite
        if finite.size:
            with np.errstate(over="ignore", invalid="ignore"):  # values near 1e308 overflow sums and spans
                mean = finite.mean()
                std = finite.std(ddof=1) if finite.size > 1 else 0.0
                quantiles = np.quantile(finite, _QUANTILES)
            lo, hi = float(finite.min()), float(finite.max())
            entry.update(
                mean=json_float(mean),
                std=json_float(std),
                min=lo,
                max=hi,
                quantiles={f"p{round(q * 100)}": json_float(v) for q, v in zip(_QUANTILES, quantiles, strict=True)},
                distinct=int(np.unique(finite).size) if finite.size <= 1_000_000 else None,
            )
            if np.isfinite(hi - lo):
                counts, edges = np.histogram(finite, bins=HIST_BINS, range=(lo, hi if hi > lo else lo + 1.0))
                entry["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
        return entry
    if pa.types.is_boolean(t):
        trues = int(pc.sum(col).as_py() or 0)
        entry.update(kind="boolean", true=trues, false=n - missing - trues)
        return entry
    if pa.types.is_temporal(t):
        entry["kind"] = "duration" if pa.types.is_duration(t) else "datetime"
        if n - missing:
            # Arrow has no min/max kernel for durations: take them over the integer ticks.
            ticks = col.cast(pa.int64()) if pa.types.is_duration(t) else col
            bounds = pc.min_max(ticks)
            lo, hi = (pa.scalar(bounds[k].as_py(), type=t) for k in ("min", "max"))
            entry.update(min=str(lo.as_py()), max=str(hi.as_py()))
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
