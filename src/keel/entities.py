"""Frozen values that every layer shares: what the store returns and the facade hands out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "ColumnSchema",
    "DatasetVersion",
    "DatasetSummary",
    "ColumnChange",
    "DatasetDiff",
    "RunStatus",
    "Run",
    "MetricPoint",
    "ArtifactRecord",
    "ColumnSpec",
    "Signature",
    "ModelVersion",
    "RegisteredModel",
    "AliasEvent",
    "Lineage",
    "GcReport",
    "Comparison",
    "BoolOp",
    "OrderBy",
    "Role",
    "ApiToken",
    "MonitorRun",
    "RetrainDecision",
    "Job",
    "AlertSeverity",
    "AlertStatus",
    "AlertRule",
    "AlertChannel",
    "Alert",
    "AlertDelivery",
]


@dataclass(frozen=True)
class ColumnSchema:
    name: str
    type: str  # Arrow type, e.g. 'int64', 'double', 'string', 'dictionary<values=string, ...>'
    nullable: bool  # the column holds at least one null
    categories: tuple[str, ...] | None = None  # for categorical (dictionary) columns


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset, identified by the SHA-256 of its content."""

    name: str
    version: int
    digest: str  # 'sha256:<hex>'
    kind: str  # 'table' or 'files'
    num_rows: int  # rows of a table, files of a folder
    size_bytes: int
    columns: tuple[ColumnSchema, ...]
    profile: dict[str, Any]
    created_at: datetime
    author: str
    parent_version: int | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    latest_version: int
    num_versions: int
    created_at: datetime
    updated_at: datetime
    description: str = ""


@dataclass(frozen=True)
class ColumnChange:
    """How one column's distribution moved between two dataset versions."""

    name: str
    kind: str  # 'numeric' or 'categorical'
    statistic: str  # 'psi' for numeric, 'js_distance' for categorical
    value: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetDiff:
    a: str
    b: str
    added_columns: tuple[str, ...]
    removed_columns: tuple[str, ...]
    type_changes: tuple[tuple[str, str, str], ...]  # (column, type in a, type in b)
    rows_a: int
    rows_b: int
    columns: tuple[ColumnChange, ...]

    @property
    def rows_delta(self) -> int:
        return self.rows_b - self.rows_a

    @property
    def schema_changed(self) -> bool:
        return bool(self.added_columns or self.removed_columns or self.type_changes)


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"


@dataclass(frozen=True)
class ArtifactRecord:
    path: str
    digest: str
    size_bytes: int


@dataclass(frozen=True)
class Run:
    id: str
    experiment: str
    name: str
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each metric
    tags: dict[str, str]
    inputs: tuple[str, ...]  # dataset version refs the run read
    artifacts: tuple[ArtifactRecord, ...]
    code_version: str | None
    environment: dict[str, str]
    author: str

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: float  # seconds since the epoch


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str  # 'integer', 'float', 'boolean', 'string', 'category', 'datetime'
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Signature:
    """What a model version takes and gives."""

    inputs: tuple[ColumnSpec, ...]
    output: str  # 'classification', 'regression' or 'other'
    classes: tuple[Any, ...] | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [
                {"name": c.name, "type": c.type, **({"categories": list(c.categories)} if c.categories else {})}
                for c in self.inputs
            ],
            "output": self.output,
            "classes": None if self.classes is None else list(self.classes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(
                ColumnSpec(c["name"], c["type"], tuple(c["categories"]) if c.get("categories") else None)
                for c in data["inputs"]
            ),
            output=data["output"],
            classes=None if data.get("classes") is None else tuple(data["classes"]),
        )


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    flavor: str
    digest: str  # the artifact's 'sha256:<hex>'
    size_bytes: int
    signature: Signature | None
    input_example: list[dict[str, Any]] | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    description: str
    run_id: str | None
    datasets: tuple[str, ...]  # dataset version refs it was trained on
    aliases: tuple[str, ...]
    created_at: datetime
    author: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    latest_version: int
    num_versions: int
    aliases: dict[str, int]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AliasEvent:
    model: str
    alias: str
    from_version: int | None  # None: the alias was created
    to_version: int | None  # None: the alias was removed
    at: datetime
    author: str
    reason: str


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: the run that trained it and the data that run read."""

    model: str  # 'credit-risk@4'
    run_id: str | None
    experiment: str | None
    datasets: tuple[str, ...]
    dataset_digests: tuple[str, ...]


@dataclass(frozen=True)
class GcReport:
    referenced: int
    deleted: tuple[str, ...]
    kept_young: int
    freed_bytes: int
    dry_run: bool


# -- run search: the parsed filter that tracking hands to storage ------------------------------
@dataclass(frozen=True)
class Comparison:
    """`metrics.auc > 0.8`: field kind ('metrics', 'params', 'tags', 'attributes'), key, op, value."""

    kind: str
    key: str
    op: str  # '=', '!=', '<', '<=', '>', '>=', 'like'
    value: float | str


@dataclass(frozen=True)
class BoolOp:
    op: str  # 'and' or 'or'
    terms: tuple[Comparison | BoolOp, ...]


@dataclass(frozen=True)
class OrderBy:
    kind: str  # 'metrics', 'params', 'attributes'
    key: str
    descending: bool = False


class Role(StrEnum):
    """API roles. `predictor` and `reader` are separate: a service that asks for predictions cannot
    read training data, artifacts or the prediction log, and a dashboard user cannot predict.
    `writer` holds both, `admin` everything."""

    READER = "reader"  # read datasets, runs, models, artifacts, the prediction log, the dashboard
    PREDICTOR = "predictor"  # call prediction endpoints; feedback on its own predictions
    WRITER = "writer"  # reader + predictor + upload datasets, register, write runs
    ADMIN = "admin"  # writer + move aliases, configure monitors, manage tokens

    @property
    def rank(self) -> int:
        """Position in the declared order (for sorting); not a permission: use allows()."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may."""
        return needed in _GRANTS[self]


