"""The training sample a model version keeps when it is registered with X: up to SAMPLE_ROWS evenly
spread rows of its input columns, plus the typical value of each column over all of X (median, or
most frequent value), in one Parquet blob (the typical values in the file's key-value metadata).

Explanations need the training data (a background sample for linear, model-agnostic and LIME
explanations; typical values for reason codes); a version registered with X but no linked dataset
would otherwise have none.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from keel.entities import Signature

__all__ = ["SAMPLE_ROWS", "sample_bytes", "read_sample", "spread"]

SAMPLE_ROWS = 500
_TYPICAL = b"keel.typical"


def spread(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """At most `rows` rows of `frame`, evenly spread over it (every k-th row), so a sorted or
    time-ordered X keeps its range."""
    return frame.iloc[:: -(-len(frame) // rows)] if len(frame) > rows else frame


def sample_bytes(X: Any, signature: Signature) -> bytes:
    """The Parquet blob of X's training sample; raises when X does not match the signature."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from keel.explain.reasons import typical_values
    from keel.registry.signature import validate_input

    frame = validate_input(X, signature)
    typical = typical_values(frame)
    complete = frame.dropna()
    # The background must be complete rows where X has enough of them (maskers and means need values).
    rows = complete if len(complete) < len(frame) and len(complete) >= 10 else frame
    table = pa.Table.from_pandas(spread(rows, SAMPLE_ROWS).reset_index(drop=True), preserve_index=False)
    metadata = {**(table.schema.metadata or {}), _TYPICAL: json.dumps(typical, default=_plain).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()


def read_sample(data: bytes) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The sample rows and the typical values of a blob `sample_bytes` wrote."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    typical = json.loads((table.schema.metadata or {}).get(_TYPICAL, b"{}"))
    return table.to_pandas(), typical


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and timestamps: their Python value, or their text."""
    return value.item() if hasattr(value, "item") else str(value)
