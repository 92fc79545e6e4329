"""Tabular files at the edges, read and written with the datasets' rules (keel.data.tables): an
empty cell is missing, as when the data was added; a CSV download reads back with the same values.
The server's batch scoring and dataset downloads use these, so that it never imports keel.data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from keel.entities import DatasetVersion
    from keel.workspace.facade import Workspace

__all__ = ["read_batches", "write_dataset_csv"]


def read_batches(path: Path, suffix: str, rows: int) -> Iterator[pd.DataFrame]:
    """A CSV, TSV or Parquet file as DataFrames of about `rows` rows each; memory holds one at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from keel.data.tables import empty_text_as_missing  # an empty cell is missing, as when the data was added

    if suffix == ".parquet":
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch]).to_pandas()
        return
    opts = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
    reader = pacsv.open_csv(path, parse_options=opts, read_options=pacsv.ReadOptions(block_size=8 << 20))
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield empty_text_as_missing(pa.Table.from_batches(pending)).to_pandas()
            pending, count = [], 0
    if pending:
        yield empty_text_as_missing(pa.Table.from_batches(pending)).to_pandas()


def write_dataset_csv(ws: Workspace, version: DatasetVersion, path: Path) -> Path:
    """A table dataset version as CSV at `path`: nulls as empty cells, floats that read back as floats."""
    from keel.data.tables import write_csv

    write_csv(ws.datasets.load(version, format="arrow"), path)
    return path
