"""Tables in and out: sources as Arrow, Arrow as Parquet bytes and back, Arrow as pandas, all exact.

Parquet alone loses some Arrow types: a dictionary (pandas categorical) of numbers comes back as
plain numbers, string dictionaries come back with `string` values whatever they were written with.
`parquet_bytes` therefore also stores the Arrow schema and every column's dictionary in the file's
key-value metadata, and `read_parquet` puts them back. pandas 3 reads every Arrow string column
as its `str` dtype; `to_pandas` gives `object` columns back to frames that had them.

CSV has one spelling for a missing value, the empty cell, and Keel reads it as missing in every
column type (pyarrow alone reads it as "" in text columns, which made the empty cell a category of
its own). So a genuine empty string cannot survive a CSV: it comes back missing; Parquet keeps it.
Other null spellings ("NA", "NULL", "NaN", ...) make a numeric column's cell missing, as pyarrow
reads them, but stay text in a text column (a country code "NA" is data). `write_csv` writes what
`read_csv` reads back with the same values, nulls and types, for int64, float64, bool, string,
date32 and timestamp[ns] columns; narrower numbers, categoricals, decimals and other timestamp
units come back as their CSV-inferred type (use Parquet to keep those).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "to_arrow",
    "read_csv",
    "write_csv",
    "parquet_bytes",
    "read_parquet",
    "to_pandas",
    "duplicate_names",
    "TABLE_SUFFIXES",
    "DEFAULT_MAX_COLUMNS",
]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
# Wide enough for gene-expression matrices (about 20,000 genes) and one-hot feature sets; past it a
# dataset is more likely a transposed file or an attack on the server (every column is profiled).
DEFAULT_MAX_COLUMNS = 25_000
_HEADER_SCAN_BYTES = 8 << 20  # how far `_csv_header_width` reads before leaving the count to pyarrow
_SCHEMA_KEY = b"keel.arrow_schema"
_DICTIONARIES_KEY = b"keel.dictionaries"
_OBJECT_NAN_KEY = b"keel.object_nan_columns"  # object columns whose missing values were NaN, not None


def to_arrow(source: Any, *, max_columns: int | None = None) -> pa.Table:
    """A pandas DataFrame, Arrow table, or CSV/TSV/Parquet path as an Arrow table.

    Raises InvalidInputError for other sources, unreadable files, duplicate column names and
    (when `max_columns` is given) more columns than that; a file's header is counted before the
    file is parsed, so a very wide file is refused without reading it. NotFoundError for a path
    that does not exist.
    """
    if max_columns is not None:
        _check_width(*_declared_width(source), max_columns)
    table = _to_arrow(source)
    if max_columns is not None:
        _check_width(table.num_columns, True, max_columns)
    duplicates = duplicate_names(table.schema.names)
    if duplicates:
        raise InvalidInputError(
            f"Column names must be unique; repeated: {duplicates[:5]!r}"
            f"{f' and {len(duplicates) - 5} more' if len(duplicates) > 5 else ''}. Rename them first."
        )
    return table


def duplicate_names(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted; linear in the number of names.

    (`Table.column_names` builds a new list on every access: counting with it per column took
    minutes for 10,000 columns.)
    """
    return sorted(n for n, count in Counter(names).items() if count > 1)


def _check_width(width: int | None, exact: bool, max_columns: int) -> None:
    if width is not None and width > max_columns:
        raise InvalidInputError(
            f"The table has {'' if exact else 'at least '}{width:,} columns; a dataset holds at most "
            f"{max_columns:,} (setting dataset_max_columns, KEEL_DATASET_MAX_COLUMNS). "
            "Select or reshape the columns first."
        )


def _declared_width(source: Any) -> tuple[int | None, bool]:
    """The column count a source declares before it is parsed, and whether it is exact rather than
    a lower bound; (None, False) when it declares none."""
    if isinstance(source, (pa.Table, pa.RecordBatch)):
        return source.num_columns, True
    if hasattr(source, "columns") and hasattr(source, "shape"):  # a pandas DataFrame
        return len(source.columns), True
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        return None, False  # `_to_arrow` says what is wrong with it
    path = Path(source)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            return _csv_header_width(path, b"\t" if suffix == ".tsv" else b",")
        if suffix in (".parquet", ".pq"):
            return int(pq.read_metadata(path).num_columns), True
    except (pa.ArrowInvalid, OSError):
        pass  # unreadable: `_to_arrow` raises with pyarrow's own message
    return None, False


