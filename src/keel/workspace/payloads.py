"""The payload of each job kind, as a frozen type: built where a job is queued (the CLI, the
server, the tick), stored as JSON with the job, and read back by its handler (handlers.py).

`to_dict()` is what the store keeps: the fields that are set (a field left at None is not
written, so readers of an older job, which lacked it, and of a new one see the same thing).
`from_dict()` checks a stored payload and says what is wrong with it. This module imports
nothing heavy: the CLI builds payloads without loading pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from keel.errors import InvalidInputError

__all__ = [
    "PAYLOADS",
    "BatchExplainPayload",
    "BatchScorePayload",
    "DatasetJobPayload",
    "JobPayload",
    "MonitorPayload",
    "RetrainPayload",
    "TunePayload",
    "retrain_key",
]


def retrain_key(model: str) -> str:
    """The de-duplication key of a model's retraining and tuning jobs: one active at a time per model."""
    return f"retrain:{model}"


def _text(kind: str, name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{kind} job payload: {name!r} must be a non-empty string (a reference), got {value!r}")


def _count(kind: str, name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInputError(
            f"{name} must be >= 1, got {value!r} ({kind} job payload; leave it out for the default)"
        )


@dataclass(frozen=True)
class JobPayload:
    """What every payload shares: the job kind it belongs to, and the model it is about."""

    kind: ClassVar[str] = ""
    model: str

    def __post_init__(self) -> None:
        _text(self.kind, "model", self.model)

    @property
    def dedup_key(self) -> str | None:
        """At most one active job per key (None: no limit)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored with the job: the fields that are set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Self:
        """A stored payload, checked: unknown keys and wrong values are refused, with what is allowed."""
        if not isinstance(payload, Mapping):
            raise InvalidInputError(f"{cls.kind} job payload must be a JSON object, got {type(payload).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise InvalidInputError(
                f"{cls.kind} job payload: unknown keys {unknown}; known: {', '.join(sorted(known))}"
            )
        if "model" not in payload:
            raise InvalidInputError(f"{cls.kind} job payload needs 'model' (the model's name or reference)")
        return cls(**payload)


@dataclass(frozen=True)
class RetrainPayload(JobPayload):
    """One retraining cycle of `model`. `trigger` and `detail` say why (as the tick saw it);
    `dataset` pins the training data (default: the project's). A trigger left unset reads as
    'manual' to the handler (and as 'retrain' in a crash record, as before)."""

    kind: ClassVar[str] = "retrain"
    trigger: str | None = None
    detail: Mapping[str, Any] | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _text(self.kind, "trigger", self.trigger, optional=True)
        _text(self.kind, "dataset", self.dataset, optional=True)
        if self.detail is not None and not isinstance(self.detail, Mapping):
            raise InvalidInputError(f"retrain job payload: 'detail' must be an object, got {self.detail!r}")

    @property
    def dedup_key(self) -> str:
        return retrain_key(self.model)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.detail is not None:
            out["detail"] = dict(self.detail)
        return out


@dataclass(frozen=True)
class TunePayload(JobPayload):
    """A hyper-parameter search for `model`, then its gate; `dataset` as for retraining."""

    kind: ClassVar[str] = "tune"
    dataset: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _text(self.kind, "dataset", self.dataset, optional=True)

    @property
    def dedup_key(self) -> str:
        return retrain_key(self.model)  # one retraining or tuning at a time per model


@dataclass(frozen=True)
class DatasetJobPayload(JobPayload):
    """`model` and `dataset` (references) in, a dataset version named `output` out, in chunks."""

    dataset: str = ""
    output: str | None = None
    chunk_rows: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _text(self.kind, "dataset", self.dataset)
        _text(self.kind, "output", self.output, optional=True)
        _count(self.kind, "chunk_rows", self.chunk_rows)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Self:
        if isinstance(payload, Mapping) and "dataset" not in payload:
            raise InvalidInputError(
                f"{cls.kind} job payload needs 'dataset' (a dataset reference, e.g. 'applications@3')"
            )
        return super().from_dict(payload)


@dataclass(frozen=True)
class BatchScorePayload(DatasetJobPayload):
    """Score every row of `dataset` with `model`; stored as `output` (default '<dataset>-scored')."""

    kind: ClassVar[str] = "batch_score"
    DEFAULT_CHUNK_ROWS: ClassVar[int] = 100_000


@dataclass(frozen=True)
class BatchExplainPayload(DatasetJobPayload):
    """Attributions and `top` reason codes for every row of `dataset` (default output
    '<dataset>-explained')."""

    kind: ClassVar[str] = "batch_explain"
    DEFAULT_CHUNK_ROWS: ClassVar[int] = 2_000
    top: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _count(self.kind, "top", self.top)


@dataclass(frozen=True)
class MonitorPayload(JobPayload):
    """One monitor check of `model`."""

    kind: ClassVar[str] = "monitor"

    @property
    def dedup_key(self) -> str:
        return f"monitor:{self.model}"


# The payload type of each job kind (the kinds keel.workspace.handlers runs).
PAYLOADS: dict[str, type[JobPayload]] = {
    p.kind: p for p in (RetrainPayload, BatchScorePayload, TunePayload, BatchExplainPayload, MonitorPayload)
}
