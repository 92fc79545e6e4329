"""Digital twin versions and their results (baselines, optimum, policy evaluations, trajectories) in the
metadata store. The tables are declared here, on schema.metadata (so migrations are checked against
them like every other table), because schema.py is at the module size limit."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)

from keel.entities_rl import Twin, TwinResult
from keel.refs import Ref
from keel.storage import schema as s
from keel.storage._common import Transactional, latest_versions, now, retry_conflicts, utc, versioned_row

__all__ = ["TwinStore"]

rl_twins = Table(
    "rl_twins",
    s.metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("dataset_name", String(128), nullable=False),
    Column("dataset_version", Integer, nullable=False),
    Column("dataset_digest", String(80), nullable=False),
    Column("spec", JSON, nullable=False),  # system, demand model, fit, column, period
    Column("description", Text, nullable=False, default=""),
    Column("author", String(128), nullable=False),
    Column("created_at", s.Timestamp, nullable=False),
    UniqueConstraint("name", "version"),
)

rl_results = Table(
    "rl_results",
    s.metadata,
    Column("id", Integer, primary_key=True),
    Column("twin_id", Integer, ForeignKey("rl_twins.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("author", String(128), nullable=False),
    Column("created_at", s.Timestamp, nullable=False),
    Index("ix_rl_results_twin_id_kind", "twin_id", "kind"),
)


class TwinStore(Transactional):
    @retry_conflicts()
    def add(
        self,
        name: str,
        *,
        kind: str,
        dataset: tuple[str, int, str],
        spec: dict[str, Any],
        description: str,
        author: str,
    ) -> Twin:
        """Store the next version of twin `name`; `dataset` is (name, version, digest)."""
        with self.begin() as conn:
            latest = conn.execute(select(func.max(rl_twins.c.version)).where(rl_twins.c.name == name)).scalar()
            row_id = conn.execute(
                rl_twins.insert().values(
                    name=name,
                    version=(latest or 0) + 1,
                    kind=kind,
                    dataset_name=dataset[0],
                    dataset_version=dataset[1],
                    dataset_digest=dataset[2],
                    spec=spec,
                    description=description,
                    author=author,
                    created_at=now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return _twin(conn.execute(select(rl_twins).where(rl_twins.c.id == row_id)).one())

    def get(self, ref: Ref) -> Twin:
        with self.connect() as conn:
            return _twin(self._row(conn, ref))

    def list(self) -> builtins.list[Twin]:
        """The latest version of every twin, by name."""
        t = rl_twins
        q = latest_versions(t)
        with self.connect() as conn:
            return [_twin(r) for r in conn.execute(q)]

    def versions(self, name: str) -> builtins.list[Twin]:
        with self.connect() as conn:
            rows = conn.execute(select(rl_twins).where(rl_twins.c.name == name).order_by(rl_twins.c.version)).all()
            if not rows:
                self._row(conn, Ref(name))  # raises NotFoundError naming the known twins
        return [_twin(r) for r in rows]

    def add_result(self, ref: Ref, kind: str, payload: dict[str, Any], *, author: str) -> TwinResult:
        """Store one result of a twin version (`payload`: plain JSON)."""
        with self.begin() as conn:
            twin = self._row(conn, ref)
            row_id = conn.execute(
                rl_results.insert().values(twin_id=twin.id, kind=kind, payload=payload, author=author, created_at=now())
            ).inserted_primary_key[0]  # type: ignore[index]
            row = conn.execute(select(rl_results).where(rl_results.c.id == row_id)).one()
            return _result(row, f"{twin.name}@{twin.version}")

    def results(self, ref: Ref, kind: str | None = None) -> builtins.list[TwinResult]:
        """The results of one twin version (of `kind`, or all), oldest first."""
        with self.connect() as conn:
            twin = self._row(conn, ref)
            q = select(rl_results).where(rl_results.c.twin_id == twin.id)
            if kind is not None:
                q = q.where(rl_results.c.kind == kind)
            rows = conn.execute(q.order_by(rl_results.c.id)).all()
        return [_result(r, f"{twin.name}@{twin.version}") for r in rows]

    def _row(self, conn: Connection, ref: Ref) -> Row[Any]:
        return versioned_row(
            conn,
            rl_twins,
            ref,
            noun="twin",
            plural="twins",
            missing="No twin named {name!r}; fit one with 'keel rl twin'",
        )


def _twin(row: Row[Any]) -> Twin:
    return Twin(
        name=row.name,
        version=row.version,
        kind=row.kind,
        dataset=f"{row.dataset_name}@{row.dataset_version}",
        dataset_digest=row.dataset_digest,
        spec=dict(row.spec),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        author=row.author,
        description=row.description,
    )


def _result(row: Row[Any], twin: str) -> TwinResult:
    return TwinResult(
        id=row.id,
        twin=twin,
        kind=row.kind,
        payload=dict(row.payload),
        author=row.author,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
    )
