"""The prediction endpoint: JSON records in, predictions out (with explanations, a shadow
challenger, and the documented request and answer shapes).

Every request scored, and every request refused for its columns, goes to the prediction log
(`ServerState.predlog`, a buffered writer into `ws.predictions`) under the ids the client receives.
Files scored in chunks: predict_batch.py; feedback and the logged predictions: feedback.py.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from keel.entities import Role
from keel.errors import SignatureError
from keel.server.auth import Principal, need
from keel.server.errors import HTTPProblem
from keel.server.schemas import INT64_MAX
from keel.server.state import server_state, state_of

if TYPE_CHECKING:
    from keel.workspace.facade import LoadedModel

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")
predictor = Depends(need(Role.PREDICTOR))


def _one_reference(alias: str | None, version: int | None) -> None:
    """A request names a version by ?alias= or by ?version=, not both (which one wins when only
    one is given: ModelCache.requested)."""
    if version is not None and alias is not None:
        raise HTTPProblem(400, "Give ?alias= or ?version=, not both", field="version")


def resolve(request: Request, name: str, alias: str | None, version: int | None, accept: Any = None) -> LoadedModel:
    """The model for this request (see ModelCache.requested). Blocking. `accept(version_record)`
    may refuse the version before its artifact is read (ModelCache.resolve)."""
    _one_reference(alias, version)
    # cache.py says when aliases are re-read
    return server_state(request).cache.resolve(name, alias, version, accept=accept)


async def _model_for(
    request: Request, name: str, alias: str | None, version: int | None, accept: Any = None
) -> LoadedModel:
    """resolve(), answered from memory when the cache can (no thread hop), else in a worker thread.
    A model from memory was loaded, so accepted, before: the caller checks it again if it must."""
    _one_reference(alias, version)
    model = server_state(request).cache.lookup(name, alias, version)
    return model if model is not None else await run_in_threadpool(resolve, request, name, alias, version, accept)


def _records(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        for key in ("records", "inputs", "instances"):
            if key in body:
                body = body[key]
                break
        else:
            body = [body]
    if not isinstance(body, list) or not body:
        raise HTTPProblem(422, 'Send a JSON list of records, or {"records": [...]}', field="records")
    if not all(isinstance(r, dict) for r in body):
        raise HTTPProblem(422, "Every record must be a JSON object of column: value", field="records")
    return body


# -- the documented shapes of /predict (the route reads the raw body: serving stays ~1 ms) ---------------
# A real request and answer of the demo's credit-risk model, so that /docs' "Try it out" works on `keel demo`.
_EXAMPLE_RECORD = {
    "Seniority": 9,
    "Home": "rent",
    "Time": 60,
    "Age": 30,
    "Marital": "married",
    "Records": "no",
    "Job": "freelance",
    "Expenses": 73,
    "Income": 129.0,
    "Assets": 0.0,
    "Debt": 0.0,
    "Amount": 800,
    "Price": 846,
}
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
                        {
                            "type": "object",
                            "required": ["records"],
                            "properties": {"records": _RECORDS_SCHEMA},
                            "title": "Records",
                        },
                        {**_RECORDS_SCHEMA, "title": "List of records"},
                        {"type": "object", "additionalProperties": True, "title": "One record"},
                    ]
                },
                "example": {"records": [_EXAMPLE_RECORD]},
            }
        },
    }
}


class Prediction(BaseModel):
    id: str = Field(description="The prediction id: send it back with the true label to /models/{name}/feedback")
    prediction: Any = Field(description="The predicted class or value")
    probabilities: dict[str, float] | None = Field(default=None, description="Per class, for classifiers")
    explanation: dict[str, Any] | None = Field(
        default=None,
        description="With ?explain=true: attributions and reasons; for a policy model, the rule that fired, "
        "the action and each action's expected outcome",
    )
    expected_gain: float | None = Field(
        default=None, description="Policy models: the recommended action's expected gain over the baseline action"
    )


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
        "content": {
            "application/json": {
                "example": {
                    "model": "credit-risk",
                    "version": 2,
                    "predictions": [
                        {
                            "id": "0192c3a4b5d6e7f8a9b0c1d2e3f4a5b6",
                            "prediction": "good",
                            "probabilities": {"bad": 0.1342, "good": 0.8658},
                        }
                    ],
                }
            }
        },
    }
}
DROPPED_HEADER = "X-Keel-Dropped-Columns"


def dropped_header(dropped: list[str]) -> str:
    """The dropped columns as a header value: percent-encoded (headers are Latin-1, one line), at most 50 names."""
    shown = ", ".join(dropped[:50]) + (f", and {len(dropped) - 50} more" if len(dropped) > 50 else "")
    return quote(shown, safe=" ,")


def _drop_extra(model: LoadedModel, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records without the columns the model does not take, and those columns' names. The log,
    the shadow and the explanations then see only the model's columns (never a target left in)."""
    dropped = list(model.extra_columns(records))
    if not dropped:
        return records, dropped
    gone = set(dropped)
    return [{k: v for k, v in r.items() if k not in gone} for r in records], dropped


