"""Copy one workspace's stores into another: every blob, verified, then every table's rows.

Used to move an embedded workspace (SQLite + a local folder) into server mode (PostgreSQL + S3).
The order is the store's own rule: blobs first, then the metadata that points at them. Each blob is
read from the source (verified against its content address on the way), written to the target and
read back from the target, verified again. The rows are then copied in foreign-key order in ONE
transaction, so a copy that fails leaves the target's tables empty (its schema and any blobs
already copied stay: blobs nothing points at are what `keel gc` removes).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Integer, Table, func, select, text

from keel.errors import ConflictError, InvalidInputError, NotFoundError
from keel.storage import schema
from keel.storage.blobs import BlobStore
from keel.storage.engine import mask_url, open_engine

__all__ = ["MigrationReport", "TableCount", "copy_workspace"]

_BATCH = 1000  # rows per INSERT: large enough to amortise round trips, small enough for memory


@dataclass(frozen=True)
class TableCount:
    """One table's rows in the source and, after the copy, in the target."""

    table: str
    source: int
    target: int


@dataclass(frozen=True)
class MigrationReport:
    """What a migration copied and checked. With `dry_run`, nothing was written: `tables` holds the
    source's counts (target 0), and the blobs were only read and verified."""

    target_store: str  # password masked
    target_artifacts: str
    tables: tuple[TableCount, ...]
    blobs: int  # blobs copied (with dry_run: that would be copied)
    blob_bytes: int
    verified: int  # digests checked on the target (with dry_run: on the source)
    referenced: int  # distinct digests the metadata points at; every one is among the blobs
    seconds: float
    dry_run: bool

    @property
    def rows(self) -> int:
        return sum(t.source for t in self.tables)


def copy_workspace(
    source_engine: Engine, source_blobs: BlobStore, target_url: str, target_blobs: BlobStore, *, dry_run: bool = False
) -> MigrationReport:
    """Copy the metadata of `source_engine` and every blob of `source_blobs` into an empty target.

    Raises ConflictError when the target already holds Keel rows (nothing is written),
    CorruptArtifactError when a source blob no longer matches its digest, and NotFoundError when
    a digest the metadata points at has no blob in the source.
    """
    started = time.perf_counter()
    if _same_store(source_engine, target_url):
        raise InvalidInputError(f"The target store {mask_url(target_url)} is this workspace's own store")
    # With dry_run the target is only looked at: its schema is neither created nor upgraded.
    target = open_engine(target_url, upgrade=not dry_run)
    try:
        _check_empty(target, target_url)
        tables = _source_tables()
        referenced = _referenced(source_engine)
        count, size, verified = _copy_blobs(source_blobs, target_blobs, referenced, dry_run=dry_run)
        if dry_run:
            with source_engine.connect() as src:
                counts = tuple(TableCount(t.name, _count(src, t), 0) for t in tables)
        else:
            counts = _copy_rows(source_engine, target, tables)
    finally:
        target.dispose()
    return MigrationReport(
        target_store=mask_url(target_url),
        target_artifacts=target_blobs.url,
        tables=counts,
        blobs=count,
        blob_bytes=size,
        verified=verified,
        referenced=len(referenced),
        seconds=time.perf_counter() - started,
        dry_run=dry_run,
    )


def _same_store(source: Engine, target_url: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(target_url)
    except ArgumentError:  # open_engine reports an unusable URL with its own message
        return False
    src = source.url
    return (parsed.get_backend_name(), parsed.host, parsed.port, parsed.database) == (
        src.get_backend_name(),
        src.host,
        src.port,
        src.database,
    )


def _source_tables() -> list[Table]:
    # Parents before children: a row's foreign keys always point at rows already copied.
    return list(schema.metadata.sorted_tables)


def _check_empty(target: Engine, url: str) -> None:
    """Refuse a target holding any Keel row: merging two workspaces' ids is not a migration."""
    from sqlalchemy import inspect

    present = set(inspect(target).get_table_names())
    with target.connect() as conn:
        for table in _source_tables():
            if table.name not in present:
                continue  # dry run on a new database: no schema yet, so nothing in it
            if conn.execute(select(table).limit(1)).first() is not None:
                raise ConflictError(
                    f"The target store {mask_url(url)} is not empty: table {table.name!r} has rows. "
                    "Migrate into a new, empty database (or drop this one's tables first)."
                )


def _referenced(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(schema.blob_refs.c.digest).distinct()).scalars())


