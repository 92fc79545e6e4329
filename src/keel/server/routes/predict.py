"""Prediction endpoints: JSON records in, predictions out; batch files scored in chunks; feedback.

Every request scored, and every request refused for its columns, goes to the prediction log
(`app.state.predlog`, a buffered writer into `ws.predictions`) under the ids the client receives.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from pydantic import BaseModel, Field

from keel.entities import Role
from keel.errors import AccessDeniedError, InvalidInputError, NotFoundError, SignatureError
from keel.server.auth import Principal, need
from keel.server.errors import HTTPProblem
from keel.server.schemas import INT64_MAX
from keel.server.uploads import spool_body, suffix_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")
predictor = Depends(need(Role.PREDICTOR))
reader = Depends(need(Role.READER))

BATCH_CHUNK_ROWS = 50_000


def resolve(request: Request, name: str, alias: str | None, version: int | None) -> Any:
    """The model for this request: ?version= wins, then ?alias=, else the champion. Blocking."""
    if version is not None and alias is not None:
        raise HTTPProblem(400, "Give ?alias= or ?version=, not both", field="version")
    return request.app.state.cache.resolve(name, alias, version)  # cache.py says when aliases are re-read


async def _model_for(request: Request, name: str, alias: str | None, version: int | None) -> Any:
    """resolve(), answered from memory when the cache can (no thread hop), else in a worker thread."""
    model = None if alias is not None and version is not None else request.app.state.cache.lookup(name, alias, version)
    return model if model is not None else await run_in_threadpool(resolve, request, name, alias, version)


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


# -- the documented shapes of /predict (the route reads the raw body: serving stays ~1 ms) ---------------
# A real request and answer of the demo's credit-risk model, so that /docs' "Try it out" works on `keel demo`.
_EXAMPLE_RECORD = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married", "Records": "no",
                   "Job": "freelance", "Expenses": 73, "Income": 129.0, "Assets": 0.0, "Debt": 0.0, "Amount": 800,
                   "Price": 846}  # fmt: skip
_RECORDS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "object", "additionalProperties": True, "description": "One row: {column: value}"},
}
PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The rows to score, one JSON object of column: value each, with the model's input columns "
        "(GET /api/v1/models/{name}/versions/{version} shows its signature). A single record, or a bare list, works too.",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"type": "object", "required": ["records"], "properties": {"records": _RECORDS_SCHEMA},
                         "title": "Records"},
                        {**_RECORDS_SCHEMA, "title": "List of records"},
                        {"type": "object", "additionalProperties": True, "title": "One record"},
                    ]
                },  # fmt: skip
                "example": {"records": [_EXAMPLE_RECORD]},
            }
        },
    }
}


class Prediction(BaseModel):
    id: str = Field(description="The prediction id: send it back with the true label to /models/{name}/feedback")
    prediction: Any = Field(description="The predicted class or value")
    probabilities: dict[str, float] | None = Field(default=None, description="Per class, for classifiers")
    explanation: dict[str, Any] | None = Field(default=None, description="With ?explain=true: attributions and reasons")


class PredictResponse(BaseModel):
    model: str = Field(description="The model name")
    version: int = Field(description="The version that answered (the champion unless ?alias= or ?version=)")
    predictions: list[Prediction] = Field(description="One per record, in order")
    dropped_columns: list[str] | None = Field(
        default=None, description="With ?extra=ignore: the input columns the model does not take, dropped"
    )


PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": PredictResponse,
        "description": "One prediction per record",
        "content": {"application/json": {"example": {
            "model": "credit-risk", "version": 2,
            "predictions": [{"id": "0192c3a4b5d6e7f8a9b0c1d2e3f4a5b6", "prediction": "good",
                             "probabilities": {"bad": 0.1342, "good": 0.8658}}],
        }}},  # fmt: skip
    }
}
DROPPED_HEADER = "X-Keel-Dropped-Columns"


def _dropped_header(dropped: list[str]) -> str:
    """The dropped columns as a header value: percent-encoded (headers are Latin-1, one line), at most 50 names."""
    shown = ", ".join(dropped[:50]) + (f", and {len(dropped) - 50} more" if len(dropped) > 50 else "")
    return quote(shown, safe=" ,")


def _drop_extra(model: Any, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records without the columns the model does not take, and those columns' names. The log,
    the shadow and the explanations then see only the model's columns (never a target left in)."""
    dropped = list(model.extra_columns(records))
    if not dropped:
        return records, dropped
    gone = set(dropped)
    return [{k: v for k, v in r.items() if k not in gone} for r in records], dropped


def _plain(values: np.ndarray) -> list[Any]:
    return list(values.tolist())  # numpy scalars -> Python numbers / strings


