"""Feedback and the logged predictions over HTTP: true labels for served predictions (checked
against the model's signatures), and the newest rows of a model's prediction log."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from keel.entities import Role, Signature
from keel.errors import AccessDeniedError, NotFoundError
from keel.server.auth import Principal, need
from keel.server.errors import HTTPProblem
from keel.server.routes.predict import maker, predictor
from keel.server.schemas import INT64_MAX
from keel.server.state import server_state

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

router = APIRouter(prefix="/api/v1")
reader = Depends(need(Role.READER))


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
    _check_labels(server_state(request).ws, name, pairs)
    return _store_feedback(request, name, pairs, made_by)


def _label_fits(label: Any, signature: Signature) -> bool:
    """Whether `label` can be a true answer of a version with this signature: one of a classifier's
    classes ('1' matches the class 1, as JSON clients send it either way), a regressor's finite number."""
    if signature.output == "classification" and signature.classes:
        return any(label == c or str(label) == str(c) for c in signature.classes)
    if signature.output == "regression":
        return type(label) in (int, float) and math.isfinite(label)
    return True  # no known kind: anything JSON goes


def _check_labels(ws: Workspace, name: str, pairs: list[tuple[str, Any]]) -> None:
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
    bad = [
        (i, label) for i, label in pairs if label is not None and not any(_label_fits(label, sig) for sig in signatures)
    ]
    if not bad:
        return
    classes: dict[str, None] = {}
    for sig in signatures:
        if sig.output == "classification" and sig.classes:
            classes.update(dict.fromkeys(str(c) for c in sig.classes))
    regression = any(sig.output == "regression" for sig in signatures)
    wanted = " or ".join(
        ([f"one of its classes ({', '.join(classes)})"] if classes else [])
        + (["a finite number"] if regression else [])
    )
    shown = "; ".join(f"{label!r} for prediction {i}" for i, label in bad[:5]) + (
        f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    )
    raise HTTPProblem(
        422,
        f"Labels that {name!r} cannot have: {shown}. A label is {wanted}; no feedback was stored.",
        field="feedback",
    )


def _store_feedback(request: Request, name: str, pairs: list[tuple[str, Any]], made_by: str | None) -> int:
    log = server_state(request).ws.predictions
    try:
        try:
            return int(log.feedback(name, pairs, made_by=made_by))
        except NotFoundError:
            # The predictions may still be in the server's buffer: write it, then look again.
            server_state(request).predlog.flush()
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
    frame = server_state(request).ws.predictions.window(name, last_rows=limit, version=version)
    rows = [{k: _json_value(v) for k, v in row.items()} for row in reversed(frame.to_dict(orient="records"))]
    return Response(
        orjson.dumps({"model": name, "rows": len(rows), "predictions": rows}), media_type="application/json"
    )


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
