"""A slice of the prediction log as a dataset version (`PredictionLog.export`): the served rows'
inputs and their labels, with tags and a description saying where they came from."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from keel.errors import InvalidInputError
from keel.monitoring.columns import AT, ERROR, LABEL, VERSION
from keel.monitoring.predentries import _plain_column

if TYPE_CHECKING:
    import pandas as pd

    from keel.data import Datasets
    from keel.entities import DatasetVersion

logger = logging.getLogger("keel.monitoring.predlog")  # the export's messages keep the logger they always had

__all__ = ["export_window"]


def export_window(
    datasets: Datasets,
    window: pd.DataFrame,
    model_name: str,
    dataset_name: str,
    *,
    since: datetime | None,
    until: datetime | None,
    labelled_only: bool,
    target: str | None,
) -> DatasetVersion:
    """Store `window` (of `PredictionLog.window`) as a new version of `dataset_name`; see `PredictionLog.export`."""
    if ERROR in window.columns:
        window = window[window[ERROR].isna()]
    if window.empty:
        what = "labelled predictions" if labelled_only else "served predictions"
        raise InvalidInputError(
            f"Model {model_name!r} has no {what} in the window {_span(since, until)}; nothing was exported. "
            + ("Send feedback first, or pass labelled_only=False." if labelled_only else "")
        )
    label = target or LABEL
    inputs = [c for c in window.columns if not c.startswith("__")]
    if label in inputs:
        raise InvalidInputError(f"target {label!r} is also an input column of {model_name!r}; choose another name")
    columns = {c: window[c].tolist() for c in inputs}
    columns[label] = window[LABEL].tolist()
    table = pa.table({c: _plain_column(v) for c, v in columns.items()})
    start, end = window[AT].min().to_pydatetime(), window[AT].max().to_pydatetime()
    versions = ",".join(str(v) for v in sorted(set(window[VERSION].tolist())))
    labelled = int(window[LABEL].notna().sum())
    tags = {
        "source": "prediction_log",
        "model": model_name,
        "model_versions": versions,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "rows": str(len(window)),
        "labelled_rows": str(labelled),
        "label_column": label,
    }
    description = (
        f"{len(window)} predictions served by {model_name} (version {versions}) from "
        f"{start.isoformat(timespec='seconds')} to {end.isoformat(timespec='seconds')}, {labelled} with "
        f"feedback; exported from the prediction log, label in column {label!r}."
    )
    result = datasets.add(dataset_name, table, description=description, tags=tags)
    logger.info("exported %d logged predictions of %s as %s", len(window), model_name, result.ref)
    return result


def _span(since: datetime | None, until: datetime | None) -> str:
    return f"{since.isoformat() if since else 'start'} .. {until.isoformat() if until else 'now'}"
