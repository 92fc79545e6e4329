"""Helpers shared by the stores: time, error translation, dialect-aware upserts, and reading versioned
records (studies, twins, indexes: a name and a version number per row)."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, Row, Select, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from keel.errors import ConflictError, InvalidInputError, NotFoundError, StoreUnavailableError
from keel.refs import Ref

P = ParamSpec("P")
T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were written in UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str], update: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET update-columns (no columns: DO NOTHING), on SQLite
    and PostgreSQL."""
    if not rows:
        return
    dialect = conn.dialect.name
    ins: Any
    if dialect == "postgresql":
        ins = postgresql.insert(table)
    elif dialect == "sqlite":
        ins = sqlite.insert(table)
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(dialect)
    if not update:
        stmt = ins.on_conflict_do_nothing(index_elements=keys)
    else:
        stmt = ins.on_conflict_do_update(index_elements=keys, set_={c: ins.excluded[c] for c in update})
    conn.execute(stmt, rows)


class Transactional:
    """Base of the stores: one engine, short transactions, errors translated at the boundary."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with translate_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with translate_errors(), self.engine.connect() as conn:
            yield conn


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        raise ConflictError(f"The write conflicts with stored state: {_first_line(exc)}") from exc
    except DataError as exc:  # PostgreSQL enforces lengths and types that SQLite lets through
        raise InvalidInputError(f"The metadata store refused a value: {_first_line(exc)}") from exc
    except OperationalError as exc:
        raise StoreUnavailableError(f"The metadata store failed: {_first_line(exc)}") from exc
    except PoolTimeoutError as exc:
        raise StoreUnavailableError(f"No free connection to the metadata store: {exc}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailableError(f"Lost the connection to the metadata store: {_first_line(exc)}") from exc
        raise


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def retry_conflicts(attempts: int = 10) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry a write that lost a race for a fresh version number, after a short random pause."""

    def deco(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            for attempt in range(attempts):
                try:
                    return fn(*args, **kwargs)
                except ConflictError:
                    if attempt == attempts - 1:
                        raise
                    time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # de-synchronize the racers
            raise AssertionError("unreachable")

        return wrapper

    return deco


def latest_versions(table: Table) -> Select[Any]:
    """The newest version's row of every name of a versioned record table (name, version columns)."""
    newest = select(table.c.name, func.max(table.c.version).label("v")).group_by(table.c.name).subquery()
    on = (table.c.name == newest.c.name) & (table.c.version == newest.c.v)
    return select(table).join(newest, on).order_by(table.c.name)


def versioned_row(conn: Connection, table: Table, ref: Ref, *, noun: str, plural: str, missing: str) -> Row[Any]:
    """The row of a versioned record that `ref` names ('x', 'x@3', 'x@latest'), else a NotFoundError that
    says what exists: the latest version of the name, or (`missing`, formatted with the name) the known
    names. Aliases and digests are refused: such records are addressed by version number only."""
    if ref.alias is not None or ref.digest is not None:
        raise InvalidInputError(
            f"{noun.capitalize()} reference {str(ref)!r}: {plural} are addressed by version number or 'latest'"
        )
    q = select(table).where(table.c.name == ref.name)
    if ref.version is not None:
        q = q.where(table.c.version == ref.version)
    row = conn.execute(q.order_by(table.c.version.desc()).limit(1)).first()
    if row is not None:
        return row
    latest = conn.execute(select(func.max(table.c.version)).where(table.c.name == ref.name)).scalar()
    if latest is not None:
        raise NotFoundError(f"{noun.capitalize()} {ref.name!r} has no version {ref.version}; the latest is {latest}")
    known = conn.execute(select(table.c.name).distinct().order_by(table.c.name).limit(20)).scalars().all()
    raise NotFoundError(f"{missing.format(name=ref.name)}. Known {plural}: {', '.join(known) or 'none'}")