def _plain(values: np.ndarray) -> list[Any]:
    return list(values.tolist())  # numpy scalars -> Python numbers / strings


def score(
    model: LoadedModel, records: list[dict[str, Any]], ids: list[str]
) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """The response body, and the raw predictions and probabilities for the log."""
    preds, probabilities = model.predict_and_proba(records)
    classes = [str(c) for c in (model.classes or ())]
    # The flavour's own per-row fields (a policy's expected_gain); most flavours have none.
    fields = model.row_fields(records) if model.has_row_fields else None
    out: list[dict[str, Any]] = []
    for i, p in enumerate(_plain(preds)):
        row: dict[str, Any] = {"id": ids[i], "prediction": p}
        if probabilities is not None:
            row["probabilities"] = dict(zip(classes, probabilities[i].tolist(), strict=False))
        if fields is not None:
            row.update(fields[i])
        out.append(row)
    return {"model": model.name, "version": model.version, "predictions": out}, preds, probabilities


async def _score(request: Request, model: LoadedModel, records: list[dict[str, Any]], ids: list[str]) -> Any:
    """score() on the event loop when the model is quick for a request this small, else in a thread."""
    cache = server_state(request).cache
    if cache.is_quick(model, len(records)):
        result, cpu_s = _timed_score(model, records, ids)  # tens of microseconds: less than a hop to a thread
    else:
        result, cpu_s = await run_in_threadpool(_timed_score, model, records, ids)
    cache.observe(model, len(records), cpu_s)
    return result


def _timed_score(model: LoadedModel, records: list[dict[str, Any]], ids: list[str]) -> tuple[Any, float]:
    start = time.thread_time()  # CPU time of this thread: what the event loop would be blocked for
    return score(model, records, ids), time.thread_time() - start


