"""Files scored in chunks: a CSV or Parquet upload in, a CSV file of predictions out; memory
stays bounded by the chunk, and every chunk goes to the prediction log."""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from keel.errors import InvalidInputError
from keel.server.auth import Principal
from keel.server.routes.predict import DROPPED_HEADER, dropped_header, maker, predictor, resolve
from keel.server.schemas import INT64_MAX
from keel.server.state import server_state
from keel.server.uploads import spool_body, suffix_for
from keel.workspace.files import read_batches

if TYPE_CHECKING:
    from keel.workspace.facade import LoadedModel, PredictionLogger

router = APIRouter(prefix="/api/v1")

BATCH_CHUNK_ROWS = 50_000


def score_file(
    model: LoadedModel,
    src: Path,
    suffix: str,
    predlog: PredictionLogger,
    by: str | None = None,
    *,
    extra: str = "ignore",
) -> tuple[Path, int, list[str]]:
    """Score a CSV/Parquet file chunk by chunk into a CSV file; memory stays bounded by the chunk.

    Each chunk goes to the prediction log as it is scored, in this thread: a chunk is larger than
    the log's buffer, and a file-scoring request is long anyway. With `extra='ignore'` the columns
    the model does not take (the training file's target) are dropped and returned.
    """
    fd, name = tempfile.mkstemp(prefix="keel-scored-", suffix=".csv")
    total = 0
    dropped: dict[str, None] = {}
    classes = [str(c) for c in (model.classes or ())]
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.writer(fh)
        header = ["row", "id", "prediction"] + ([f"proba_{c}" for c in classes] if model.has_proba else [])
        writer.writerow(header)
        for frame in read_batches(src, suffix, BATCH_CHUNK_ROWS):
            if extra == "ignore":
                gone = model.extra_columns(frame)
                if gone:
                    frame = frame.drop(columns=list(gone))
                    dropped.update(dict.fromkeys(gone))
            ids, at_ms = predlog.new_ids(len(frame))
            start = time.perf_counter()
            preds, proba = model.predict_and_proba(frame)
            latency_ms = (time.perf_counter() - start) * 1000
            cols = [np.arange(total, total + len(frame)), ids, preds]
            if proba is not None:
                cols += [proba[:, i] for i in range(proba.shape[1])]
            writer.writerows(zip(*cols, strict=True))
            predlog.write_frame(
                model.name,
                model.version,
                frame,
                predictions=preds,
                probabilities=proba,
                classes=model.classes,
                ids=ids,
                at_ms=at_ms,
                latency_ms=latency_ms,
                by=by,
            )
            total += len(frame)
    return Path(name), total, list(dropped)


@router.post("/models/{name}/predict/batch", tags=["predict"])
async def predict_batch(
    name: str,
    request: Request,
    background: BackgroundTasks,
    alias: str | None = Query(default=None),
    version: int | None = Query(default=None, ge=1, le=INT64_MAX),
    format: str | None = Query(default=None, description="csv, tsv or parquet (default: from Content-Type)"),
    extra: Literal["error", "ignore"] = Query(
        default="ignore",
        description="Columns the model does not take (the training file's target): 'ignore' drops them and names "
        "them in the X-Keel-Dropped-Columns header, 'error' refuses the file (422).",
    ),
    who: Principal = predictor,
) -> Response:
    """Score an uploaded CSV or Parquet file in chunks; answers with a CSV file of predictions."""
    suffix = suffix_for(request, format)
    model = await run_in_threadpool(resolve, request, name, alias, version)
    src = await spool_body(request, suffix=suffix, max_bytes=server_state(request).max_upload_bytes)
    try:
        out, rows, dropped = await run_in_threadpool(
            lambda: score_file(model, src, suffix, server_state(request).predlog, maker(who), extra=extra)
        )
    except (ValueError, KeyError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"Cannot score the uploaded file: {exc}") from exc
    finally:
        src.unlink(missing_ok=True)
    server_state(request).metrics.predictions.labels(model.name, str(model.version)).inc(rows)
    background.add_task(out.unlink, missing_ok=True)
    headers = {"X-Keel-Model": model.ref, "X-Keel-Rows": str(rows)}
    if dropped:
        headers[DROPPED_HEADER] = dropped_header(dropped)
    return FileResponse(
        out, media_type="text/csv", filename=f"{name}-v{model.version}-predictions.csv", headers=headers
    )
