"""Shared fixtures: a fresh workspace per test, and the real services some tests need.

PostgreSQL: KEEL_TEST_POSTGRES_URL (set by .ci/run), else a server this session starts from
Debian's binaries when they are installed. S3: moto's S3 server on loopback.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import keel
from keel import Settings

# Variables that are read at session level are captured before the autouse fixture clears KEEL_*.
_PG_URL_FROM_ENV = os.environ.get("KEEL_TEST_POSTGRES_URL", "")

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the services their fixtures start, so `-m "not postgres and not s3"` works."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "s3_endpoint" in fixtures:
            item.add_marker(pytest.mark.s3)
        if "postgres_server" in fixtures:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def _clean_keel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("KEEL_"):
            monkeypatch.delenv(key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "ws", author="tester")


@pytest.fixture
def ws(settings: Settings) -> Iterator[keel.Workspace]:
    w = keel.Workspace(settings)
    yield w
    w.close()


# -- PostgreSQL --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_postgres() -> tuple[str | None, str, object]:
    """Start a throwaway server from Debian's binaries; return (url, reason, stopper)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        return None, "PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)", None
    pgbin = Path(binaries[-1]).parent
    tmp = tempfile.mkdtemp(prefix="keel-pg-")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(tmp, "postgres")
    port = _free_port()
    try:
        subprocess.run(
            [
                *prefix,
                str(pgbin / "initdb"),
                "-D",
                f"{tmp}/data",
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *prefix,
                str(pgbin / "pg_ctl"),
                "-D",
                f"{tmp}/data",
                "-l",
                f"{tmp}/log",
                "-w",
                "-o",
                f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"PostgreSQL could not start: {exc}", None

    def stop() -> None:
        subprocess.run(
            [*prefix, str(pgbin / "pg_ctl"), "-D", f"{tmp}/data", "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(tmp, ignore_errors=True)

    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", "", stop


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a real PostgreSQL server's maintenance database."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'keelml[postgres]'")
    if _PG_URL_FROM_ENV:
        yield _PG_URL_FROM_ENV
        return
    url, reason, stop = _start_postgres()
    if url is None:
        print(f"\nSKIP PostgreSQL tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    yield url
    stop()  # type: ignore[misc]


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped after the test."""
    import psycopg

    name = f"keel_test_{uuid.uuid4().hex[:12]}"
    plain = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def any_ws(store_url: str, tmp_path: Path) -> Iterator[keel.Workspace]:
    """A workspace on SQLite and, as a second parametrization, on PostgreSQL."""
    w = keel.Workspace(Settings(home=tmp_path / "ws", store_url=store_url, author="tester"))
    yield w
    w.close()


# -- S3 (moto server on loopback) ---------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("moto[server] is not installed: pip install 'keelml[dev]'")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[tuple[str, dict[str, object]]]:
    """(s3 URL, fsspec options) of a fresh bucket on the moto server."""
    import boto3

    name = f"keel-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}, "key": "testing", "secret": "testing"}
    yield f"s3://{name}/artifacts", options


# -- a real HTTP receiver (webhook alerts) ------------------------------------------------------------------
@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            code = state.statuses.pop(0) if state.statuses else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secret"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