def _copy_blobs(source: BlobStore, target: BlobStore, referenced: set[str], *, dry_run: bool) -> tuple[int, int, int]:
    """Copy every blob of `source` (orphans too: a write in flight may be about to point at one);
    return (blobs, bytes, digests verified). Checks every referenced digest has a blob first."""
    blobs = sorted(source.iter_blobs(), key=lambda b: b.digest)
    missing = sorted(referenced - {b.digest for b in blobs})
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise NotFoundError(
            f"Artifact {missing[0]}{more} is referenced by the metadata but missing from {source.url}; "
            "restore it from a backup before migrating"
        )
    size = verified = 0
    with tempfile.TemporaryDirectory(prefix="keel-migrate-") as tmp:
        for blob in blobs:
            local = Path(tmp, "blob")
            source.get_file(blob.digest, local)  # verified on the way: a corrupted blob stops here
            size += local.stat().st_size
            if dry_run:
                verified += 1
            else:
                digest, _ = target.put_file(local)
                if digest != blob.digest:  # pragma: no cover - get_file verified the same bytes
                    raise InvalidInputError(f"Artifact {blob.digest} changed while it was copied")
                target.get_file(digest, Path(tmp, "check"))  # read back from the target, verified
                verified += 1
            local.unlink(missing_ok=True)
    return len(blobs), size, verified


def _copy_rows(source: Engine, target: Engine, tables: list[Table]) -> tuple[TableCount, ...]:
    """Every table's rows in one target transaction; counts compared before it commits."""
    counts = []
    with source.connect() as src, target.begin() as dst:
        for table in tables:
            copied = 0
            for batch in _batches(src, table):
                dst.execute(table.insert(), batch)
                copied += len(batch)
            in_target = _count(dst, table)
            if in_target != copied:  # a row the target silently dropped (or a trigger added)
                raise InvalidInputError(
                    f"Table {table.name!r}: copied {copied} rows but the target holds {in_target}; nothing was kept"
                )
            counts.append(TableCount(table.name, copied, in_target))
        if dst.dialect.name == "postgresql":
            _fix_sequences(dst, tables)
    # Rows written to the source while copying would be missing: counted again afterwards.
    with source.connect() as src:
        for c in counts:
            now_in_source = _count(src, schema.metadata.tables[c.table])
            if now_in_source != c.source:
                raise ConflictError(
                    f"Table {c.table!r} changed while it was copied ({c.source} rows copied, {now_in_source} now): "
                    "stop servers and workers on the source workspace, drop the target's tables and migrate again"
                )
    return tuple(counts)


def _batches(conn: Connection, table: Table) -> Iterator[list[dict[str, Any]]]:
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(yield_per=_BATCH).execute(select(table).order_by(*order))
    for part in result.mappings().partitions(_BATCH):
        yield [_row(dict(r)) for r in part]


def _row(row: dict[str, Any]) -> dict[str, Any]:
    # SQLite keeps timestamps without their zone (keel writes UTC): PostgreSQL would read a naive
    # value in its session's time zone, so the zone is made explicit.
    for key, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            row[key] = value.replace(tzinfo=UTC)
    return row


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _fix_sequences(conn: Connection, tables: list[Table]) -> None:
    """Rows were inserted with their ids: move each serial sequence past the largest, or the next
    insert would reuse id 1."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, Integer) or pk[0].autoincrement is False:
            continue
        column = pk[0].name
        seq = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
        ).scalar_one_or_none()
        if seq is None:
            continue
        # is_called=false when empty: the next value is then 1, not 2. The names come from schema.py,
        # never from user input, so they can be spliced into the statement.
        conn.execute(
            text(
                f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") FROM "{table.name}"), 1), '
                f'(SELECT COUNT(*) > 0 FROM "{table.name}"))'
            ),
            {"s": seq},
        )
