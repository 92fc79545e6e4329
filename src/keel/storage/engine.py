"""Open the metadata store: an engine tuned per backend, with its schema brought to head."""

from __future__ import annotations

import functools
import logging
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError, SQLAlchemyError

from keel.errors import ConfigError, SchemaVersionError, StoreUnavailableError
from keel.settings import mask_password

logger = logging.getLogger(__name__)

__all__ = ["open_engine", "schema_revision", "head_revision", "mask_url", "alembic_config"]

_upgrade_lock = threading.Lock()


def mask_url(url: str) -> str:
    """The URL with any password replaced by '***', for messages and logs."""
    return mask_password(url)


def open_engine(url: str, *, upgrade: bool = True, sqlite_synchronous: str = "normal") -> Engine:
    """Create an engine for `url`, check it answers, and migrate its schema to head.

    `sqlite_synchronous` (SQLite only): 'normal' (WAL: a commit survives a crash of the process,
    not of the OS or a power loss) or 'full' (every commit is synced to disk before it returns).

    Raises StoreUnavailableError when the server cannot be reached, ConfigError for an
    unusable URL and SchemaVersionError when the store was written by a newer keel.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"Store URL {mask_url(url)!r} is not a database URL") from exc
    if parsed.drivername == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2; the 'postgres' extra installs psycopg 3.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if sqlite_synchronous not in _SYNCHRONOUS:
        raise ConfigError(f"sqlite_synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {sqlite_synchronous!r}")
    kwargs: dict[str, Any] = {}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        db = parsed.database
        if db and db != ":memory:":
            try:
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"Cannot create the folder of the metadata store {mask_url(url)}: {exc}"
                ) from exc
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"No driver for store URL {mask_url(url)!r} ({exc}); for PostgreSQL: pip install 'keelml[postgres]'"
        ) from exc
    if is_sqlite:
        event.listen(
            engine, "connect", functools.partial(_sqlite_pragmas, synchronous=_SYNCHRONOUS[sqlite_synchronous])
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, InterfaceError) as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "no answer"
        if parsed.password:  # drivers may echo the connection string
            reason = reason.replace(str(parsed.password), "***")
        raise StoreUnavailableError(f"Cannot reach the metadata store at {mask_url(url)}: {reason}") from exc
    if upgrade:
        try:
            _migrate(engine)
        except (SchemaVersionError, StoreUnavailableError):
            engine.dispose()
            raise
    return engine


def _wal(cur: Any) -> None:
    """Switch to WAL. On a new file another process may be switching or migrating at that moment,
    and SQLite answers a journal-mode change 'database is locked' at once, without waiting for
    busy_timeout: retry for up to 30 seconds."""
    import sqlite3
    import time

    deadline = time.monotonic() + 30
    delay = 0.01
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


# PRAGMA synchronous per setting. In WAL mode NORMAL syncs only at checkpoints: a commit survives a
# crash of the process (it is in the WAL file) but not of the OS; FULL syncs the WAL on every commit.
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, *, synchronous: str = "NORMAL") -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    _wal(cur)
    cur.execute(f"PRAGMA synchronous={synchronous}")  # one of _SYNCHRONOUS's values, never user text
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config(conn: Any = None) -> Any:
    """An Alembic Config for keel's migrations; with `conn`, migrations run over that connection.

    >>> with engine.begin() as conn:                      # doctest: +SKIP
    ...     alembic.command.upgrade(alembic_config(conn), "0001")
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("keel.storage") / "migrations"))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    """The newest schema revision this keel knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_revision(engine: Engine) -> str | None:
    """The schema revision the store is at, or None for an empty store."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _migrate(engine: Engine) -> None:
    """Bring the schema to head in one transaction that concurrent openers wait for.

    Two processes opening a new workspace at once must not both create its tables, and a
    migration that fails halfway must leave the previous schema, not half of the next one.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    current = schema_revision(engine)
    if current == head:
        return
    _check_known(current, script, head)  # before anything is written
    migrator = _migration_engine(engine)
    try:
        with _upgrade_lock, migrator.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            current = MigrationContext.configure(conn).get_current_revision()  # another opener may have won
            if current == head:
                return
            _check_known(current, script, head)
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
    except SQLAlchemyError as exc:
        raise StoreUnavailableError(f"Migrating the metadata store failed: {exc}") from exc
    finally:
        if migrator is not engine:
            migrator.dispose()
    logger.info("metadata store migrated from %s to %s", current or "empty", head)


_MIGRATION_LOCK = 0x6B65656C  # 'keel': the PostgreSQL advisory lock migrations hold


def _check_known(current: str | None, script: Any, head: str | None) -> None:
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaVersionError(
            f"This workspace's schema is at revision {current!r}, written by a newer keel; "
            f"this keel knows revisions up to {head!r}. Upgrade keelml to open it."
        )


def _migration_engine(engine: Engine) -> Engine:
    """For SQLite, an engine whose transactions are real: Python's sqlite3 runs DDL outside any
    transaction and starts one only before INSERT/UPDATE/DELETE. Here every transaction is a
    `BEGIN IMMEDIATE`, which also makes a second migrator wait (busy_timeout) for the first."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine
    migrator = create_engine(engine.url, connect_args={"timeout": 30, "check_same_thread": False})

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver leaves transactions to us
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        _wal(cur)
        # Alembic's batch mode rebuilds SQLite tables by copy-and-drop: with foreign keys enforced,
        # dropping the old table would cascade into the rows that point at it.
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()

    event.listen(migrator, "connect", on_connect)
    event.listen(migrator, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return migrator
