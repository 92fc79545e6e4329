"""Request bodies (pydantic) and the one JSON encoder for entities."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np
from pydantic import BaseModel, Field


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


class AliasMove(BaseModel):
    version: int = Field(ge=1, description="The version the alias should point at")
    reason: str = Field(default="", max_length=2000)


class RunCreate(BaseModel):
    experiment: str = "default"
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)


class MetricIn(BaseModel):
    key: str = Field(min_length=1, max_length=250)
    value: float
    step: int | None = None
    timestamp: float | None = None


class MetricBatch(BaseModel):
    points: list[MetricIn] = Field(max_length=100_000)


class RunEnd(BaseModel):
    status: str = "finished"
