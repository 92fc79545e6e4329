"""Storage: the only package that imports SQLAlchemy and Alembic.

`schema.py` holds every table; `migrations/` one Alembic history for SQLite and PostgreSQL;
one small store per aggregate (`datasets.py`, `runs.py`, `models.py`) returns entities, never
rows; `blobs.py` keeps content-addressed artifacts on any fsspec filesystem.
May import: keel.errors, keel.refs, keel.entities, keel.settings.
"""

from __future__ import annotations

from sqlalchemy import select

from keel.storage import schema
from keel.storage._common import translate_errors
from keel.storage.alerts import AlertStore
from keel.storage.blobs import BlobInfo, BlobStore, sha256_file
from keel.storage.changes import ChangeFeed, open_change_feed
from keel.storage.datasets import DatasetStore
from keel.storage.edge import EdgeStore
from keel.storage.engine import head_revision, mask_url, open_engine, schema_revision
from keel.storage.genai import TextIndexStore
from keel.storage.importance import ImportanceStore
from keel.storage.jobs import JobStore
from keel.storage.leases import LeaseStore
from keel.storage.models import ModelStore
from keel.storage.monitors import MonitorStore
from keel.storage.predictions import PredictionStore
from keel.storage.retraining import RetrainingStore
from keel.storage.runs import RunStore
from keel.storage.studies import StudyStore
from keel.storage.tokens import TokenStore
from keel.storage.twins import TwinStore

__all__ = ["MetadataStore", "BlobStore", "BlobInfo", "sha256_file", "head_revision", "schema_revision", "mask_url"]


class MetadataStore:
    """The metadata store of one workspace: an engine and one store per aggregate."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "normal") -> None:
        self.url = url
        self.engine = open_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.datasets = DatasetStore(self.engine)
        self.alerts = AlertStore(self.engine)
        self.runs = RunStore(self.engine)
        self.models = ModelStore(self.engine)
        self.tokens = TokenStore(self.engine)
        self.monitors = MonitorStore(self.engine)
        self.retraining = RetrainingStore(self.engine)
        self.jobs = JobStore(self.engine)
        self.importance = ImportanceStore(self.engine)
        self.predictions = PredictionStore(self.engine)
        self.studies = StudyStore(self.engine)
        self.edge = EdgeStore(self.engine)
        self.twins = TwinStore(self.engine)
        self.indexes = TextIndexStore(self.engine)
        self.leases = LeaseStore(self.engine)  # once-only work among the processes sharing the store
        # a counter every process sees change when the registry changed anywhere (server caches)
        self.changes: ChangeFeed = open_change_feed(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def revision(self) -> str | None:
        return schema_revision(self.engine)

    def referenced_digests(self) -> set[str]:
        """Every blob digest some metadata row points at."""
        with translate_errors(), self.engine.connect() as conn:
            return set(conn.execute(select(schema.blob_refs.c.digest).distinct()).scalars())

    def dataset_refs(self, ids: list[int]) -> dict[int, tuple[str, str]]:
        with translate_errors(), self.engine.connect() as conn:
            return self.datasets.refs_by_ids(conn, ids)

    def close(self) -> None:
        self.changes.close()
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"MetadataStore({mask_url(self.url)!r})"
