"""Retrieval index versions and the embedding cache in the metadata store. The tables are declared
here, on schema.metadata (so migrations are checked against them like every other table), because
schema.py is at the module size limit. Migration 0014.

An index version names its corpus version (by name, number and digest) and its blob (whose
`blob_refs` row is written in the same transaction). The embedding cache maps (embedder, chunk
content hash) to a vector, so a new corpus version re-embeds only the chunks that changed."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)

from keel.entities_genai import TextIndex
from keel.refs import Ref
from keel.storage import schema as s
from keel.storage._common import Transactional, latest_versions, now, retry_conflicts, upsert, utc, versioned_row

__all__ = ["TextIndexStore", "genai_embeddings", "genai_indexes"]

genai_indexes = Table(
    "genai_indexes",
    s.metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("dataset_name", String(128), nullable=False),
    Column("dataset_version", Integer, nullable=False),
    Column("dataset_digest", String(80), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("author", String(128), nullable=False),
    Column("created_at", s.Timestamp, nullable=False),
    UniqueConstraint("name", "version"),
)

genai_embeddings = Table(
    "genai_embeddings",
    s.metadata,
    Column("embedder", String(128), primary_key=True),
    Column("hash", String(80), primary_key=True),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("created_at", s.Timestamp, nullable=False),
)

gi, ge = genai_indexes, genai_embeddings


def owner(index_id: int) -> str:
    """The blob_refs owner of an index version's blob."""
    return f"genai_index:{index_id}"


class TextIndexStore(Transactional):
    @retry_conflicts()
    def add(
        self,
        name: str,
        *,
        dataset: tuple[str, int, str],
        digest: str,
        size_bytes: int,
        spec: dict[str, Any],
        description: str,
        author: str,
    ) -> TextIndex:
        """Store the next version of index `name` over `dataset` (name, version, digest), whose blob is written."""
        with self.begin() as conn:
            latest = conn.execute(select(func.max(gi.c.version)).where(gi.c.name == name)).scalar()
            row_id = conn.execute(
                gi.insert().values(
                    name=name,
                    version=(latest or 0) + 1,
                    dataset_name=dataset[0],
                    dataset_version=dataset[1],
                    dataset_digest=dataset[2],
                    digest=digest,
                    size_bytes=size_bytes,
                    spec=spec,
                    description=description,
                    author=author,
                    created_at=now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(s.blob_refs.insert().values(digest=digest, owner=owner(row_id)))
            return _index(conn.execute(select(gi).where(gi.c.id == row_id)).one())

    def get(self, ref: Ref) -> TextIndex:
        with self.connect() as conn:
            return _index(self._row(conn, ref))

    def list(self) -> builtins.list[TextIndex]:
        """The latest version of every index, by name."""
        q = latest_versions(gi)
        with self.connect() as conn:
            return [_index(r) for r in conn.execute(q)]

    def versions(self, name: str) -> builtins.list[TextIndex]:
        with self.connect() as conn:
            rows = conn.execute(select(gi).where(gi.c.name == name).order_by(gi.c.version)).all()
            if not rows:
                self._row(conn, Ref(name))  # raises NotFoundError naming the known indexes
        return [_index(r) for r in rows]

    def embeddings(self, embedder: str, hashes: Iterable[str]) -> dict[str, bytes]:
        """The cached vectors of these chunk hashes (those found), as stored bytes."""
        wanted = list(dict.fromkeys(hashes))
        out: dict[str, bytes] = {}
        with self.connect() as conn:
            for start in range(0, len(wanted), 500):  # bounded IN lists on every database
                part = wanted[start : start + 500]
                q = select(ge.c.hash, ge.c.vector).where(ge.c.embedder == embedder, ge.c.hash.in_(part))
                out.update({h: bytes(v) for h, v in conn.execute(q)})
        return out

    def put_embeddings(self, embedder: str, vectors: Mapping[str, bytes]) -> None:
        """Cache vectors by chunk hash (an existing entry is kept: same content, same vector)."""
        if not vectors:
            return
        ts = now()
        rows = [{"embedder": embedder, "hash": h, "vector": v, "created_at": ts} for h, v in vectors.items()]
        with self.begin() as conn:
            upsert(conn, ge, rows, ["embedder", "hash"], [])

    def _row(self, conn: Connection, ref: Ref) -> Row[Any]:
        return versioned_row(
            conn,
            gi,
            ref,
            noun="index",
            plural="indexes",
            missing="No index named {name!r}; build one with 'keel genai index'",
        )


def _index(row: Row[Any]) -> TextIndex:
    return TextIndex(
        name=row.name,
        version=row.version,
        dataset=f"{row.dataset_name}@{row.dataset_version}",
        dataset_digest=row.dataset_digest,
        digest=row.digest,
        size_bytes=int(row.size_bytes),
        spec=dict(row.spec),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        author=row.author,
        description=row.description,
    )
