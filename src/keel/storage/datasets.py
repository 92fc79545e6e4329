"""Dataset versions in the metadata store."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import Connection, Row, func, select

from keel.entities import ColumnSchema, DatasetSummary, DatasetVersion
from keel.errors import InvalidInputError, NotFoundError
from keel.refs import Ref
from keel.storage import schema as s
from keel.storage._common import Transactional, now, retry_conflicts, utc

__all__ = ["DatasetStore"]


class DatasetStore(Transactional):
    @retry_conflicts()
    def add_version(
        self,
        name: str,
        *,
        digest: str,
        kind: str,
        num_rows: int,
        size_bytes: int,
        columns: list[dict[str, Any]],
        profile: dict[str, Any],
        author: str,
        description: str,
        tags: dict[str, str],
        blob_digests: list[str],
        parent_version: int | None = None,
    ) -> tuple[DatasetVersion, bool]:
        """Record a version; return (version, created). Same content returns the stored version."""
        with self.begin() as conn:
            ts = now()
            ds_id = conn.execute(select(s.datasets.c.id).where(s.datasets.c.name == name)).scalar()
            if ds_id is None:
                ds_id = conn.execute(
                    s.datasets.insert().values(name=name, description=description, created_at=ts, updated_at=ts)
                ).inserted_primary_key[0]  # type: ignore[index]
            existing = conn.execute(
                _select_versions().where(
                    s.dataset_versions.c.dataset_id == ds_id, s.dataset_versions.c.digest == digest
                )
            ).first()
            if existing is not None:
                return _version(existing), False
            latest = conn.execute(
                select(func.max(s.dataset_versions.c.version)).where(s.dataset_versions.c.dataset_id == ds_id)
            ).scalar()
            if parent_version is not None and (latest is None or not 1 <= parent_version <= latest):
                raise NotFoundError(f"Dataset {name!r} has no version {parent_version} to be a parent")
            version = (latest or 0) + 1
            row_id = conn.execute(
                s.dataset_versions.insert().values(
                    dataset_id=ds_id,
                    version=version,
                    digest=digest,
                    kind=kind,
                    num_rows=num_rows,
                    size_bytes=size_bytes,
                    columns=columns,
                    profile=profile,
                    created_at=ts,
                    author=author,
                    parent_version=parent_version if parent_version is not None else latest,
                    description=description,
                    tags=tags,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            owner = f"dataset_version:{row_id}"
            conn.execute(s.blob_refs.insert(), [{"digest": d, "owner": owner} for d in sorted(set(blob_digests))])
            conn.execute(s.datasets.update().where(s.datasets.c.id == ds_id).values(updated_at=ts))
            row = conn.execute(_select_versions().where(s.dataset_versions.c.id == row_id)).one()
            return _version(row), True

    def get(self, ref: Ref) -> DatasetVersion:
        with self.connect() as conn:
            return _version(self._row(conn, ref))

    def get_id(self, ref: Ref) -> int:
        with self.connect() as conn:
            return int(self._row(conn, ref).id)

    def _row(self, conn: Connection, ref: Ref) -> Row[Any]:
        if ref.alias is not None:
            raise InvalidInputError(
                f"Dataset reference {str(ref)!r}: datasets are addressed by version number, 'latest' "
                "or a content-hash prefix of at least 6 hex digits"
            )
        ds_id = conn.execute(select(s.datasets.c.id).where(s.datasets.c.name == ref.name)).scalar()
        if ds_id is None:
            known = conn.execute(select(s.datasets.c.name).order_by(s.datasets.c.name).limit(20)).scalars().all()
            raise NotFoundError(f"No dataset named {ref.name!r}. Known datasets: {', '.join(known) or 'none'}")
        q = _select_versions().where(s.dataset_versions.c.dataset_id == ds_id)
        if ref.version is not None:
            row = conn.execute(q.where(s.dataset_versions.c.version == ref.version)).first()
            if row is None:
                latest = conn.execute(
                    select(func.max(s.dataset_versions.c.version)).where(s.dataset_versions.c.dataset_id == ds_id)
                ).scalar()
                raise NotFoundError(f"Dataset {ref.name!r} has no version {ref.version}; the latest is {latest}")
            return row
        if ref.digest is not None:
            rows = conn.execute(q.where(s.dataset_versions.c.digest.like(f"sha256:{ref.digest}%")).limit(2)).all()
            if not rows:
                raise NotFoundError(f"Dataset {ref.name!r} has no version whose hash starts with {ref.digest!r}")
            if len(rows) > 1:
                raise InvalidInputError(
                    f"Hash prefix {ref.digest!r} matches several versions of {ref.name!r}: give more digits"
                )
            return rows[0]
        row = conn.execute(q.order_by(s.dataset_versions.c.version.desc()).limit(1)).first()
        if row is None:
            raise NotFoundError(f"Dataset {ref.name!r} has no versions")
        return row

    def versions(self, name: str) -> list[DatasetVersion]:
        with self.connect() as conn:
            rows = conn.execute(
                _select_versions().where(s.datasets.c.name == name).order_by(s.dataset_versions.c.version)
            ).all()
            if not rows:
                self._row(conn, Ref(name))  # raises NotFoundError with the known names
            return [_version(r) for r in rows]

    def list(self) -> list[DatasetSummary]:
        v = s.dataset_versions
        q = (
            select(
                s.datasets.c.name,
                s.datasets.c.description,
                s.datasets.c.created_at,
                s.datasets.c.updated_at,
                func.max(v.c.version).label("latest"),
                func.count(v.c.id).label("n"),
            )
            .join(v, v.c.dataset_id == s.datasets.c.id)
            .group_by(s.datasets.c.id)
            .order_by(s.datasets.c.name)
        )
        with self.connect() as conn:
            return [
                DatasetSummary(
                    name=r.name,
                    latest_version=r.latest,
                    num_versions=r.n,
                    created_at=utc(r.created_at),  # type: ignore[arg-type]
                    updated_at=utc(r.updated_at),  # type: ignore[arg-type]
                    description=r.description or "",
                )
                for r in conn.execute(q)
            ]

    def refs_by_ids(self, conn: Connection, ids: builtins.list[int]) -> dict[int, tuple[str, str]]:
        """{dataset_version_id: (ref, digest)} for lineage answers."""
        if not ids:
            return {}
        rows = conn.execute(
            select(
                s.dataset_versions.c.id, s.datasets.c.name, s.dataset_versions.c.version, s.dataset_versions.c.digest
            )
            .join(s.datasets, s.datasets.c.id == s.dataset_versions.c.dataset_id)
            .where(s.dataset_versions.c.id.in_(ids))
        )
        return {r.id: (f"{r.name}@{r.version}", r.digest) for r in rows}


def _select_versions() -> Any:
    return select(s.dataset_versions, s.datasets.c.name).join(
        s.datasets, s.datasets.c.id == s.dataset_versions.c.dataset_id
    )


def _version(r: Row[Any]) -> DatasetVersion:
    return DatasetVersion(
        name=r.name,
        version=r.version,
        digest=r.digest,
        kind=r.kind,
        num_rows=r.num_rows,
        size_bytes=r.size_bytes,
        columns=tuple(
            ColumnSchema(c["name"], c["type"], c["nullable"], tuple(c["categories"]) if c.get("categories") else None)
            for c in r.columns
        ),
        profile=r.profile,
        created_at=utc(r.created_at),  # type: ignore[arg-type]
        author=r.author,
        parent_version=r.parent_version,
        description=r.description or "",
        tags=dict(r.tags or {}),
    )