def _csv_header_width(path: Path, delimiter: bytes) -> tuple[int, bool]:
    """The number of fields in a CSV's header row, read in chunks without parsing the rest, and
    whether the header ended within the first `_HEADER_SCAN_BYTES` (else the count is a lower bound).

    Follows pyarrow's default dialect: a field that starts with '"' is quoted, '""' inside it is
    one quote, delimiters and newlines inside quotes belong to the field, a quote elsewhere is an
    ordinary character, and empty lines before the header are skipped. Only delimiters, quotes and
    newlines are visited (a regex skips the rest), so a header of 100,000 names takes milliseconds.
    """
    special = re.compile(b"[" + re.escape(delimiter) + b'"\r\n]')
    width, field_start, quoted, closing = 1, 0, False, -1  # closing: where a quote ended a quoted field
    with open(path, "rb") as fh:
        offset = field_start = 3 if fh.read(3) == b"\xef\xbb\xbf" else 0  # skip a UTF-8 byte-order mark
        fh.seek(offset)
        while offset < _HEADER_SCAN_BYTES and (chunk := fh.read(1 << 16)):
            for m in special.finditer(chunk):
                pos, c = offset + m.start(), m.group()
                if closing >= 0:
                    closing, was = -1, closing
                    if c == b'"' and pos == was + 1:  # '""': a literal quote, the field is still quoted
                        quoted = True
                        continue
                if quoted:
                    if c == b'"':
                        quoted, closing = False, pos
                elif c == b'"':
                    quoted = pos == field_start
                elif c == delimiter:
                    width += 1
                    field_start = pos + 1
                elif width == 1 and pos == field_start:  # an empty line before the header
                    field_start = pos + 1
                else:
                    return width, True
            offset += len(chunk)
    return width, offset < _HEADER_SCAN_BYTES  # the file ended: the header is all there was


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
                return read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
            return read_parquet(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInputError(f"Cannot read {str(path)!r} as a {suffix[1:]} table: {exc}") from exc
    raise InvalidInputError(
        f"Cannot make a dataset from {type(source).__name__}: give a DataFrame, an Arrow table, "
        "a CSV/Parquet path or a folder"
    )


def read_csv(path: str | os.PathLike[str], *, delimiter: str = ",") -> pa.Table:
    """A CSV/TSV file as Arrow, every empty cell a missing value whatever the column's type.

    In a one-column file an empty cell is an empty line, so there empty lines are rows (pyarrow
    skips them by default, which lost the missing values of a one-column download).
    Raises pyarrow's ArrowInvalid for a file it cannot parse (`to_arrow` words it for users).
    """
    import pyarrow.csv as pacsv

    width, exact = _csv_header_width(Path(path), delimiter.encode())
    parse = pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=not (exact and width == 1))
    return empty_text_as_missing(pacsv.read_csv(path, parse_options=parse))


def empty_text_as_missing(table: pa.Table) -> pa.Table:
    """`table` with the empty strings of its text (and binary) columns made null.

    Done after parsing rather than with pyarrow's `strings_can_be_null`, which would also make
    "NA", "NULL", "n/a"... missing in text columns, where they can be real values.
    """
    columns, changed = [], False
    for field, col in zip(table.schema, table.columns, strict=True):
        t = field.type
        if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)) and len(col):
            empty = pc.equal(pc.binary_length(col), 0)
            if pc.any(empty).as_py():
                col = pc.if_else(empty, pa.scalar(None, t), col)
                changed = True
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=table.schema) if changed else table


def write_csv(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """`table` as CSV that `read_csv` reads back with the same values, nulls and (common) types.

    A null is written as an empty cell. A float column whose values are all whole numbers would be
    written "1", "2" and read back as integers, so its values are written "1.0", "2.0".
    """
    import pyarrow.csv as pacsv

    columns = [_whole_floats_with_point(col) if pa.types.is_floating(col.type) else col for col in table.columns]
    pacsv.write_csv(pa.Table.from_arrays(columns, names=table.column_names), path)


def _whole_floats_with_point(col: pa.ChunkedArray) -> pa.ChunkedArray:
    text = pc.cast(col, pa.string())  # shortest text that reads back as the same float64
    looks_integer = pc.match_substring_regex(text, r"^-?[0-9]+$")
    if not pc.all(pc.fill_null(looks_integer, True)).as_py():
        return col  # some value already reads as a float ("2.5", "1e+20", "inf"): the column does
    return pc.binary_join_element_wise(text, pa.scalar(".0"), "")


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
    types = {f.name: f.type for f in table.schema}  # once: `table.column_names` is rebuilt per access
    for entry in meta.get("columns", []):
        name, field_name = entry.get("name"), entry.get("field_name")
        if entry.get("numpy_type") != "object" or not _is_string_or_null(types.get(field_name)):
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


def _is_string_or_null(t: pa.DataType | None) -> bool:
    if t is None:
        return False
    return bool(
        pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t)
    )
