"""Keel: a local-first machine-learning platform.

ws = keel.Workspace()                 versioned data, tracked runs, a model registry
ws.datasets   -> DatasetVersion       add, load ('credit@3'), diff
ws.runs       -> ActiveRun / Run      params, metric series, inputs; search in SQL
ws.models     -> ModelVersion         register with lineage, aliases, load ('credit-risk@champion')
ws.predictions, ws.monitoring         the prediction log; drift, quality, performance checks; alerts
ws.retraining -> RetrainDecision      keel.Project / keel.yaml: train, gate, promote, approve, roll back
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.errors import (
    AccessDeniedError,
    ConfigError,
    ConflictError,
    CorruptArtifactError,
    InvalidInputError,
    InvalidModelError,
    KeelError,
    MissingDependencyError,
    NotFoundError,
    SchemaVersionError,
    SignatureError,
    StoreUnavailableError,
    UnsafeLoadError,
)
from keel.settings import Settings

if TYPE_CHECKING:
    from keel.client import Client
    from keel.workspace import Workspace

from keel._version import __version__

__all__ = [
    "Workspace",
    "Client",
    "Project",
    "Settings",
    "KeelError",
    "AccessDeniedError",
    "NotFoundError",
    "ConflictError",
    "InvalidInputError",
    "InvalidModelError",
    "SignatureError",
    "ConfigError",
    "MissingDependencyError",
    "UnsafeLoadError",
    "CorruptArtifactError",
    "SchemaVersionError",
    "StoreUnavailableError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Workspace pulls in pandas, pyarrow and SQLAlchemy: load them on first use, so that
    # `import keel` and `keel --help` stay fast.
    if name == "Workspace":
        from keel.workspace import Workspace

        return Workspace
    if name == "Project":
        from keel.retraining.project import Project

        return Project
    if name == "Client":
        from keel.client import Client

        return Client
    raise AttributeError(f"module 'keel' has no attribute {name!r}")
