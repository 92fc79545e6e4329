"""Dataset versions: content-addressed storage of tables and folders, schema, profile, diff.

May import: keel.storage and the base modules (errors, refs, entities, settings).
"""

from __future__ import annotations

from keel.data.datasets import Datasets
from keel.data.diff import diff_tables
from keel.data.distances import js_distance, psi
from keel.data.profile import profile_table
from keel.data.tables import parquet_bytes, read_parquet, to_arrow, to_pandas

__all__ = [
    "Datasets",
    "to_arrow",
    "parquet_bytes",
    "read_parquet",
    "to_pandas",
    "diff_tables",
    "profile_table",
    "psi",
    "js_distance",
]
