"""Edge builds of model versions in the metadata store: one row per build, naming its model version
and its archive blob (whose `blob_refs` row is written in the same transaction)."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, Row, String, Table, select

from keel.entities_edge import EdgeBuild
from keel.errors import NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, utc

__all__ = ["EdgeStore", "edge_builds"]

# Declared here, on schema.metadata (so migrations are checked against it like every other table),
# because schema.py is at the module size limit. Migration 0012.
edge_builds = Table(
    "edge_builds",
    s.metadata,
    Column("id", Integer, primary_key=True),
    Column("model_version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("target", String(8), nullable=False),
    Column("quantize", String(16), nullable=False),
    Column("mcu", String(32), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("files", JSON, nullable=False),
    Column("report", JSON, nullable=False),
    Column("author", String(128), nullable=False),
    Column("created_at", s.Timestamp, nullable=False),
    Index("ix_edge_builds_model_version_id", "model_version_id"),
    Index("ix_edge_builds_model_name", "model_name", "model_version"),
)

eb, mv, rm = edge_builds, s.model_versions, s.registered_models


def owner(build_id: int) -> str:
    """The blob_refs owner of a build's archive."""
    return f"edge_build:{build_id}"


class EdgeStore(Transactional):
    def add(
        self,
        model: tuple[str, int],
        *,
        target: str,
        quantize: str,
        mcu: str,
        digest: str,
        size_bytes: int,
        files: builtins.list[str],
        report: dict[str, Any],
        author: str,
    ) -> EdgeBuild:
        """Store a build of model version `model` (name, version) whose archive blob is already written."""
        name, version = model
        with self.begin() as conn:
            version_id = conn.execute(
                select(mv.c.id).join(rm, rm.c.id == mv.c.model_id).where(rm.c.name == name, mv.c.version == version)
            ).scalar()
            if version_id is None:
                raise NotFoundError(f"No model version {name}@{version} to record an edge build of")
            row_id = conn.execute(
                eb.insert().values(
                    model_version_id=version_id,
                    model_name=name,
                    model_version=version,
                    target=target,
                    quantize=quantize,
                    mcu=mcu,
                    digest=digest,
                    size_bytes=size_bytes,
                    files=files,
                    report=report,
                    author=author,
                    created_at=now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(s.blob_refs.insert().values(digest=digest, owner=owner(row_id)))
            return _build(conn.execute(select(eb).where(eb.c.id == row_id)).one())

    def get(self, build_id: int) -> EdgeBuild:
        with self.connect() as conn:
            row = conn.execute(select(eb).where(eb.c.id == build_id)).first()
            if row is None:
                known = conn.execute(select(eb.c.id).order_by(eb.c.id.desc()).limit(10)).scalars().all()
                raise NotFoundError(
                    f"No edge build {build_id}; recent builds: {', '.join(map(str, known)) or 'none'} "
                    "(list them with 'keel edge list')"
                )
            return _build(row)

    def list(self, name: str | None = None, version: int | None = None) -> builtins.list[EdgeBuild]:
        """Builds, newest first: all, a model's, or one model version's."""
        q = select(eb)
        if name is not None:
            q = q.where(eb.c.model_name == name)
        if version is not None:
            q = q.where(eb.c.model_version == version)
        with self.connect() as conn:
            return [_build(r) for r in conn.execute(q.order_by(eb.c.id.desc()))]


def _build(row: Row[Any]) -> EdgeBuild:
    return EdgeBuild(
        id=row.id,
        model=f"{row.model_name}@{row.model_version}",
        target=row.target,
        quantize=row.quantize,
        mcu=row.mcu,
        digest=row.digest,
        size_bytes=int(row.size_bytes),
        files=tuple(row.files),
        report=dict(row.report),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        author=row.author,
    )
