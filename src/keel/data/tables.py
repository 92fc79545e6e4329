"""Tables in and out: sources as Arrow, Arrow as Parquet bytes and back, Arrow as pandas, all exact.

Parquet alone loses some Arrow types: a dictionary (pandas categorical) of numbers comes back as
plain numbers, string dictionaries come back with `string` values whatever they were written with.
`parquet_bytes` therefore also stores the Arrow schema and every column's dictionary in the file's
key-value metadata, and `read_parquet` puts them back. pandas 3 reads every Arrow string column
as its `str` dtype; `to_pandas` gives `object` columns back to frames that had them.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["to_arrow", "parquet_bytes", "read_parquet", "to_pandas", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
_SCHEMA_KEY = b"keel.arrow_schema"
_DICTIONARIES_KEY = b"keel.dictionaries"
_OBJECT_NAN_KEY = b"keel.object_nan_columns"  # object columns whose missing values were NaN, not None


def to_arrow(source: Any) -> pa.Table:
    """A pandas DataFrame, Arrow table, or CSV/TSV/Parquet path as an Arrow table.

    Raises InvalidInputError for other sources, unreadable files and duplicate column names,
    NotFoundError for a path that does not exist.
    """
    table = _to_arrow(source)
    duplicates = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(f"Column names must be unique; repeated: {duplicates[:5]!r}. Rename them first.")
    return table


def _to_arrow(source: Any) -> pa.Table:
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        bad = [c for c in source.columns if not isinstance(c, str)]
        if bad:
            raise InvalidInputError(f"Column names must be strings; got {bad[:5]!r}. Rename them first.")
        if source.columns.has_duplicates:
            dupes = sorted(set(source.columns[source.columns.duplicated()]))
            raise InvalidInputError(f"Column names must be unique; repeated: {dupes[:5]!r}. Rename them first.")
        try:
            table = pa.Table.from_pandas(source, preserve_index=None)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
            raise InvalidInputError(f"Cannot store this DataFrame as a table: {exc}") from exc
        nan_columns = _object_nan_columns(source)
        if nan_columns:
            meta = {**(table.schema.metadata or {}), _OBJECT_NAN_KEY: json.dumps(nan_columns).encode()}
            table = table.replace_schema_metadata(meta)
        return table
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise NotFoundError(f"No such file or folder: {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix not in TABLE_SUFFIXES or not path.is_file():
            raise InvalidInputError(f"{str(path)!r} is not a table: expected .csv, .tsv, .parquet or a folder")
        try:
            if suffix in (".csv", ".tsv"):
                import pyarrow.csv as pacsv

                opts = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
                return pacsv.read_csv(path, parse_options=opts)
            return read_parquet(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInputError(f"Cannot read {str(path)!r} as a {suffix[1:]} table: {exc}") from exc
    raise InvalidInputError(
        f"Cannot make a dataset from {type(source).__name__}: give a DataFrame, an Arrow table, "
        "a CSV/Parquet path or a folder"
    )


def _object_nan_columns(frame: pd.DataFrame) -> list[str]:
    """Object columns whose missing values are all float NaN (pandas' own readers write NaN, Python
    code None); Arrow keeps only "null", so this is what lets `to_pandas` give the same marker back."""
    import math

    names = []
    for name in frame.columns:
        col = frame[name]
        if col.dtype != object:
            continue
        missing = col[col.isna()]
        if len(missing) and all(isinstance(v, float) and math.isnan(v) for v in missing):
            names.append(name)
    return names


def parquet_bytes(table: pa.Table) -> bytes:
    """Deterministic Parquet encoding: the same table always gives the same bytes (and digest).

    Raises InvalidInputError for a column Parquet cannot hold (pandas interval categories).
    """
    buf = io.BytesIO()
    try:
        extra = {_SCHEMA_KEY: base64.b64encode(table.schema.serialize().to_pybytes())}
        dictionaries = _dictionaries(table)
        if dictionaries is not None:
            extra[_DICTIONARIES_KEY] = base64.b64encode(dictionaries)
        stamped = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
        pq.write_table(stamped, buf, compression="zstd", use_dictionary=True, write_statistics=True)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        kinds = ", ".join(f"{f.name} ({f.type})" for f in table.schema if _is_nested_dictionary(f.type)) or "a column"
        raise InvalidInputError(
            f"Cannot store this table as Parquet: {exc}. Convert {kinds} to plain values "
            "(for pandas intervals, e.g. frame[col].astype(str)) first."
        ) from exc
    return buf.getvalue()


def _is_nested_dictionary(t: pa.DataType) -> bool:
    return bool(pa.types.is_dictionary(t) and isinstance(t.value_type, pa.ExtensionType))


def _dictionaries(table: pa.Table) -> bytes | None:
    """Every dictionary column's dictionary (categories, in order, used or not) as one IPC row."""
    if not any(pa.types.is_dictionary(f.type) for f in table.schema):
        return None
    unified = table.unify_dictionaries()
    arrays, names = [], []
    for field, col in zip(unified.schema, unified.columns, strict=True):
        if not pa.types.is_dictionary(field.type):
            continue
        values = col.chunks[0].dictionary if col.num_chunks else pa.array([], type=field.type.value_type)
        arrays.append(pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values))
        names.append(field.name)
    if not arrays:
        return None
    sink = io.BytesIO()
    row = pa.table(arrays, names=names)
    with pa.ipc.new_stream(sink, row.schema) as writer:
        writer.write_table(row)
    return sink.getvalue()