@router.post("/models/{name}/predict", tags=["predict"], openapi_extra=PREDICT_BODY, responses=PREDICT_RESPONSES)
async def predict(
    name: str,
    request: Request,
    alias: str | None = Query(default=None),
    version: int | None = Query(default=None, ge=1, le=INT64_MAX),
    explain: bool = Query(
        default=False,
        description="Add attributions (SHAP) and reason codes to each prediction (a policy model: the rule that fired).",
    ),
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
    records = await _read_records(request)
    model = await _model_for(request, name, alias, version)
    dropped: list[str] | None = None
    if extra == "ignore":
        records, dropped = _drop_extra(model, records)
    predlog = server_state(request).predlog
    ids, at_ms = predlog.new_ids(len(records))
    start = time.perf_counter()
    try:
        result, preds, probabilities = await _score(request, model, records, ids)
    except SignatureError as exc:  # refused requests are logged too: they are the schema-violation rate
        _log_refused(request, model, records, ids, at_ms, by=maker(who), start=start, error=exc)
        if exc.extra:  # say how to send the training file's rows as they are
            raise _with_extra_hint(exc) from None
        raise
    elapsed = time.perf_counter() - start
    # Waits (without blocking the loop) for the write-ahead sync that covers these rows: an id
    # is returned only once it survives a crash.
    await predlog.log_async(
        model.name,
        model.version,
        records,
        predictions=preds,
        probabilities=probabilities,
        classes=model.classes,
        ids=ids,
        at_ms=at_ms,
        latency_ms=elapsed * 1000,
        by=maker(who),
    )
    if explain:
        await run_in_threadpool(_add_explanations, request.app, model, records, result, top)
    _observe(request, model, len(records), elapsed)
    background = None
    if alias is None and version is None:  # champion traffic: a challenger in shadow mode scores it too
        background = await _shadow_task(request, name, model, records, ids, at_ms)
    headers = None
    if dropped is not None:
        result["dropped_columns"] = dropped
        headers = {DROPPED_HEADER: dropped_header(dropped)} if dropped else None
    return Response(orjson.dumps(result), media_type="application/json", background=background, headers=headers)


async def _read_records(request: Request) -> list[dict[str, Any]]:
    """The request's records, read from the raw body (no pydantic model: serving stays ~1 ms)."""
    raw = await request.body()
    if len(raw) > server_state(request).max_json_bytes:
        raise HTTPProblem(413, f"JSON body exceeds {server_state(request).max_json_bytes} bytes; use /predict/batch")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPProblem(400, "The body is not valid JSON", field="body") from None
    return _records(body)


def _log_refused(
    request: Request,
    model: LoadedModel,
    records: list[dict[str, Any]],
    ids: list[str],
    at_ms: int,
    *,
    by: str,
    start: float,
    error: SignatureError,
) -> None:
    """Log a request the model refused for its columns (no id is returned: no need to wait)."""
    server_state(request).predlog.log(
        model.name,
        model.version,
        records,
        ids=ids,
        at_ms=at_ms,
        by=by,
        durable=False,
        latency_ms=(time.perf_counter() - start) * 1000,
        error=str(error),
    )


def _with_extra_hint(exc: SignatureError) -> SignatureError:
    """The same refusal, saying how to send the training file's rows as they are."""
    return SignatureError(
        f"{exc}; send ?extra=ignore to drop the columns the model does not take",
        missing=exc.missing,
        extra=exc.extra,
        mistyped=exc.mistyped,
    )


def _observe(request: Request, model: LoadedModel, rows: int, elapsed_s: float) -> None:
    metrics = server_state(request).metrics
    metrics.predict_latency.labels(model.name, str(model.version)).observe(elapsed_s)
    metrics.predictions.labels(model.name, str(model.version)).inc(rows)


async def _shadow_task(
    request: Request, name: str, model: LoadedModel, records: list[dict[str, Any]], ids: list[str], at_ms: int
) -> BackgroundTask | None:
    """Scoring by the model's shadow challenger, if it has one, to run after the answer."""
    shadow_version = await server_state(request).shadows.version(name)
    if shadow_version is None or shadow_version == model.version:
        return None
    return BackgroundTask(_shadow_score, request.app, name, shadow_version, records, ids, at_ms)


def _add_explanations(
    app: Any, model: LoadedModel, records: list[dict[str, Any]], result: dict[str, Any], top: int
) -> None:
    """Attributions and reason codes of each prediction, in place (the context is cached per model
    version by the workspace's explainer, bounded, shared with the dashboard and ws.explain). A flavour
    with its own explanation (a policy: the rule that fired) gives that instead."""
    own = model.explain_rows(records)
    if own is not None:
        for prediction, explanation in zip(result["predictions"], own, strict=True):
            prediction["explanation"] = explanation
        return
    explained = state_of(app).ws.explainer.rows(model, records, top=top)
    for i, prediction in enumerate(result["predictions"]):
        prediction["explanation"] = explained.row(i).to_dict()


def _shadow_score(app: Any, name: str, version: int, records: list[dict[str, Any]], ids: list[str], at_ms: int) -> None:
    """Score a request with the shadow challenger and log it as '<name>.shadow' (never answered)."""
    try:
        challenger = state_of(app).cache.get(name, version)
        start = time.perf_counter()
        preds, probabilities = challenger.predict_and_proba(records)
        state_of(app).predlog.log(
            f"{name}.shadow",
            version,
            records,
            predictions=preds,
            probabilities=probabilities,
            classes=challenger.classes,
            ids=ids,
            at_ms=at_ms,
            latency_ms=(time.perf_counter() - start) * 1000,
            durable=False,
        )
    except Exception:  # the shadow never affects the answer; a failure is only logged
        logger.exception("shadow scoring of %s v%d failed", name, version)


def maker(who: Principal) -> str:
    """What the log's `__by` column records for a caller: its token's prefix (unique per token),
    or the principal's name without a token (local no-token mode: 'local')."""
    return who.token_prefix or who.name