_GRANTS: Mapping[Role, frozenset[Role]] = MappingProxyType(
    {
        Role.READER: frozenset({Role.READER}),
        Role.PREDICTOR: frozenset({Role.PREDICTOR}),
        Role.WRITER: frozenset({Role.READER, Role.PREDICTOR, Role.WRITER}),
        Role.ADMIN: frozenset(Role),
    }
)


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class MonitorRun:
    """One check of a model's live traffic against its reference."""

    id: int
    model: str
    model_version: int | None
    reference: str  # the dataset version ref the window was compared with
    started_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    rows: int
    labelled_rows: int
    summary: dict[str, Any]
    # The version the monitor watches now, when this check was of another one (the champion moved
    # since: a promotion or a rollback); None for a check of the version serving now.
    superseded_by: int | None = None


@dataclass(frozen=True)
class RetrainDecision:
    """One decision about a model's champion: a trained candidate promoted, held for approval or
    rejected by the gate, a failed training, an approval, a rollback; with its evidence."""

    id: int
    model: str
    version: int | None  # the candidate (or, for a rollback, the version restored)
    champion_version: int | None  # the champion before the decision
    trigger: str
    outcome: str
    evidence: dict[str, Any]
    run_id: str | None
    author: str
    at: datetime

    def summary(self) -> str:
        """One line on why the decision went the way it did (timelines in the CLI and the dashboard)."""
        ev = self.evidence
        if self.outcome == "failed":
            return str(ev.get("error", ""))[:200]
        if self.trigger == "rollback":
            return f"v{ev.get('from')} -> v{ev.get('to')}" + (f": {ev['reason']}" if ev.get("reason") else "")
        if self.trigger == "approval":
            return str(ev.get("reason") or "approved")
        return "; ".join(ev.get("gate", {}).get("reasons", []))[:300]


@dataclass(frozen=True)
class Job:
    """A unit of background work (a retraining, a batch scoring) and where it stands."""

    id: int
    kind: str
    payload: dict[str, Any]
    status: str  # 'queued', 'running', 'succeeded', 'failed'
    attempts: int
    max_attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    author: str
    dedup_key: str | None = None
    progress: dict[str, Any] | None = None  # {done, total, stage}, from a job that reports its steps


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertStatus(StrEnum):
    """An alert is open until someone acknowledges it (they are on it) or resolves it (closed)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertRule:
    """Fire when `metric op threshold` holds for a monitored value of `model`."""

    id: int
    model: str
    name: str
    metric: str
    op: str  # '>', '>=', '<' or '<='
    threshold: float
    feature: str | None  # None: any feature; '' for rules on model-level metrics
    severity: AlertSeverity
    cooldown_s: int  # an open alert is notified again only after this long
    window: str | None  # a label for people ('1000 rows', '1h'); the monitor chooses the window
    enabled: bool
    created_at: datetime

    @property
    def condition(self) -> str:
        """'psi >= 0.2 on any feature', "psi > 0.3 on 'income'", 'roc_auc_drop > 0.05'."""
        where = " on any feature" if self.feature is None else (f" on {self.feature!r}" if self.feature else "")
        return f"{self.metric} {self.op} {self.threshold:g}{where}"


@dataclass(frozen=True)
class AlertChannel:
    """Where alerts are sent: kind 'webhook', 'email' or 'log', with its settings (never a password)."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Alert:
    """A rule firing for one model and feature, with its evidence; one per episode until resolved."""

    id: int
    model: str
    rule: str
    dedup_key: str
    status: AlertStatus
    severity: AlertSeverity
    title: str
    evidence: dict[str, Any]  # metric, feature, value, threshold, reference, window, statistics...
    count: int  # how many checks saw it firing
    opened_at: datetime
    last_seen_at: datetime
    last_notified_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None

    @property
    def feature(self) -> str | None:
        value = self.evidence.get("feature")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class AlertDelivery:
    """The outcome of sending one notification of an alert to one channel, after retries."""

    id: int
    alert_id: int
    channel: str
    status: str  # 'delivered' or 'failed'
    attempts: int
    error: str | None  # every failed attempt's error, in order
    at: datetime