def score(model: Any, records: list[dict[str, Any]], ids: list[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """The response body, and the raw predictions and probabilities for the log."""
    preds, probabilities = model.predict_and_proba(records)
    classes = [str(c) for c in (model.classes or ())]
    out: list[dict[str, Any]] = []
    for i, p in enumerate(_plain(preds)):
        row: dict[str, Any] = {"id": ids[i], "prediction": p}
        if probabilities is not None:
            row["probabilities"] = dict(zip(classes, probabilities[i].tolist(), strict=False))
        out.append(row)
    return {"model": model.name, "version": model.version, "predictions": out}, preds, probabilities


async def _score(request: Request, model: Any, records: list[dict[str, Any]], ids: list[str]) -> Any:
    """score() on the event loop when the model is quick for a request this small, else in a thread."""
    cache = request.app.state.cache
    if cache.is_quick(model, len(records)):
        result, cpu_s = _timed_score(model, records, ids)  # tens of microseconds: less than a hop to a thread
    else:
        result, cpu_s = await run_in_threadpool(_timed_score, model, records, ids)
    cache.observe(model, len(records), cpu_s)
    return result


def _timed_score(model: Any, records: list[dict[str, Any]], ids: list[str]) -> tuple[Any, float]:
    start = time.thread_time()  # CPU time of this thread: what the event loop would be blocked for
    return score(model, records, ids), time.thread_time() - start


@router.post("/models/{name}/predict", tags=["predict"], openapi_extra=PREDICT_BODY, responses=PREDICT_RESPONSES)
async def predict(
    name: str,
    request: Request,
    alias: str | None = Query(default=None),
    version: int | None = Query(default=None, ge=1, le=INT64_MAX),
    explain: bool = Query(default=False, description="Add attributions (SHAP) and reason codes to each prediction."),
    top: int = Query(default=3, ge=1, le=50, description="Reason codes per prediction, with explain=true."),
    extra: Literal["error", "ignore"] = Query(
        default="error",
        description="Input columns the model does not take (a target left in): 'error' refuses them (422), "
        "'ignore' drops them and names them in `dropped_columns` and the X-Keel-Dropped-Columns header.",
    ),
    who: Principal = predictor,
) -> Response:
    """Predict for JSON records; answers with the champion unless ?alias= or ?version= says otherwise.

    With `explain=true` each prediction carries `explanation`: its base value, one attribution per
    input column (additive: base + attributions = the model output in `space`) and reason codes.

    Each prediction has an `id`: send it back with the true label to /models/{name}/feedback.
    The answer comes once the request is in the prediction log's write-ahead file (unless
    KEEL_PREDLOG_WAL=off): a returned id survives a crash of the server.
    """
    raw = await request.body()
    if len(raw) > request.app.state.max_json_bytes:
        raise HTTPProblem(413, f"JSON body exceeds {request.app.state.max_json_bytes} bytes; use /predict/batch")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPProblem(400, "The body is not valid JSON", field="body") from None
    records = _records(body)
    model = await _model_for(request, name, alias, version)
    dropped: list[str] | None = None
    if extra == "ignore":
        records, dropped = _drop_extra(model, records)
    predlog = request.app.state.predlog
    ids, at_ms = predlog.new_ids(len(records))
    start = time.perf_counter()
    try:
        result, preds, probabilities = await _score(request, model, records, ids)
    except SignatureError as exc:  # refused requests are logged too: they are the schema-violation rate
        predlog.log(model.name, model.version, records, ids=ids, at_ms=at_ms, by=maker(who), durable=False,
                    latency_ms=(time.perf_counter() - start) * 1000, error=str(exc))  # no id is returned: no need to wait
        if exc.extra:  # say how to send the training file's rows as they are
            raise SignatureError(f"{exc}; send ?extra=ignore to drop the columns the model does not take",
                                 missing=exc.missing, extra=exc.extra, mistyped=exc.mistyped) from None  # fmt: skip
        raise
    elapsed = time.perf_counter() - start
    # Waits (without blocking the loop) for the write-ahead sync that covers these rows: an id
    # is returned only once it survives a crash.
    await predlog.log_async(model.name, model.version, records, predictions=preds, probabilities=probabilities,
                            classes=model.classes, ids=ids, at_ms=at_ms, latency_ms=elapsed * 1000, by=maker(who))  # fmt: skip
    if explain:
        await run_in_threadpool(_add_explanations, request.app, model, records, result, top)
    metrics = request.app.state.metrics
    metrics.predict_latency.labels(model.name, str(model.version)).observe(elapsed)
    metrics.predictions.labels(model.name, str(model.version)).inc(len(records))
    background = None
    if alias is None and version is None:  # champion traffic: a challenger in shadow mode scores it too, after the answer
        shadow_version = await request.app.state.shadows.version(name)
        if shadow_version is not None and shadow_version != model.version:
            background = BackgroundTask(_shadow_score, request.app, name, shadow_version, records, ids, at_ms)
    headers = None
    if dropped is not None:
        result["dropped_columns"] = dropped
        headers = {DROPPED_HEADER: _dropped_header(dropped)} if dropped else None
    return Response(orjson.dumps(result), media_type="application/json", background=background, headers=headers)


def _add_explanations(app: Any, model: Any, records: list[dict[str, Any]], result: dict[str, Any], top: int) -> None:
    """Attributions and reason codes of each prediction, in place (context cached per model version)."""
    from keel._explainer import explain_rows

    contexts = app.state.explain_contexts
    key = (model.name, model.version)
    ctx = contexts.get(key)
    if ctx is None:
        from keel._explainer import context

        ctx = contexts[key] = context(app.state.ws, model.info)
        while len(contexts) > 16:  # bounded, like the model cache
            contexts.pop(next(iter(contexts)))
    explained = explain_rows(model, records, ctx, top=top)
    e = explained.explanation
    for i, prediction in enumerate(result["predictions"]):
        prediction["explanation"] = {"base_value": float(e.base_values[i]), "output": float(e.outputs[i]), "space": e.space,
                                     "target": e.target if not hasattr(e.target, "item") else e.target.item(), "method": e.method,
                                     "attributions": e.row(i), "reasons": explained.reasons[i]}  # fmt: skip


def _shadow_score(app: Any, name: str, version: int, records: list[dict[str, Any]], ids: list[str], at_ms: int) -> None:
    """Score a request with the shadow challenger and log it as '<name>.shadow' (never answered)."""
    try:
        challenger = app.state.cache.get(name, version)
        start = time.perf_counter()
        preds, probabilities = challenger.predict_and_proba(records)
        app.state.predlog.log(f"{name}.shadow", version, records, predictions=preds, probabilities=probabilities,
                              classes=challenger.classes, ids=ids, at_ms=at_ms,
                              latency_ms=(time.perf_counter() - start) * 1000, durable=False)  # fmt: skip
    except Exception:  # the shadow never affects the answer; a failure is only logged
        logger.exception("shadow scoring of %s v%d failed", name, version)


def _iter_batches(path: Path, suffix: str, rows: int) -> Iterator[Any]:
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
    pending: list[Any] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield empty_text_as_missing(pa.Table.from_batches(pending)).to_pandas()
            pending, count = [], 0
    if pending:
        yield empty_text_as_missing(pa.Table.from_batches(pending)).to_pandas()


def score_file(
    model: Any, src: Path, suffix: str, predlog: Any, by: str | None = None, *, extra: str = "ignore"
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
        for frame in _iter_batches(src, suffix, BATCH_CHUNK_ROWS):
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
            predlog.write_frame(model.name, model.version, frame, predictions=preds, probabilities=proba,
                                classes=model.classes, ids=ids, at_ms=at_ms, latency_ms=latency_ms, by=by)  # fmt: skip
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
    src = await spool_body(request, suffix=suffix, max_bytes=request.app.state.max_upload_bytes)
    try:
        out, rows, dropped = await run_in_threadpool(
            lambda: score_file(model, src, suffix, request.app.state.predlog, maker(who), extra=extra)
        )
    except (ValueError, KeyError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"Cannot score the uploaded file: {exc}") from exc
    finally:
        src.unlink(missing_ok=True)
    request.app.state.metrics.predictions.labels(model.name, str(model.version)).inc(rows)
    background.add_task(out.unlink, missing_ok=True)
    headers = {"X-Keel-Model": model.ref, "X-Keel-Rows": str(rows)}
    if dropped:
        headers[DROPPED_HEADER] = _dropped_header(dropped)
    return FileResponse(out, media_type="text/csv", filename=f"{name}-v{model.version}-predictions.csv", headers=headers)


# -- the prediction log ------------------------------------------------------------------------------
class FeedbackItem(BaseModel):
    id: str = Field(min_length=1, max_length=32, description="A prediction id, as /predict returned it")
    label: Any = Field(description="The true label or value")


class FeedbackRequest(BaseModel):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100_000)


@router.post("/models/{name}/feedback", tags=["predict"])
async def feedback(name: str, body: FeedbackRequest, request: Request, who: Principal = predictor) -> dict[str, Any]:
    """Record true labels for served predictions: `{"feedback": [{"id": ..., "label": ...}]}`.

    Needs the predictor role, for the predictions its own token asked for (whoever may ask for
    predictions may report how they turned out); labelling another token's predictions needs
    the writer role (403 naming the ids). All or nothing: an id the model never served answers
    404 naming it, and nothing is stored. A second label for an id replaces the first.
    """
    pairs = [(item.id, item.label) for item in body.feedback]
    made_by = None if who.role.allows(Role.WRITER) else maker(who)  # below writer: only its own predictions
    stored = await run_in_threadpool(_check_and_store_feedback, request, name, pairs, made_by)
    return {"model": name, "stored": stored}


def _check_and_store_feedback(request: Request, name: str, pairs: list[tuple[str, Any]], made_by: str | None) -> int:
    _check_labels(request.app.state.ws, name, pairs)
    return _store_feedback(request, name, pairs, made_by)


def _label_fits(label: Any, signature: Any) -> bool:
    """Whether `label` can be a true answer of a version with this signature: one of a classifier's
    classes ('1' matches the class 1, as JSON clients send it either way), a regressor's finite number."""
    if signature.output == "classification" and signature.classes:
        return any(label == c or str(label) == str(c) for c in signature.classes)
    if signature.output == "regression":
        return type(label) in (int, float) and math.isfinite(label)
    return True  # no known kind: anything JSON goes


def _check_labels(ws: Any, name: str, pairs: list[tuple[str, Any]]) -> None:
    """422 naming the first labels that fit no version of the model (a 'maybe' for a good/bad
    classifier, text for a regressor); nothing is stored then. A label is checked against every
    version's signature, since the ids may come from any of them; versions without one accept anything."""
    try:
        signatures = [v.signature for v in ws.models.versions(name) if v.signature is not None]
    except NotFoundError:
        return  # no such model: the log's own check answers 404 naming the ids
    if not signatures:
        return
    # A missing label is the log's to refuse (400: "send a value"); here, labels that are there but wrong.
    bad = [(i, label) for i, label in pairs if label is not None and not any(_label_fits(label, sig) for sig in signatures)]
    if not bad:
        return
    classes: dict[str, None] = {}
    for sig in signatures:
        if sig.output == "classification" and sig.classes:
            classes.update(dict.fromkeys(str(c) for c in sig.classes))
    regression = any(sig.output == "regression" for sig in signatures)
    wanted = " or ".join(
        ([f"one of its classes ({', '.join(classes)})"] if classes else []) + (["a finite number"] if regression else [])
    )
    shown = "; ".join(f"{label!r} for prediction {i}" for i, label in bad[:5]) + (
        f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    )
    raise HTTPProblem(
        422, f"Labels that {name!r} cannot have: {shown}. A label is {wanted}; no feedback was stored.", field="feedback"
    )


def maker(who: Principal) -> str:
    """What the log's `__by` column records for a caller: its token's prefix (unique per token),
    or the principal's name without a token (local no-token mode: 'local')."""
    return who.token_prefix or who.name


def _store_feedback(request: Request, name: str, pairs: list[tuple[str, Any]], made_by: str | None) -> int:
    log = request.app.state.ws.predictions
    try:
        try:
            return int(log.feedback(name, pairs, made_by=made_by))
        except NotFoundError:
            # The predictions may still be in the server's buffer: write it, then look again.
            request.app.state.predlog.flush()
            return int(log.feedback(name, pairs, made_by=made_by))
    except AccessDeniedError as exc:
        raise HTTPProblem(403, str(exc), field="feedback") from None


@router.get("/models/{name}/predictions", tags=["predict"])
def recent_predictions(
    name: str,
    request: Request,
    limit: int = Query(default=100, ge=1, le=10_000),
    version: int | None = Query(default=None, ge=1, le=INT64_MAX),
    _: Principal = reader,
) -> Response:
    """The newest logged predictions of a model, newest first, with their labels (`__label`) if any.

    Rows reach the log in batches, a few seconds after they were served.
    """
    frame = request.app.state.ws.predictions.window(name, last_rows=limit, version=version)
    rows = [{k: _json_value(v) for k, v in row.items()} for row in reversed(frame.to_dict(orient="records"))]
    return Response(orjson.dumps({"model": name, "rows": len(rows), "predictions": rows}), media_type="application/json")


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


class PredictionLogCollector:
    """Prometheus view of the log writer: keel_predictions_logged_total, keel_predictions_dropped_total."""

    def __init__(self, predlog: Any) -> None:
        self.predlog = predlog

    def describe(self) -> Iterator[Any]:
        return self.collect()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield CounterMetricFamily("keel_predictions_logged", "Predictions written to the prediction log",
                                  value=self.predlog.logged)  # fmt: skip
        yield CounterMetricFamily("keel_predictions_dropped", "Predictions not logged: buffer full or write failed",
                                  value=self.predlog.dropped)  # fmt: skip
        yield GaugeMetricFamily("keel_predictions_log_pending", "Predictions buffered or spilled, not yet written",
                                value=self.predlog.pending)  # fmt: skip
        yield GaugeMetricFamily("keel_predictions_log_spilled",
                                "Predictions past the buffer, kept in the write-ahead file until written",
                                value=getattr(self.predlog, "spilled", 0))  # fmt: skip
