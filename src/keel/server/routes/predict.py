"""Prediction endpoints: JSON records in, predictions out; batch files scored in chunks."""

from __future__ import annotations

import csv
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from keel.entities import Role
from keel.errors import InvalidInputError
from keel.server.auth import Principal, need
from keel.server.errors import HTTPProblem
from keel.server.uploads import spool_body, suffix_for

router = APIRouter(prefix="/api/v1")
predictor = Depends(need(Role.PREDICTOR))

BATCH_CHUNK_ROWS = 50_000


def resolve(request: Request, name: str, alias: str | None, version: int | None) -> Any:
    """The model for this request: ?version= wins, then ?alias=, else the champion."""
    ws = request.app.state.ws
    if version is not None and alias is not None:
        raise HTTPProblem(400, "Give ?alias= or ?version=, not both", field="version")
    if version is not None:
        ref = f"{name}@{version}"
    else:
        ref = f"{name}@{alias or 'champion'}"
    info = ws.models.get(ref)  # one indexed query: an alias move shows up on the next request
    return request.app.state.cache.get(info.name, info.version)


def _records(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        for key in ("records", "inputs", "instances"):
            if key in body:
                body = body[key]
                break
        else:
            body = [body]
    if not isinstance(body, list) or not body:
        raise HTTPProblem(422, "Send a JSON list of records, or {\"records\": [...]}", field="records")
    if not all(isinstance(r, dict) for r in body):
        raise HTTPProblem(422, "Every record must be a JSON object of column: value", field="records")
    return body


def _plain(values: np.ndarray) -> list[Any]:
    return values.tolist()  # numpy scalars -> Python numbers / strings


def score(model: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    preds = model.predict(records)
    out: list[dict[str, Any]] = []
    probabilities = None
    if model.has_proba:
        probabilities = model.predict_proba(records)
    classes = [str(c) for c in (model.classes or ())]
    for i, p in enumerate(_plain(preds)):
        row: dict[str, Any] = {"id": uuid.uuid4().hex, "prediction": p}
        if probabilities is not None:
            row["probabilities"] = dict(zip(classes, probabilities[i].tolist(), strict=False))
        out.append(row)
    return {"model": model.name, "version": model.version, "predictions": out}


@router.post("/models/{name}/predict", tags=["predict"])
async def predict(
    name: str,
    request: Request,
    alias: str | None = Query(default=None),
    version: int | None = Query(default=None, ge=1),
    _: Principal = predictor,
) -> Response:
    """Predict for JSON records; answers with the champion unless ?alias= or ?version= says otherwise."""
    raw = await request.body()
    if len(raw) > request.app.state.max_json_bytes:
        raise HTTPProblem(413, f"JSON body exceeds {request.app.state.max_json_bytes} bytes; use /predict/batch")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPProblem(400, "The body is not valid JSON", field="body") from None
    records = _records(body)
    model = await run_in_threadpool(resolve, request, name, alias, version)
    start = time.perf_counter()
    result = await run_in_threadpool(score, model, records)
    metrics = request.app.state.metrics
    metrics.predict_latency.labels(model.name, str(model.version)).observe(time.perf_counter() - start)
    metrics.predictions.labels(model.name, str(model.version)).inc(len(records))
    return Response(orjson.dumps(result), media_type="application/json")


def _iter_batches(path: Path, suffix: str, rows: int) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if suffix == ".parquet":
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch]).to_pandas()
        return
    opts = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
    reader = pacsv.open_csv(path, parse_options=opts, read_options=pacsv.ReadOptions(block_size=8 << 20))
    pending: list[Any] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending).to_pandas()
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending).to_pandas()


def score_file(model: Any, src: Path, suffix: str) -> tuple[Path, int]:
    """Score a CSV/Parquet file chunk by chunk into a CSV file; memory stays bounded by the chunk."""
    fd, name = tempfile.mkstemp(prefix="keel-scored-", suffix=".csv")
    total = 0
    classes = [str(c) for c in (model.classes or ())]
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.writer(fh)
        header = ["row", "prediction"] + ([f"proba_{c}" for c in classes] if model.has_proba else [])
        writer.writerow(header)
        for frame in _iter_batches(src, suffix, BATCH_CHUNK_ROWS):
            preds = model.predict(frame)
            cols = [np.arange(total, total + len(frame)), preds]
            if model.has_proba:
                proba = model.predict_proba(frame)
                cols += [proba[:, i] for i in range(proba.shape[1])]
            writer.writerows(zip(*cols, strict=True))
            total += len(frame)
    return Path(name), total


@router.post("/models/{name}/predict/batch", tags=["predict"])
async def predict_batch(
    name: str,
    request: Request,
    background: BackgroundTasks,
    alias: str | None = Query(default=None),
    version: int | None = Query(default=None, ge=1),
    format: str | None = Query(default=None, description="csv, tsv or parquet (default: from Content-Type)"),
    _: Principal = predictor,
) -> Response:
    """Score an uploaded CSV or Parquet file in chunks; answers with a CSV file of predictions."""
    suffix = suffix_for(request, format)
    model = await run_in_threadpool(resolve, request, name, alias, version)
    src = await spool_body(request, suffix=suffix, max_bytes=request.app.state.max_upload_bytes)
    try:
        out, rows = await run_in_threadpool(score_file, model, src, suffix)
    except (ValueError, KeyError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"Cannot score the uploaded file: {exc}") from exc
    finally:
        src.unlink(missing_ok=True)
    request.app.state.metrics.predictions.labels(model.name, str(model.version)).inc(rows)
    background.add_task(out.unlink, missing_ok=True)
    return FileResponse(out, media_type="text/csv", filename=f"{name}-v{model.version}-predictions.csv",
                        headers={"X-Keel-Model": model.ref, "X-Keel-Rows": str(rows)})  # fmt: skip
