"""Batch scoring as a job: a dataset version scored by a model version, stored as a new dataset
version (inputs, prediction, class probabilities) with its lineage in tags.

The table is cut into chunks of `chunk_rows`; on the Ray executor each chunk is a Ray task that
loads the model itself (plain tasks: Ray Data's actor pools hung on 2 CPUs, RECIPES.md), locally
the chunks are scored in turn, so memory holds one chunk's outputs at a time besides the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace
    from keel.workspace.payloads import BatchExplainPayload, BatchScorePayload

__all__ = ["batch_explain", "batch_score", "explain_chunk", "score_chunk"]


def _score(model: Any, chunk: pd.DataFrame) -> pd.DataFrame:
    """The chunk's rows, then `prediction` and `proba_<class>` (LoadedModel.predictions_frame)."""
    features = list(model.signature.column_names) if model.signature else list(chunk.columns)
    predicted = model.predictions_frame(chunk[features])
    out = chunk.reset_index(drop=True).copy()
    for column in predicted.columns:  # assigned, not concatenated: an input column of the same name is replaced
        out[column] = predicted[column].to_numpy()
    return out


def score_chunk(factory: Callable[[], Workspace], model_ref: str, chunk: pd.DataFrame) -> pd.DataFrame:
    """One chunk, scored in whatever process runs this (a Ray worker opens its own Workspace)."""
    with factory() as ws:
        return _score(ws.models.load(model_ref), chunk)


def batch_score(ws: Workspace, payload: BatchScorePayload) -> dict[str, Any]:
    from keel.jobs.executors import make_executor

    model = ws.models.get(payload.model)  # an alias resolves now: every chunk uses this version
    source = ws.datasets.get(payload.dataset)
    output = payload.output or f"{source.name}-scored"
    chunk_rows = payload.chunk_rows or payload.DEFAULT_CHUNK_ROWS  # checked >= 1 by the payload
    frame = ws.datasets.load(source)
    chunks = [frame.iloc[i : i + chunk_rows] for i in range(0, len(frame), chunk_rows)] or [frame]
    if ws.settings.executor == "ray":
        executor = make_executor(ws.settings)
        futures = [executor.submit(score_chunk, ws.jobs.factory, model.ref, c) for c in chunks]
        parts = [f.result() for f in futures]
    else:
        loaded = ws.models.load(model)
        parts = [_score(loaded, c) for c in chunks]
    scored = pd.concat(parts, ignore_index=True)
    version = ws.datasets.add(
        output,
        scored,
        description=f"{source.ref} scored by {model.ref} in {len(chunks)} chunks",
        tags={"source": source.ref, "model": model.ref, "job": "batch_score"},
    )
    return {"dataset": version.ref, "rows": len(scored), "chunks": len(chunks), "model": model.ref}


def _attributions(explained: Any) -> pd.DataFrame:
    e = explained.explanation
    out = pd.DataFrame(e.values, columns=[f"attr_{f}" for f in e.features])
    out.insert(0, "prediction", explained.predictions)
    out["base_value"] = e.base_values
    out["output"] = e.outputs
    out["reasons"] = ["; ".join(r["text"] for r in rs) for rs in explained.reasons]
    return out


def explain_chunk(factory: Callable[[], Workspace], model_ref: str, chunk: pd.DataFrame, top: int) -> pd.DataFrame:
    """Attributions of one chunk, computed in whatever process runs this."""
    with factory() as ws:
        return _attributions(ws.explainer.rows(ws.models.load(model_ref), chunk, top=top))


def batch_explain(ws: Workspace, payload: BatchExplainPayload) -> dict[str, Any]:
    """Attributions and reason codes for every row of a dataset version, stored as a dataset
    version (one `attr_<feature>` column per input, base value, output, reasons); chunks are Ray
    tasks on the Ray executor."""
    from keel.jobs.executors import make_executor

    model = ws.models.get(payload.model)
    source = ws.datasets.get(payload.dataset)
    output = payload.output or f"{source.name}-explained"
    chunk_rows, top = payload.chunk_rows or payload.DEFAULT_CHUNK_ROWS, payload.top or 3
    frame = ws.datasets.load(source)
    columns = list(model.signature.column_names) if model.signature else list(frame.columns)
    chunks = [frame.iloc[i : i + chunk_rows][columns] for i in range(0, len(frame), chunk_rows)] or [frame[columns]]
    if ws.settings.executor == "ray":
        executor = make_executor(ws.settings)
        parts = [
            f.result() for f in [executor.submit(explain_chunk, ws.jobs.factory, model.ref, c, top) for c in chunks]
        ]
    else:
        loaded = ws.models.load(model)  # the context is computed once, by the first chunk, and cached
        parts = [_attributions(ws.explainer.rows(loaded, c, top=top)) for c in chunks]
    explained = pd.concat(parts, ignore_index=True)
    version = ws.datasets.add(
        output,
        explained,
        description=f"attributions of {source.ref} by {model.ref}",
        tags={"source": source.ref, "model": model.ref, "job": "batch_explain"},
    )
    return {"dataset": version.ref, "rows": len(explained), "chunks": len(chunks), "model": model.ref}
