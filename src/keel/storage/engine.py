"""Open the metadata store: an engine tuned per backend, with its schema brought to head."""

from __future__ import annotations

import logging
import re
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from keel.errors import ConfigError, SchemaVersionError, StoreUnavailableError

logger = logging.getLogger(__name__)

__all__ = ["open_engine", "schema_revision", "head_revision", "mask_url"]

_upgrade_lock = threading.Lock()


def mask_url(url: str) -> str:
    """The URL with any password replaced by '***', for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def open_engine(url: str, *, upgrade: bool = True) -> Engine:
    """Create an engine for `url`, check it answers, and migrate its schema to head.

    Raises StoreUnavailableError when the server cannot be reached, ConfigError for an
    unusable URL and SchemaVersionError when the store was written by a newer keel.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"Store URL {mask_url(url)!r} is not a database URL") from exc
    kwargs: dict[str, Any] = {}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(
            f"No driver for store URL {mask_url(url)!r} ({exc}); for PostgreSQL: pip install 'keelml[postgres]'"
        ) from exc
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        raise StoreUnavailableError(
            f"Cannot reach the metadata store at {mask_url(url)}: {str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    if upgrade:
        _migrate(engine)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL keeps it consistent
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _alembic_config(conn: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("keel.storage") / "migrations"))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    """The newest schema revision this keel knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def schema_revision(engine: Engine) -> str | None:
    """The schema revision the store is at, or None for an empty store."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    current = schema_revision(engine)
    if current == head:
        return
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaVersionError(
            f"This workspace's schema is at revision {current!r}, written by a newer keel; "
            f"this keel knows revisions up to {head!r}. Upgrade keelml to open it."
        )
    with _upgrade_lock:
        try:
            with engine.begin() as conn:
                command.upgrade(_alembic_config(conn), "head")
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(f"Migrating the metadata store failed: {exc}") from exc
    logger.info("metadata store migrated from %s to %s", current or "empty", head)
