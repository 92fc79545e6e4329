"""Runs whose process died are marked killed: heartbeats, process identity, the check at open."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

import keel
from keel import ConfigError, Settings
from keel.entities import RunStatus
from keel.storage import schema
from keel.tracking import _liveness
from keel.tracking._liveness import ProcessIdentity, process_gone, this_process

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

_LINUX = sys.platform.startswith("linux") and this_process().token is not None

# A child that opens the workspace, starts a run, writes a point, says the run id and waits.
_CHILD = textwrap.dedent(
    """
    import sys, time
    import keel
    ws = keel.Workspace(keel.Settings(home=sys.argv[1], store_url=sys.argv[2], author="child"))
    run = ws.runs.start("crash", params={"lr": 0.1})
    run.log_metric("loss", 0.5)
    run.flush()
    print(run.id, flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def child_run(store_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Settings]]:
    """A process running a run: (the process, the run id, settings to open its workspace)."""
    settings = Settings(home=tmp_path / "ws", store_url=store_url, author="tester")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(settings.home), settings.resolved_store_url],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("KEEL_")},
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert len(run_id) == 32, f"the child did not start a run (exit {proc.poll()})"
        yield proc, run_id, settings
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _sql(ws: keel.Workspace, statement: str, **params: Any) -> Any:
    with ws._meta.engine.begin() as conn:
        return conn.execute(text(statement), params)


def _age_heartbeat(ws: keel.Workspace, run_id: str, seconds: float) -> None:
    _sql(
        ws,
        "UPDATE runs SET heartbeat_at = :at WHERE id = :id",
        at=datetime.now(UTC) - timedelta(seconds=seconds),
        id=run_id,
    )


def _heartbeat_at(ws: keel.Workspace, run_id: str) -> datetime:
    with ws._meta.engine.connect() as conn:
        at = conn.execute(select(schema.runs.c.heartbeat_at).where(schema.runs.c.id == run_id)).scalar_one()
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _owner(ws: keel.Workspace, run_id: str) -> Any:
    return _sql(ws, "SELECT heartbeat_at, owner_host, owner_pid, owner_token FROM runs WHERE id = :id", id=run_id).one()


# -- a real crash ---------------------------------------------------------------------------------
@pytest.mark.skipif(
    not _LINUX, reason="telling a dead process at once needs Linux's /proc; elsewhere the heartbeat decides"
)
def test_a_run_whose_process_was_killed_is_marked_killed_at_the_next_open(child_run: Any) -> None:
    proc, run_id, settings = child_run
    with keel.Workspace(settings) as ws:  # the child lives: its run is left alone
        assert ws.runs.get(run_id).status is RunStatus.RUNNING
        heartbeat_at = _owner(ws, run_id)[0]

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    with keel.Workspace(settings) as ws:
        run = ws.runs.get(run_id)
        assert run.status is RunStatus.KILLED
        assert run.ended_at is not None and run.ended_at <= datetime.now(UTC)
        assert _owner(ws, run_id)[0] == heartbeat_at  # ended at its last sign of life
        assert f"process {proc.pid}" in run.tags["keel.killed_reason"] and "is gone" in run.tags["keel.killed_reason"]
        assert run.params == {"lr": "0.1"} and run.metrics == {"loss": 0.5}  # what it wrote is kept
        assert [r.status for r in ws.runs.list()] == [RunStatus.KILLED]
        assert ws.runs.search("status = 'killed'")[0].id == run_id


@pytest.mark.skipif(not _LINUX, reason="needs Linux's /proc")
def test_a_killed_process_not_yet_reaped_counts_as_gone(child_run: Any, settings: Settings) -> None:
    proc, run_id, child_settings = child_run
    os.kill(proc.pid, signal.SIGKILL)  # no wait(): the child stays a zombie until reaped
    deadline = time.monotonic() + 10
    while _liveness._stat(proc.pid) is not None and _liveness._stat(proc.pid)[0] not in ("Z", "X"):  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with keel.Workspace(child_settings) as ws:
        assert ws.runs.get(run_id).status is RunStatus.KILLED


