"""Global importance of model versions: one row per version, written once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from keel.errors import ConflictError
from keel.storage import schema as s
from keel.storage._common import Transactional, now

__all__ = ["ImportanceStore"]

t = s.model_importance


class ImportanceStore(Transactional):
    def save(self, model: str, version: int, importance: dict[str, float], *, method: str, space: str, rows: int) -> None:
        """Store a version's importance once; a second writer's is dropped (it is the same sample)."""
        try:
            with self.begin() as conn:
                conn.execute(t.insert().values(model_name=model, version=version, importance=importance, method=method[:128],
                                               space=space[:32], rows=rows, created_at=now()))  # fmt: skip
        except ConflictError:
            pass

    def get(self, model: str, version: int) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute(select(t).where(t.c.model_name == model, t.c.version == version)).first()
        if row is None:
            return None
        return {"importance": row.importance, "method": row.method, "space": row.space, "rows": row.rows,
                "created_at": row.created_at.isoformat()}  # fmt: skip
