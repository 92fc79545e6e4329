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
from keel.refs import parse_ref

__all__ = [
    "PAYLOADS",
    "BatchExplainPayload",
    "BatchScorePayload",
    "CausalBootstrapPayload",
    "CausalRefutePayload",
    "CausalSensitivityPayload",
    "DatasetJobPayload",
    "EdgeBuildPayload",
    "EdgeFollowPayload",
    "GenAITrainPayload",
    "GenAITunePayload",
    "JobPayload",
    "MonitorPayload",
    "RetrainPayload",
    "STUDY_PAYLOADS",
    "StudyJobPayload",
    "TWIN_PAYLOADS",
    "TrainPolicyPayload",
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


def _checked_keys(cls: Any, payload: Any, *, required: str, what: str) -> Mapping[str, Any]:
    """A stored payload's keys, checked against the payload type's fields: a JSON object, no unknown
    key, and the `required` one present; the values are checked by the type itself."""
    if not isinstance(payload, Mapping):
        raise InvalidInputError(f"{cls.kind} job payload must be a JSON object, got {type(payload).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise InvalidInputError(f"{cls.kind} job payload: unknown keys {unknown}; known: {', '.join(sorted(known))}")
    if required not in payload:
        raise InvalidInputError(f"{cls.kind} job payload needs {required!r} ({what})")
    return payload


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
        return cls(**_checked_keys(cls, payload, required="model", what="the model's name or reference"))


_ESTIMATORS = ("regression", "ipw", "aipw", "dml")  # keel.causal.ESTIMATORS
_ESTIMANDS = ("ate", "att", "atc")


class _RecordPayload:
    """What the payloads of jobs about a record other than a model (a study, a twin) share: the stored
    JSON (the fields that are set, tuples as lists) and its check (`required` names the record)."""

    kind: ClassVar[str] = ""
    required: ClassVar[str] = ""
    what: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}  # type: ignore[arg-type]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Self:
        return cls(**_checked_keys(cls, payload, required=cls.required, what=cls.what))


@dataclass(frozen=True)
class StudyJobPayload(_RecordPayload):
    """What the causal study jobs share: the study version (`study`, 'nsw' or 'nsw@2'), the estimand and
    the seed. Not a JobPayload: these jobs are about a study, not a model. One active job per kind and
    study version."""

    kind: ClassVar[str] = ""
    study: str
    estimand: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        _text(self.kind, "study", self.study)
        if self.estimand is not None and self.estimand not in _ESTIMANDS:
            raise InvalidInputError(
                f"{self.kind} job payload: 'estimand' must be one of {_ESTIMANDS}, got {self.estimand!r}"
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise InvalidInputError(f"{self.kind} job payload: 'seed' must be an integer >= 0, got {self.seed!r}")

    required: ClassVar[str] = "study"
    what: ClassVar[str] = "the study's name or reference"

    @property
    def dedup_key(self) -> str:
        return f"{self.kind}:{self.study}"


def _estimator(kind: str, value: Any) -> None:
    if value is not None and value not in _ESTIMATORS:
        raise InvalidInputError(f"{kind} job payload: 'estimator' must be one of {_ESTIMATORS}, got {value!r}")


@dataclass(frozen=True)
class CausalBootstrapPayload(StudyJobPayload):
    """A percentile bootstrap interval of each of `estimators` (default: regression, ipw, aipw) with
    `n_boot` resamples (default 200), cut into `tasks` chunks (default 4) sent to the executor."""

    kind: ClassVar[str] = "causal_bootstrap"
    estimators: tuple[str, ...] | list[str] | None = None
    n_boot: int | None = None
    tasks: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.estimators is not None:
            if isinstance(self.estimators, str) or not self.estimators:
                raise InvalidInputError(f"{self.kind} job payload: 'estimators' must be a non-empty list")
            for name in self.estimators:
                _estimator(self.kind, name)
            object.__setattr__(self, "estimators", tuple(self.estimators))
        _count(self.kind, "tasks", self.tasks)
        _count(self.kind, "n_boot", self.n_boot)
        if self.n_boot is not None and self.n_boot < 20:
            raise InvalidInputError(
                f"n_boot must be at least 20 for an interval, got {self.n_boot} ({self.kind} job payload)"
            )


@dataclass(frozen=True)
class _OneEstimatorPayload(StudyJobPayload):
    """A study job about one estimator family (left unset: the job kind's default)."""

    estimator: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _estimator(self.kind, self.estimator)


@dataclass(frozen=True)
class CausalRefutePayload(_OneEstimatorPayload):
    """The refutation suite of a study version's `estimator` (default aipw); each refitting check a task."""

    kind: ClassVar[str] = "causal_refute"


@dataclass(frozen=True)
class CausalSensitivityPayload(_OneEstimatorPayload):
    """The sensitivity sweep of a study version's `estimator` (default regression) to an unobserved confounder."""

    kind: ClassVar[str] = "causal_sensitivity"


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


_EDGE_CHOICES = {"target": ("c", "onnx"), "quantize": ("float32", "int16", "int8")}  # ws.edge.build's


@dataclass(frozen=True)
class EdgeBuildPayload(JobPayload):
    """One edge build of the model version `model` ('credit@3'): what `ws.edge.build` takes (left
    unset: its defaults, C float32 for a Cortex-M4, with the emulated run). One active job per
    version and build."""

    kind: ClassVar[str] = "edge_build"
    target: str | None = None
    quantize: str | None = None
    mcu: str | None = None
    qemu: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in _EDGE_CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise InvalidInputError(f"{self.kind} job payload: {name!r} must be one of {allowed}, got {value!r}")
        _text(self.kind, "mcu", self.mcu, optional=True)
        if self.qemu is not None and not isinstance(self.qemu, bool):
            raise InvalidInputError(f"{self.kind} job payload: 'qemu' must be true or false, got {self.qemu!r}")

    @property
    def dedup_key(self) -> str:
        return f"edge_build:{self.model}:{self.target or 'c'}/{self.quantize or 'float32'}/{self.mcu or 'cortex-m4'}"


@dataclass(frozen=True)
class EdgeFollowPayload(JobPayload):
    """The edge targets of `model`'s project rebuilt for the version `model` ('credit@4', a new champion)
    and judged; a failing build raises the edge-build-failed alert (`edge: {on_failure: alert}`)."""

    kind: ClassVar[str] = "edge_follow"

    @property
    def dedup_key(self) -> str:
        return f"edge_follow:{self.model}"


@dataclass(frozen=True)
class _CorpusPayload(JobPayload):
    """What the GenAI jobs share: the corpus version `corpus` and the training options (left unset: the
    facade's defaults); `options()` are the keyword arguments that are set."""

    corpus: str = ""
    text_column: str | None = None
    steps: int | None = None
    tokens: int | None = None
    batch: int | None = None
    lr: float | None = None
    seed: int | None = None
    device: str | None = None
    threads: int | None = None
    valid_share: float | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("corpus", "text_column", "device", "name", "general"):
            _text(self.kind, name, getattr(self, name, None), optional=name != "corpus")
        for name in ("steps", "tokens", "batch", "threads", "vocab_size", "r"):
            _count(self.kind, name, getattr(self, name, None))
        for name, high in (("lr", 1.0), ("valid_share", 0.5)):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= high
            ):
                raise InvalidInputError(
                    f"{self.kind} job payload: {name!r} must be a number in (0, {high}], got {value!r}"
                )

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in ("model", "corpus")}