@pytest.mark.skipif(not _LINUX, reason="needs Linux's /proc")
def test_cli_gc_and_runs_list_api_and_dashboard_show_the_killed_run(child_run: Any) -> None:
    from fastapi.testclient import TestClient

    from keel.cli import app as cli
    from keel.server import create_app

    proc, run_id, settings = child_run
    with keel.Workspace(settings) as ws:
        ws.runs._heartbeat_timeout_s = 1e9  # nothing but the process check decides here
    proc.kill()
    proc.wait(timeout=30)

    # gc finds it, says so, and the list shows it killed
    env = {"KEEL_STORE_URL": settings.resolved_store_url}
    runner = CliRunner()
    result = runner.invoke(cli, ["--workspace", str(settings.home), "gc", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["killed_runs"] == [run_id]
    listed = runner.invoke(cli, ["--workspace", str(settings.home), "runs", "list", "--json"], env=env)
    assert listed.exit_code == 0 and '"status": "killed"' in listed.stdout

    with keel.Workspace(settings) as ws:
        client = TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1")
        runs = client.get("/api/v1/runs").json()
        runs = runs["runs"] if isinstance(runs, dict) else runs
        assert [(r["id"], r["status"]) for r in runs] == [(run_id, "killed")]
        page = client.get("/runs")
        assert page.status_code == 200 and "status-killed" in page.text


def test_gc_marks_and_reports_runs_whose_heartbeat_ran_out(ws: keel.Workspace) -> None:
    from keel.cli import app as cli

    run = ws.runs.start("elsewhere")
    _sql(
        ws, "UPDATE runs SET owner_host = 'other-host', owner_token = 'other-boot/pid:[1]/42' WHERE id = :id", id=run.id
    )
    _age_heartbeat(ws, run.id, 3600)
    result = CliRunner().invoke(cli, ["--workspace", str(ws.settings.home), "gc"])
    assert result.exit_code == 0, result.output
    assert f"Marked 1 run killed (their process is gone): {run.id[:8]}" in result.stdout
    assert run.end().status is RunStatus.KILLED


# -- the verdict on each kind of owner ---------------------------------------------------------------
def test_a_live_run_of_this_process_is_never_marked_killed(any_ws: keel.Workspace) -> None:
    run = any_ws.runs.start("live")
    _age_heartbeat(any_ws, run.id, 10 * 86400)  # even with a silent heartbeat, when its process can be checked
    killed = any_ws.runs.mark_lost()
    if _LINUX:
        assert killed == [] and any_ws.runs.get(run.id).status is RunStatus.RUNNING
        assert run.end().status is RunStatus.FINISHED
    else:  # no /proc: the heartbeat is all there is
        assert killed == [run.id]
        run.end()


def test_a_run_records_its_owner_and_a_heartbeat_from_its_start(any_ws: keel.Workspace) -> None:
    run = any_ws.runs.start("owned")
    heartbeat_at, host, pid, token = _owner(any_ws, run.id)
    me = this_process()
    assert (host, pid, token) == (me.host, os.getpid(), me.token)
    assert heartbeat_at is not None
    run.end()


@pytest.mark.skipif(not _LINUX, reason="needs Linux's /proc")
def test_a_reused_pid_is_told_apart_by_its_start_time(any_ws: keel.Workspace) -> None:
    me = this_process()
    assert me.token is not None
    scope, _, started = me.token.rpartition("/")
    assert process_gone(os.getpid(), me.token, me) is False
    assert process_gone(os.getpid(), f"{scope}/{int(started) - 100}", me) is True  # same pid, older process
    assert process_gone(os.getpid(), f"other-boot/pid:[1]/{started}", me) is None  # another machine: cannot tell

    run = any_ws.runs.start("reused")  # its owner's pid now runs another process (this one)
    _sql(
        any_ws, "UPDATE runs SET owner_token = :token WHERE id = :id", token=f"{scope}/{int(started) - 100}", id=run.id
    )
    assert any_ws.runs.mark_lost() == [run.id]
    assert "is gone" in any_ws.runs.get(run.id).tags["keel.killed_reason"]
    # The process that still holds the run cannot end it any more: killed stays killed.
    assert run.end().status is RunStatus.KILLED


def test_a_run_of_another_host_is_killed_only_when_its_heartbeat_runs_out(any_ws: keel.Workspace) -> None:
    run = any_ws.runs.start("remote-host")
    _sql(
        any_ws,
        "UPDATE runs SET owner_host = 'gpu-7', owner_pid = 1, owner_token = 'b00t/pid:[1]/9' WHERE id = :id",
        id=run.id,
    )
    _age_heartbeat(any_ws, run.id, 500)  # under the 600 s default
    assert any_ws.runs.mark_lost() == []
    _age_heartbeat(any_ws, run.id, 700)
    assert any_ws.runs.mark_lost() == [run.id]
    reason = any_ws.runs.get(run.id).tags["keel.killed_reason"]
    assert "no heartbeat from process 1 on gpu-7" in reason and "run_heartbeat_timeout_s=600" in reason
    assert run.end().status is RunStatus.KILLED


def test_a_heartbeat_that_arrives_meanwhile_cancels_the_verdict(any_ws: keel.Workspace) -> None:
    run = any_ws.runs.start("late-beat")
    _sql(any_ws, "UPDATE runs SET owner_host = 'gpu-7', owner_token = 'b00t/pid:[1]/9' WHERE id = :id", id=run.id)
    _age_heartbeat(any_ws, run.id, 3600)
    (owner,) = any_ws._meta.runs.running_owners()
    any_ws._meta.runs.heartbeat([run.id], datetime.now(UTC))  # the owner beats after the read
    assert not any_ws._meta.runs.mark_killed(
        owner, "stale", silent_since=owner.heartbeat_at + timedelta(microseconds=1)
    )
    assert run.end().status is RunStatus.FINISHED


def test_a_run_driven_over_http_lives_as_long_as_it_is_written_to(any_ws: keel.Workspace) -> None:
    active = any_ws.runs.start("api")
    active.detach()  # what POST /api/v1/runs does
    heartbeat_at, host, pid, token = _owner(any_ws, active.id)
    assert (host, pid, token) == (None, None, None)

    _age_heartbeat(any_ws, active.id, 3 * 3600)  # far past the local limit, within the remote one
    assert any_ws.runs.mark_lost() == []
    _age_heartbeat(any_ws, active.id, 2 * 86400)
    any_ws.runs.log_metric_points(active.id, [("loss", 0.3, None, None)])  # a write is a heartbeat
    assert any_ws.runs.mark_lost() == []
    for write in (
        lambda: any_ws.runs.log_params(active.id, {"a": 1}),
        lambda: any_ws.runs.set_tags(active.id, {"t": "x"}),
        lambda: any_ws.runs.log_inputs(active.id, []),
    ):
        _age_heartbeat(any_ws, active.id, 2 * 86400)
        write()
        assert any_ws.runs.mark_lost() == []

    _age_heartbeat(any_ws, active.id, 2 * 86400)
    assert any_ws.runs.mark_lost() == [active.id]
    assert "no write over the API" in any_ws.runs.get(active.id).tags["keel.killed_reason"]
    with pytest.raises(keel.InvalidInputError, match="has ended \\(killed\\)"):
        any_ws.runs.log_metric_points(active.id, [("loss", 0.2, None, None)])


def test_list_and_search_check_again_at_most_once_a_minute(ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = ws.runs._mark_lost
    monkeypatch.setattr(ws.runs, "_mark_lost", lambda: calls.append(1) or real())
    ws.runs.list()
    ws.runs.search("status = 'running'")
    assert calls == []  # the open checked moments ago
    ws.runs._checked_at = time.monotonic() - 61
    ws.runs.list()
    ws.runs.search(None)
    assert calls == [1]


def test_a_failing_check_never_fails_the_read(ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> list[str]:
        raise keel.StoreUnavailableError("down for a moment")

    monkeypatch.setattr(ws.runs, "_mark_lost", broken)
    ws.runs._checked_at = None
    assert ws.runs.list() == []


# -- the heartbeat thread ---------------------------------------------------------------------------
def _heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "keel-run-heartbeat"]


def _wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_live_run_refreshes_its_heartbeat_from_one_daemon_thread(any_ws: keel.Workspace) -> None:
    any_ws.runs._heartbeat.interval_s = 0.05
    runs = [any_ws.runs.start("beat") for _ in range(3)]
    threads = [t for t in _heartbeat_threads() if t.is_alive()]
    assert len(threads) >= 1 and all(t.daemon for t in threads)
    assert any_ws.runs._heartbeat._thread in threads  # one for the three runs
    for r in runs:
        _age_heartbeat(any_ws, r.id, 3600)
    old = datetime.now(UTC) - timedelta(seconds=60)
    _wait_for(lambda: all(_heartbeat_at(any_ws, r.id) > old for r in runs))
    for r in runs:
        r.end()
    # ended runs are not beaten again, and the thread stops once none is left
    _age_heartbeat(any_ws, runs[0].id, 3600)
    thread = any_ws.runs._heartbeat._thread
    _wait_for(lambda: thread is None or not thread.is_alive())
    assert _heartbeat_at(any_ws, runs[0].id) < old


def test_starting_many_runs_starts_one_heartbeat_thread(ws: keel.Workspace) -> None:
    before = len(_heartbeat_threads())
    for i in range(50):
        with ws.runs.start("many", name=f"r{i}") as run:
            run.log_metric("m", float(i))
    assert len(_heartbeat_threads()) <= before + 1


def test_a_run_marked_killed_elsewhere_stops_being_beaten(ws: keel.Workspace, caplog: pytest.LogCaptureFixture) -> None:
    ws.runs._heartbeat.interval_s = 0.05
    run = ws.runs.start("taken-for-dead")
    _sql(ws, "UPDATE runs SET status = 'killed' WHERE id = :id", id=run.id)
    _wait_for(lambda: run.id not in ws.runs._heartbeat._live)
    assert "is no longer running in the store" in caplog.text
    assert run.end().status is RunStatus.KILLED


def test_closing_the_workspace_stops_the_heartbeat(settings: Settings) -> None:
    ws = keel.Workspace(settings)
    ws.runs._heartbeat.interval_s = 0.05
    ws.runs.start("open-at-close")
    thread = ws.runs._heartbeat._thread
    assert thread is not None and thread.is_alive()
    ws.close()
    thread.join(timeout=5)
    assert not thread.is_alive()


# -- settings, identity -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["run_heartbeat_timeout_s", "run_remote_timeout_s"])
def test_timeouts_shorter_than_two_heartbeats_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} .KEEL_{name.upper()}. must be >= 60"):
        Settings(**{name: 30})


def test_workspace_timeouts_come_from_settings(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, run_heartbeat_timeout_s=120, run_remote_timeout_s=7200)
    with keel.Workspace(s) as ws:
        assert (ws.runs._heartbeat_timeout_s, ws.runs._remote_timeout_s) == (120, 7200)


def test_without_proc_the_process_cannot_be_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_liveness, "_PROC", str(tmp_path / "no-proc"))
    _liveness._identity.cache_clear()
    try:
        me = this_process()
        assert me.token is None and me.pid == os.getpid()
        assert process_gone(12345, "boot/pid:[1]/77", me) is None
    finally:
        _liveness._identity.cache_clear()


def test_a_command_name_with_spaces_and_parentheses_is_parsed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    fields = " ".join(["S", *[str(i) for i in range(4, 22)], "987654", "0"])
    (tmp_path / "4242" / "stat").write_text(f"4242 (odd ) name) {fields}\n")
    monkeypatch.setattr(_liveness, "_PROC", str(tmp_path))
    assert _liveness._stat(4242) == ("S", "987654")
    me = ProcessIdentity("h", 1, "boot/pid:[1]/5")
    assert process_gone(4242, "boot/pid:[1]/987654", me) is False
    assert process_gone(4242, "boot/pid:[1]/987653", me) is True
    assert process_gone(4243, "boot/pid:[1]/987654", me) is True
