"""Request bodies (pydantic), the error body, and the one JSON encoder for entities.

Every request is validated here in full before it reaches the records: a value the records or
the database driver cannot take (an integer past 64 bits, a NaN, a timestamp in year 10^292)
is a 422 naming the field, never a 500 from deep inside.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema


def dump(obj: Any) -> Any:
    """Entities (frozen dataclasses), numpy values and datetimes as JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: dump(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        ref = getattr(obj, "ref", None)
        if isinstance(ref, str):
            out["ref"] = ref
        return out
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(k): dump(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [dump(v) for v in obj]
    if isinstance(obj, np.generic):
        return dump(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- bounded scalars, shared by every router (path, query and body) -----------------------------
# SQLite and PostgreSQL store integers in 64 bits; Python's sqlite3 raises OverflowError on more.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
PositiveInt64 = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""An id or count that is at least 1 and fits the database: alert ids, row ids."""
Version = Annotated[int, Field(ge=1, le=INT64_MAX, description="A version number, from 1")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

# Steps stay within 2^53: exact as a float and in the dashboard's JavaScript, and the next step
# after the largest (a point without a step continues the series) still fits in 64 bits.
MAX_STEP = 2**53
# Metric timestamps are seconds since the epoch (keel.tracking._checks); 9999-12-31T23:59:59Z is the
# last second a datetime can show. A timestamp in milliseconds is past it, and so refused too.
MAX_TIMESTAMP = 253_402_300_799.0

KEY_CHARS = 250  # the width of the key columns of params, tags and metrics
VALUE_CHARS = 8_192
MAX_ENTRIES = 1_000  # params or tags in one request
MAX_INPUTS = 1_000  # dataset references in one request
REF_CHARS = 300  # name (128) + '@' + a selector or 'sha256:' and 64 hex digits

Key = Annotated[str, Field(min_length=1, max_length=KEY_CHARS)]
Ref = Annotated[str, Field(min_length=1, max_length=REF_CHARS, description="NAME, NAME@VERSION or NAME@ALIAS")]


def _scalar(value: Any) -> str | int | float | bool:
    # One check and one message, where a union of four types would answer with four errors.
    ok = (
        isinstance(value, bool)
        or (isinstance(value, int) and INT64_MIN <= value <= INT64_MAX)
        or (isinstance(value, float) and math.isfinite(value))
        or (isinstance(value, str) and len(value) <= VALUE_CHARS)
    )
    if not ok:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise ValueError(
            f"a param or tag value must be a string of at most {VALUE_CHARS} characters, a finite "
            f"number, a 64-bit integer or a boolean, got {shown}"
        )
    return value


# Params and tags are stored as text: scalars only (a nested object would be stored as its repr).
Scalar = Annotated[
    str | int | float | bool,
    PlainValidator(_scalar),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": VALUE_CHARS},
                {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                {"type": "number"},
                {"type": "boolean"},
            ]
        }
    ),
]
Params = Annotated[dict[Key, Scalar], Field(max_length=MAX_ENTRIES)]


# -- the error body -----------------------------------------------------------------------------
class ErrorInfo(BaseModel):
    # SignatureError answers add missing/extra/mistyped beside these.
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="The error's kind, e.g. NotFoundError or ValidationError")
    detail: str = Field(description="What is wrong and how to fix it")
    field: str | None = Field(default=None, description="The request field at fault, when one is")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API: {"error": {"type", "detail", "field"}}."""

    error: ErrorInfo


# -- request bodies -----------------------------------------------------------------------------
class AliasMove(BaseModel):
    version: Version = Field(description="The version the alias should point at")
    reason: str = Field(default="", max_length=2000)


class RunCreate(BaseModel):
    experiment: str = Field(default="default", min_length=1, max_length=128)
    name: str | None = Field(default=None, min_length=1, max_length=256)
    params: Params = Field(default_factory=dict)
    tags: Params = Field(default_factory=dict)
    inputs: list[Ref] = Field(default_factory=list, max_length=MAX_INPUTS)


class MetricIn(BaseModel):
    key: Key
    value: FiniteFloat
    step: int | None = Field(default=None, ge=0, le=MAX_STEP, description="Default: the series' next step")
    timestamp: float | None = Field(
        default=None, ge=0, le=MAX_TIMESTAMP, description="Seconds since the epoch (default: now)"
    )


class MetricBatch(BaseModel):
    points: list[MetricIn] = Field(max_length=100_000)


class RunEnd(BaseModel):
    # 'running' is not an end: it would mark the run ended and running at once.
    status: Literal["finished", "failed", "killed"] = "finished"


def started_job(ws: Any, payload: Any, response: Any) -> dict[str, Any]:
    """Start a job payload on the server's executor now and answer 202 with the job, its `url` (also in
    `Location`) and whether it is new (an active job of the same de-duplication key is returned)."""
    job, created = ws.jobs.start(payload.kind, payload.to_dict(), dedup_key=payload.dedup_key)
    response.status_code = 202
    out = {**dump(job), "url": f"/api/v1/jobs/{job.id}", "created": created}
    response.headers["Location"] = out["url"]
    return dict(out)
