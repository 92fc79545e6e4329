"""Opening the metadata store: schema migrations, newer-schema refusal, unreachable servers, SQLite tuning."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pandas.testing import assert_frame_equal
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.exc import OperationalError

import keel
from keel import ConfigError, SchemaVersionError, Settings, StoreUnavailableError
from keel.data.datasets import parquet_bytes, to_arrow
from keel.storage import BlobStore, head_revision, schema
from keel.storage.datasets import DatasetStore
from keel.storage.engine import alembic_config, mask_url, open_engine, schema_revision


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


def test_new_workspace_is_created_at_the_head_revision(ws: keel.Workspace) -> None:
    assert ws.schema_revision == head_revision()


def test_head_revision_is_at_least_the_registry_migration() -> None:
    assert head_revision() >= "0002"


def test_migrations_create_exactly_the_tables_of_schema_py(any_ws: keel.Workspace) -> None:
    with any_ws._meta.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diffs == []


def test_opening_a_0001_store_upgrades_it_to_head_and_keeps_its_data(store_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "old", store_url=store_url, author="tester")
    engine = create_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    assert schema_revision(engine) == "0001"
    assert "registered_models" not in inspect(engine).get_table_names()
    # A dataset written the way keel 0001 wrote it: the blob, then its version row.
    frame = pd.DataFrame({"income": [1200.0, 830.5, None], "status": ["good", "bad", "good"]})
    table = to_arrow(frame)
    digest = BlobStore(settings.resolved_artifacts_url).put_bytes(parquet_bytes(table))
    DatasetStore(engine).add_version(
        "credit",
        digest=digest,
        kind="table",
        num_rows=3,
        size_bytes=1,
        columns=[],
        profile={},
        author="old-keel",
        description="",
        tags={},
        blob_digests=[digest],
    )
    engine.dispose()

    with keel.Workspace(settings) as ws:
        assert ws.schema_revision == head_revision()
        assert {"registered_models", "model_versions"} <= set(inspect(ws._meta.engine).get_table_names())
        version = ws.datasets.get("credit")
        assert (version.ref, version.author) == ("credit@1", "old-keel")
        assert_frame_equal(ws.datasets.load("credit@1"), frame)


def test_migration_that_fails_halfway_leaves_the_previous_schema(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic.operations import Operations

    engine = create_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    tables_at_0001 = set(inspect(engine).get_table_names())
    real_create_table = Operations.create_table
    created: list[str] = []

    def create_then_fail(self: Operations, name: str, *columns: object, **kw: object) -> object:
        if created:
            raise OperationalError("CREATE TABLE", {}, Exception("disk full"))
        created.append(name)
        return real_create_table(self, name, *columns, **kw)

    settings = Settings(home=tmp_path / "ws", store_url=store_url)
    with monkeypatch.context() as m:
        m.setattr(Operations, "create_table", create_then_fail)
        with pytest.raises(StoreUnavailableError, match="disk full"):
            keel.Workspace(settings)
    assert created  # the first table of 0002 was created, then rolled back
    assert set(inspect(engine).get_table_names()) == tables_at_0001
    assert schema_revision(engine) == "0001"
    engine.dispose()
    with keel.Workspace(settings) as ws:  # the next open migrates cleanly
        assert ws.schema_revision == head_revision()


def _open_after(barrier: Any, url: str, home: str, results: Any) -> None:
    barrier.wait()
    try:
        with keel.Workspace(Settings(home=Path(home), store_url=url)) as ws:
            results.put(ws.schema_revision)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_store_at_once_all_succeed(store_url: str, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # children inherit the imported modules: fast
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(target=_open_after, args=(barrier, store_url, str(tmp_path / f"h{i}"), results)) for i in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert sorted(results.get(timeout=5) for _ in procs) == [head_revision()] * 3


def test_store_written_by_a_newer_keel_is_refused_and_left_unchanged(store_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "ws", store_url=store_url, author="tester")
    with keel.Workspace(settings) as ws:
        ws.datasets.add("credit", pd.DataFrame({"x": [1, 2]}))
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    tables_before = sorted(inspect(engine).get_table_names())

    with pytest.raises(SchemaVersionError) as info:
        keel.Workspace(settings)

    message = str(info.value)
    assert "9999_from_the_future" in message and head_revision() in message and "Upgrade keelml" in message
    assert schema_revision(engine) == "9999_from_the_future"
    assert sorted(inspect(engine).get_table_names()) == tables_before
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.dataset_versions)).scalar() == 1
    engine.dispose()


def test_unreachable_postgres_raises_store_unavailable_with_the_password_masked() -> None:
    url = f"postgresql+psycopg://keel:hunter2@127.0.0.1:{_closed_port()}/keel"
    with pytest.raises(StoreUnavailableError) as info:
        open_engine(url)
    message = str(info.value)
    assert "hunter2" not in message
    assert "keel:***@127.0.0.1" in message
    assert isinstance(info.value, ConnectionError)


def test_workspace_on_an_unreachable_store_raises_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match=r"\*\*\*"):
        keel.Workspace(Settings(home=tmp_path, store_url=f"postgresql://u:pw@127.0.0.1:{_closed_port()}/db"))


@pytest.mark.parametrize("url", ["not a url at all", "nosuchdb://x/y"])
def test_unusable_store_url_raises_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        open_engine(url)


def test_sqlite_store_in_an_unwritable_place_raises_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailableError):
        open_engine(f"sqlite:///{blocker / 'sub' / 'keel.db'}")


def test_sqlite_store_is_in_wal_mode_with_foreign_keys(ws: keel.Workspace) -> None:
    with ws._meta.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db = ws.settings.resolved_store_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as raw:  # WAL is a property of the file: other processes see it too
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_plain_postgresql_url_uses_psycopg_3(postgres_url: str, tmp_path: Path) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with keel.Workspace(Settings(home=tmp_path, store_url=plain)) as ws:
        assert ws._meta.engine.dialect.driver == "psycopg"
        assert ws.schema_revision == head_revision()


def test_mask_url_hides_the_password() -> None:
    assert mask_url("postgresql://keel:s3cret@db/keel") == "postgresql://keel:***@db/keel"


def test_workspace_repr_masks_the_store_password(tmp_path: Path) -> None:
    ws = keel.Workspace.__new__(keel.Workspace)
    ws.settings = Settings(home=tmp_path, store_url="postgresql://keel:s3cret@db/keel")
    assert "s3cret" not in repr(ws) and "s3cret" not in ws.store_url


@pytest.mark.parametrize(("setting", "expected"), [(None, 1), ("normal", 1), ("full", 2), ("FULL", 2)])
def test_sqlite_synchronous_follows_the_setting(tmp_path: Path, setting: str | None, expected: int) -> None:
    settings = Settings(home=tmp_path) if setting is None else Settings(home=tmp_path, sqlite_synchronous=setting)
    with keel.Workspace(settings) as ws:
        with ws._meta.engine.connect() as conn:  # a pragma of each connection: every new one gets it
            assert conn.execute(text("PRAGMA synchronous")).scalar() == expected
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        ws._meta.engine.dispose()
        with ws._meta.engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == expected


def test_sqlite_synchronous_is_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_SQLITE_SYNCHRONOUS", "full")
    with keel.Workspace(home=str(tmp_path)) as ws, ws._meta.engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2


def test_unknown_sqlite_synchronous_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        Settings(home=tmp_path, sqlite_synchronous="off")
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        open_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="off")


def test_upgrading_to_0009_starts_the_heartbeat_of_running_runs_at_their_start(store_url: str, tmp_path: Path) -> None:
    engine = create_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0008")
        conn.execute(
            text("INSERT INTO experiments (id, name, created_at) VALUES (1, 'old', :t)"), {"t": "2026-01-01 00:00:00"}
        )
        for run_id, status, started in [
            ("a" * 32, "running", "2026-01-01 10:00:00"),
            ("b" * 32, "finished", "2026-01-01 11:00:00"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO runs (id, experiment_id, name, status, started_at, environment, author) "
                    "VALUES (:id, 1, :id, :status, :started, '{}', 'old-keel')"
                ),
                {"id": run_id, "status": status, "started": started},
            )
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(text("SELECT id, started_at, heartbeat_at FROM runs"))}
        owners = conn.execute(text("SELECT owner_host, owner_pid, owner_token FROM runs")).all()
    assert rows["a" * 32].heartbeat_at == rows["a" * 32].started_at and rows["b" * 32].heartbeat_at is None
    assert set(owners) == {(None, None, None)}
    engine.dispose()

    # Opened, the orphan of long ago is judged by that heartbeat: no owner, so the API's limit (a day).
    with keel.Workspace(Settings(home=tmp_path / "ws", store_url=store_url, author="tester")) as ws:
        old = ws.runs.get("a" * 32)
        assert old.status.value == "killed" and old.ended_at == old.started_at
        assert ws.runs.get("b" * 32).status.value == "finished"