@dataclass(frozen=True)
class GenAITrainPayload(_CorpusPayload):
    """A language model trained on the corpus version `corpus` and registered as the next version of
    `model` (a name): what `ws.genai.train` takes. One active job per name."""

    kind: ClassVar[str] = "genai_train"
    config: str | dict[str, Any] | None = None
    vocab_size: int | None = None
    general: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.config is not None and not isinstance(self.config, (str, dict)):
            raise InvalidInputError(f"{self.kind} job payload: 'config' must be a preset name or an object")

    @property
    def dedup_key(self) -> str:
        return f"{self.kind}:{self.model}"


@dataclass(frozen=True)
class GenAITunePayload(_CorpusPayload):
    """The language model version `model` ('lm@champion') tuned on the corpus version `corpus` (LoRA or
    full) and registered: what `ws.genai.tune` takes. One active job per base and corpus."""

    kind: ClassVar[str] = "genai_tune"
    name: str | None = None
    method: str | None = None
    r: int | None = None
    alpha: float | None = None
    dropout: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method is not None and self.method not in ("lora", "full"):
            raise InvalidInputError(f"{self.kind} job payload: 'method' must be 'lora' or 'full', got {self.method!r}")
        # a job's base is a registered model: a worker must never read a folder a payload names
        try:
            parse_ref(self.model)
        except InvalidInputError:
            raise InvalidInputError(
                f"{self.kind} job payload: 'model' must be a model reference (name, name@3, name@alias), "
                f"got {self.model!r}; a checkpoint folder is tuned directly, not as a job"
            ) from None

    @property
    def dedup_key(self) -> str:
        return f"{self.kind}:{self.model}:{self.corpus}"


# The payload type of each job kind (the kinds keel.workspace.handlers runs).
PAYLOADS: dict[str, type[JobPayload]] = {
    p.kind: p
    for p in (
        RetrainPayload,
        BatchScorePayload,
        TunePayload,
        BatchExplainPayload,
        MonitorPayload,
        EdgeBuildPayload,
        EdgeFollowPayload,
        GenAITrainPayload,
        GenAITunePayload,
    )
}
# The causal study jobs (keel.workspace.causal_jobs): about a study version, not a model.
STUDY_PAYLOADS: dict[str, type[StudyJobPayload]] = {
    p.kind: p for p in (CausalBootstrapPayload, CausalRefutePayload, CausalSensitivityPayload)
}


_ACTIONS = ("order_up_to", "delta", "quantity")  # keel.rl.agent.ACTION_KINDS


@dataclass(frozen=True)
class TrainPolicyPayload(_RecordPayload):
    """A decision policy trained on the twin version `twin` ('shop' or 'shop@2'): what `ws.rl.train`
    takes (left unset: its defaults). Not a JobPayload: it is about a twin, not a model. One active
    training per twin version."""

    kind: ClassVar[str] = "rl_train"
    twin: str
    register_as: str | None = None
    steps: int | None = None
    seeds: int | None = None
    action: str | None = None
    n_envs: int | None = None

    def __post_init__(self) -> None:
        _text(self.kind, "twin", self.twin)
        _text(self.kind, "register_as", self.register_as, optional=True)
        for name in ("steps", "seeds", "n_envs"):
            _count(self.kind, name, getattr(self, name))
        if self.action is not None and self.action not in _ACTIONS:
            raise InvalidInputError(f"{self.kind} job payload: 'action' must be one of {_ACTIONS}, got {self.action!r}")

    required: ClassVar[str] = "twin"
    what: ClassVar[str] = "the twin's name or reference"

    @property
    def dedup_key(self) -> str:
        return f"{self.kind}:{self.twin}"

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ws.rl.train that are set."""
        return {k: v for k, v in self.to_dict().items() if k != "twin"}


# The digital-twin jobs (keel.workspace.rl_train): about a twin version.
TWIN_PAYLOADS: dict[str, type[TrainPolicyPayload]] = {TrainPolicyPayload.kind: TrainPolicyPayload}
