"""Server mode: two `keel serve` processes (each with a home of its own, as on two machines) over
one real PostgreSQL and one S3 server (moto, on loopback). An alias moved through one, or by a
third process, is served by the other; predictions sent to both land in one log, none lost or
doubled; a due monitor is checked once and due retraining runs once, not once per process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from liveserver import announced_url
from unit.retraining.test_retraining import cancer, spec  # tests/ is on sys.path (pyproject pythonpath)

import keel
from keel import Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

KEEL = str(Path(sys.executable).parent / "keel")
PREDICT = "/api/v1/models/tumor/predict"


def _env(home: Path, store: str, artifacts: str, options: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        PYTHONUNBUFFERED="1",
        KEEL_HOME=str(home),
        KEEL_STORE_URL=store,
        KEEL_ARTIFACTS_URL=artifacts,
        KEEL_ARTIFACTS_OPTIONS=json.dumps(options),
        KEEL_SERVER_TICK_S="0.3",
        KEEL_PREDLOG_FLUSH_S="0.2",
        KEEL_AUTHOR="server",
    )
    return env


def _start(args: list[str], env: dict[str, str], timeout_s: float = 120) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [KEEL, "serve", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, announced_url(proc, timeout_s)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture
def server_mode(postgres_url: str, s3_bucket: tuple[str, dict[str, Any]], tmp_path: Path) -> Iterator[Any]:
    """A PostgreSQL + S3 workspace with model 'tumor' (v1 champion, v2 registered), its trainer's
    project, and two servers on it."""
    artifacts, options = s3_bucket
    settings = Settings(
        home=tmp_path / "tests", store_url=postgres_url, artifacts_url=artifacts, artifacts_options=options
    )
    ws = keel.Workspace(settings)
    ws.datasets.add("cancer", cancer())
    project = spec(retraining={"triggers": ["new_data"], "cooldown_s": 0, "debounce_s": 0})
    ws.retraining.train(project)
    ws.retraining.train(project)  # version 2, on the same data: no retraining due yet
    ws.models.set_alias("tumor", "champion", version=1)
    servers = [_start([], _env(tmp_path / f"host{i}", postgres_url, artifacts, options)) for i in (1, 2)]
    try:
        yield ws, [url for _, url in servers], [proc for proc, _ in servers]
    finally:
        for proc, _ in servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        ws.close()


def _rows() -> list[dict[str, Any]]:
    frame = cancer().drop(columns=["target"]).head(2)
    return json.loads(frame.to_json(orient="records"))


SENT: list[str] = []  # the ids of every prediction answered in this module's test


def _version(client: httpx.Client, url: str) -> int:
    response = client.post(url + PREDICT, json=_rows())
    assert response.status_code == 200, response.text
    SENT.extend(p["id"] for p in response.json()["predictions"])
    return int(response.json()["version"])


@pytest.mark.postgres
def test_two_servers_share_aliases_predictions_and_schedules(server_mode: Any) -> None:
    ws, (a, b), procs = server_mode
    SENT.clear()
    with httpx.Client(timeout=30) as client:
        # both are warm and ready the moment they announce their address
        for url in (a, b):
            ready = client.get(url + "/readyz").json()
            assert ready["status"] == "ready" and ready["champions"] == ["tumor@1"], ready
        assert _version(client, a) == _version(client, b) == 1

        # an alias moved through server A is served by server B's next requests
        moved = client.put(a + "/api/v1/models/tumor/aliases/champion", json={"version": 2})
        assert moved.status_code == 200, moved.text
        assert _next_version(client, b) == 2
        # ...and one moved by a third process (this one) by both
        ws.models.set_alias("tumor", "champion", version=1)
        assert _next_version(client, a) == 1 and _next_version(client, b) == 1

        # predictions sent to both land in one log: every id once
        for i in range(40):
            _version(client, (a, b)[i % 2])
        sent = list(SENT)

        # a monitor made due now is checked by one server, once
        _wait(lambda: _logged(ws) >= len(sent), "the predictions never reached the log")
        ws.monitoring.watch("tumor", schedule_s=3600)
        _wait(lambda: len(ws.monitoring.runs("tumor")) >= 1, "no server checked the due monitor")
        # due retraining (a new version of the training data) is queued and run once
        ws.datasets.add("cancer", cancer().sample(frac=1.0, random_state=1))
        _wait(lambda: _retrain_jobs(ws, finished=True) >= 1, "no server ran the due retraining", timeout_s=120)
        time.sleep(2.0)  # several more ticks of both servers: nothing may run twice
        assert len(ws.monitoring.runs("tumor")) == 1
        jobs = [j for j in ws.jobs.list() if j.kind == "retrain"]
        assert len(jobs) == 1 and jobs[0].attempts == 1, jobs

    for proc in procs:
        _stop(proc)
    window = ws.predictions.window("tumor")
    ids = list(window["__id"])
    assert len(ids) == len(set(ids)) == len(sent) and set(ids) == set(sent)


def _next_version(client: httpx.Client, url: str) -> int:
    """The version the next request is answered by. With PostgreSQL the other process learns of a
    move by a notification, delivered within milliseconds: allow it 0.2 s, never the 1 s re-read."""
    deadline = time.monotonic() + 0.2
    first = _version(client, url)
    while time.monotonic() < deadline:
        now = _version(client, url)
        if now != first:
            return now
    return first


def _logged(ws: keel.Workspace) -> int:
    try:
        return len(ws.predictions.window("tumor"))
    except keel.errors.NotFoundError:
        return 0


def _retrain_jobs(ws: keel.Workspace, *, finished: bool) -> int:
    return len([j for j in ws.jobs.list() if j.kind == "retrain" and (not finished or j.status == "succeeded")])


def _wait(ready: Any, message: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def test_workers_share_one_port_and_serve_an_alias_move_from_the_next_request(tmp_path: Path) -> None:
    """`keel serve --workers 2` on the embedded SQLite store: a move made by another process is
    served by the very next request, whichever worker takes it; a worker killed with SIGKILL is
    replaced, and its replacement replays the rows it had answered; SIGTERM stops both, and every
    answered prediction is in the log once."""
    home = tmp_path / "ws"
    ws = keel.Workspace(Settings(home=home))
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec())
    ws.retraining.train(spec())
    ws.models.set_alias("tumor", "champion", version=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(PYTHONUNBUFFERED="1", KEEL_HOME=str(home), KEEL_PREDLOG_FLUSH_S="0.2")
    proc, url = _start(["--workers", "2"], env)
    SENT.clear()
    try:
        workers = _workers(proc.pid)
        assert len(workers) == 2
        fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection per request: any worker may take it
        with httpx.Client(timeout=30, limits=fresh) as client:
            assert client.get(url + "/readyz").json()["champions"] == ["tumor@1"]
            for target in (2, 1, 2):
                ws.models.set_alias("tumor", "champion", version=target)
                assert [_version(client, url) for _ in range(8)] == [target] * 8
            workers[0].kill()  # its answered rows are in its write-ahead file only
            deadline = time.monotonic() + 120
            # the replacement replays the dead worker's files as it starts, then deletes them
            while any(p.name.startswith(f"{workers[0].pid}-") for p in (home / "predlog").iterdir()):
                assert time.monotonic() < deadline, "the dead worker was not replaced, or its rows not replayed"
                time.sleep(0.2)
            assert len(_workers(proc.pid)) == 2
            assert {_version(client, url) for _ in range(6)} == {2}
    finally:
        out = _stop(proc)
    assert "exited with" in out  # the supervisor said a worker died and was started again
    ids = list(ws.predictions.window("tumor")["__id"])
    assert len(ids) == len(set(ids)), out
    assert set(SENT) <= set(ids), f"{len(set(SENT) - set(ids))} answered predictions missing; server output:\n{out}"
    ws.close()


def _workers(pid: int) -> list[Any]:
    """The serving worker processes of `keel serve` process `pid` (not spawn's resource tracker)."""
    import psutil

    return [
        p
        for p in psutil.Process(pid).children()
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline())
    ]
