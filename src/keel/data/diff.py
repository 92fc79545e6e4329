"""How two dataset versions differ: schema, row counts, and each shared column's distribution."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.data.distances import js_distance, psi
from keel.data.profile import is_numeric, json_float, numeric_values
from keel.entities import ColumnChange, DatasetDiff

__all__ = ["diff_tables"]


def _numeric_change(name: str, a: pa.ChunkedArray, b: pa.ChunkedArray) -> ColumnChange:
    va, vb = numeric_values(a), numeric_values(b)
    va, vb = va[np.isfinite(va)], vb[np.isfinite(vb)]
    if va.size == 0 or vb.size == 0:
        return ColumnChange(name, "numeric", "psi", float("nan"), {"note": "a side has no values"})
    # Decile bins of the first version, open at both ends, so every value of b lands in a bin.
    edges = np.unique(np.quantile(va, np.linspace(0, 1, 11)[1:-1]))
    ha = np.bincount(np.searchsorted(edges, va, side="right"), minlength=edges.size + 1)
    hb = np.bincount(np.searchsorted(edges, vb, side="right"), minlength=edges.size + 1)
    with np.errstate(over="ignore", invalid="ignore"):  # values near 1e308 overflow the sums
        mean_a, mean_b, std_a, std_b = va.mean(), vb.mean(), va.std(), vb.std()
        shift = (mean_b - mean_a) / (std_a or 1.0)
    return ColumnChange(
        name,
        "numeric",
        "psi",
        psi(ha.astype(float), hb.astype(float)),
        {
            "mean_a": json_float(mean_a),
            "mean_b": json_float(mean_b),
            "mean_shift_std": json_float(shift),
            "std_a": json_float(std_a),
            "std_b": json_float(std_b),
            "missing_a": a.null_count,
            "missing_b": b.null_count,
        },
    )


def _categorical_change(name: str, a: pa.ChunkedArray, b: pa.ChunkedArray) -> ColumnChange:
    def freqs(col: pa.ChunkedArray) -> dict[str, int]:
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, pa.string())
        vc = pc.value_counts(pc.cast(pc.drop_null(col), pa.string()))
        return dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))

    fa, fb = freqs(a), freqs(b)
    labels = sorted(set(fa) | set(fb))
    p = np.array([fa.get(k, 0) for k in labels], dtype=float)
    q = np.array([fb.get(k, 0) for k in labels], dtype=float)
    return ColumnChange(
        name,
        "categorical",
        "js_distance",
        js_distance(p, q),
        {
            "new_categories": sorted(set(fb) - set(fa))[:20],
            "missing_categories": sorted(set(fa) - set(fb))[:20],
            "missing_a": a.null_count,
            "missing_b": b.null_count,
        },
    )


# Physical variants of one logical type: pandas 3 writes `large_string` where object columns gave
# `string`, so a column that merely went through pandas is not reported as retyped.
_SAME_TYPE = {"large_string": "string", "string_view": "string", "large_binary": "binary", "binary_view": "binary"}


def _logical(type_name: str) -> str:
    return _SAME_TYPE.get(type_name, type_name)


def diff_tables(a_ref: str, a: pa.Table, b_ref: str, b: pa.Table) -> DatasetDiff:
    """How table `b` differs from table `a`: columns added, removed and retyped, row counts, and
    each shared column's distribution change (PSI over a's deciles, or Jensen-Shannon distance)."""
    names_a, names_b = a.column_names, b.column_names
    types_a = {n: str(a.schema.field(n).type) for n in names_a}
    types_b = {n: str(b.schema.field(n).type) for n in names_b}
    shared = [n for n in names_a if n in types_b]
    changes = []
    for n in shared:
        ta, tb = a.schema.field(n).type, b.schema.field(n).type
        if is_numeric(ta) and is_numeric(tb):
            changes.append(_numeric_change(n, a.column(n), b.column(n)))
        elif not pa.types.is_temporal(ta) and not pa.types.is_binary(ta):
            changes.append(_categorical_change(n, a.column(n), b.column(n)))
    return DatasetDiff(
        a=a_ref,
        b=b_ref,
        added_columns=tuple(n for n in names_b if n not in types_a),
        removed_columns=tuple(n for n in names_a if n not in types_b),
        type_changes=tuple((n, types_a[n], types_b[n]) for n in shared if _logical(types_a[n]) != _logical(types_b[n])),
        rows_a=a.num_rows,
        rows_b=b.num_rows,
        columns=tuple(changes),
    )
