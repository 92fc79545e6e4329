"""What explaining a model version needs, kept with it: its global importance (one row per
version, written once) and the training sample it was registered with (a blob the version owns)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from keel.errors import ConflictError
from keel.storage import schema as s
from keel.storage._common import Transactional, now

__all__ = ["ImportanceStore", "importance_row", "sample_owner"]

t = s.model_importance


def sample_owner(version_id: int) -> str:
    """The blob_refs owner of a version's training sample: the version's own owner plus a role, so
    that `gc` keeps the sample and the explainer finds it without a column of its own."""
    return f"model_version:{version_id}:training_sample"


def importance_row(model: str, version: int, record: dict[str, Any], created_at: Any) -> dict[str, Any]:
    """The model_importance row of a record {"importance", "method", "space", "rows"}."""
    return {
        "model_name": model,
        "version": version,
        "importance": record["importance"],
        "method": record["method"][:128],
        "space": record["space"][:32],
        "rows": record["rows"],
        "created_at": created_at,
    }


class ImportanceStore(Transactional):
    def save(self, model: str, version: int, record: dict[str, Any]) -> None:
        """Store a version's importance record once; a second writer's is dropped (it is the same sample)."""
        try:
            with self.begin() as conn:
                conn.execute(t.insert(), importance_row(model, version, record, now()))
        except ConflictError:
            pass

    def get(self, model: str, version: int) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute(select(t).where(t.c.model_name == model, t.c.version == version)).first()
        if row is None:
            return None
        return {
            "importance": row.importance,
            "method": row.method,
            "space": row.space,
            "rows": row.rows,
            "created_at": row.created_at.isoformat(),
        }

    def training_sample(self, model: str, version: int) -> str | None:
        """The digest of the training sample stored when the version was registered with X, if any."""
        mv, rm, refs = s.model_versions, s.registered_models, s.blob_refs
        with self.connect() as conn:
            version_id = conn.execute(
                select(mv.c.id).join(rm, rm.c.id == mv.c.model_id).where(rm.c.name == model, mv.c.version == version)
            ).scalar()
            if version_id is None:
                return None
            return conn.execute(select(refs.c.digest).where(refs.c.owner == sample_owner(version_id))).scalar()