def read_parquet(source: str | os.PathLike[str] | bytes) -> pa.Table:
    """A table written by `parquet_bytes` exactly as it was (any other Parquet as pyarrow reads it)."""
    table = pq.read_table(pa.BufferReader(source) if isinstance(source, bytes) else source)
    meta = table.schema.metadata or {}
    if _SCHEMA_KEY not in meta:
        return table
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(meta[_SCHEMA_KEY])))
    if schema.names != table.column_names:  # rewritten by another tool since keel wrote it
        return table
    dictionaries: dict[str, pa.Array] = {}
    if _DICTIONARIES_KEY in meta:
        row = pa.ipc.open_stream(pa.py_buffer(base64.b64decode(meta[_DICTIONARIES_KEY]))).read_all()
        dictionaries = {name: row.column(name).chunk(0).values for name in row.column_names}
    columns = []
    for field, col in zip(schema, table.columns, strict=True):
        if pa.types.is_dictionary(field.type) and field.name in dictionaries:
            col = _encode(col, field.type, dictionaries[field.name])
        elif col.type != field.type:
            col = col.cast(field.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def _encode(col: pa.ChunkedArray, dtype: pa.DictionaryType, dictionary: pa.Array) -> pa.ChunkedArray:
    """`col` (plain or dictionary-encoded) re-encoded against exactly `dictionary`."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if col.type != dtype.value_type:
        col = col.cast(dtype.value_type)
    indices = pc.index_in(col, value_set=dictionary).cast(dtype.index_type)
    chunks = [pa.DictionaryArray.from_arrays(c, dictionary, ordered=dtype.ordered) for c in indices.chunks]
    return pa.chunked_array(chunks, type=dtype)


def pandas_metadata(table: pa.Table) -> dict[str, Any] | None:
    raw = (table.schema.metadata or {}).get(b"pandas")
    return json.loads(raw) if raw else None


def index_columns(table: pa.Table) -> set[str]:
    """The columns that hold a pandas index rather than data."""
    meta = pandas_metadata(table)
    if meta is None:
        return set()
    return {c for c in meta.get("index_columns", []) if isinstance(c, str)}


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as the DataFrame it was made from: dtypes, categoricals and index included."""
    import pandas as pd

    frame = table.to_pandas()
    meta = pandas_metadata(table)
    if meta is None:
        return frame
    index_fields = index_columns(table)
    nan_columns = set(json.loads((table.schema.metadata or {}).get(_OBJECT_NAN_KEY, b"[]")))
    for entry in meta.get("columns", []):
        name, field_name = entry.get("name"), entry.get("field_name")
        if entry.get("numpy_type") != "object" or not _is_string_or_null(table, field_name):
            continue
        column = table.column(field_name)
        values = column.to_numpy(zero_copy_only=False)  # str objects and None
        if name in nan_columns and column.null_count:
            values[column.is_null().to_numpy(zero_copy_only=False)] = float("nan")
        if field_name in index_fields:
            if frame.index.nlevels == 1:
                frame.index = pd.Index(values, dtype=object, name=frame.index.name)
            else:
                level = list(meta["index_columns"]).index(field_name)
                objects = frame.index.levels[level].astype(object)
                frame.index = frame.index.set_levels(objects, level=level, verify_integrity=False)
        elif name in frame.columns and (frame[name].dtype != object or name in nan_columns):
            frame[name] = pd.Series(values, index=frame.index, dtype=object)
    column_indexes = meta.get("column_indexes") or []
    if len(column_indexes) == 1 and column_indexes[0].get("numpy_type") == "object" and frame.columns.dtype != object:
        frame.columns = frame.columns.astype(object)
    return frame


def _is_string_or_null(table: pa.Table, field_name: Any) -> bool:
    if not isinstance(field_name, str) or field_name not in table.column_names:
        return False
    t = table.schema.field(field_name).type
    return bool(
        pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t)
    )
