"""Leases (one holder at a time among the processes sharing a store) and the change counter every
process sees move, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import keel
from keel.storage.changes import FileFeed, LocalFeed, NotifyFeed
from keel.storage.leases import LeaseStore


def _leases(ws: keel.Workspace) -> LeaseStore:
    return ws._meta.leases


def test_a_lease_has_one_holder_until_it_expires_or_is_released(any_ws: keel.Workspace) -> None:
    store = _leases(any_ws)
    assert store.acquire("scheduler", "a", ttl_s=30)
    assert not store.acquire("scheduler", "b", ttl_s=30)
    assert store.acquire("scheduler", "a", ttl_s=30)  # the holder renews
    assert store.holder("scheduler")[0] == "a"  # type: ignore[index]
    store.release("scheduler", "b")  # not b's: nothing happens
    assert not store.acquire("scheduler", "b", ttl_s=30)
    store.release("scheduler", "a")
    assert store.acquire("scheduler", "b", ttl_s=0.2)
    time.sleep(0.3)  # b died without releasing: after its time to live the lease is free
    assert store.acquire("scheduler", "c", ttl_s=30)
    assert store.holder("scheduler")[0] == "c"  # type: ignore[index]


def test_racing_processes_never_both_hold_a_lease(any_ws: keel.Workspace) -> None:
    stores = [LeaseStore(any_ws._meta.engine) for _ in range(8)]  # eight holders, as eight processes
    for _round in range(5):
        start = threading.Barrier(len(stores))
        won: list[str] = []

        def race(store: LeaseStore) -> None:
            start.wait()
            if store.acquire(f"round-{_round}", store.me, ttl_s=30):
                won.append(store.me)

        threads = [threading.Thread(target=race, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1


def test_held_renews_while_the_body_runs_and_releases_after(any_ws: keel.Workspace) -> None:
    one, two = LeaseStore(any_ws._meta.engine), LeaseStore(any_ws._meta.engine)
    with one.held("compaction", ttl_s=0.3) as held:
        assert held
        time.sleep(0.8)  # longer than the time to live: renewals keep it
        with two.held("compaction", ttl_s=0.3) as also:
            assert not also
    with two.held("compaction", ttl_s=0.3) as held:  # released at once, no wait for expiry
        assert held


def test_a_tick_does_the_once_only_work_only_under_the_scheduler_lease(ws: keel.Workspace) -> None:
    from keel.workspace.tick import SCHEDULER_LEASE

    calls: list[str] = []
    ws.monitoring.run_due = lambda at=None: calls.append("monitors") or []  # type: ignore[method-assign]
    assert _leases(ws).acquire(SCHEDULER_LEASE, "another process", ttl_s=30)
    ws.tick()
    assert calls == []  # another process ticks now: due monitors are its work
    _leases(ws).release(SCHEDULER_LEASE, "another process")
    ws.tick()
    assert calls == ["monitors"]
    assert _leases(ws).holder(SCHEDULER_LEASE) is None  # released after the tick


# -- the change counter --------------------------------------------------------------------------
def test_the_file_counter_moves_for_every_process_mapping_it(tmp_path: Path) -> None:
    path = tmp_path / "keel.db-changes"
    here = FileFeed(path)
    before = here.value()
    code = (
        "import sys; from pathlib import Path; from keel.storage.changes import FileFeed; "
        "f = FileFeed(Path(sys.argv[1])); [f.bump() for _ in range(3)]; f.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    assert here.value() == before + 3  # another process's bumps, read from memory
    here.bump()
    assert FileFeed(path).value() == before + 4
    here.close()


def test_the_workspace_picks_the_feed_of_its_store(any_ws: keel.Workspace) -> None:
    feed = any_ws._meta.changes
    assert isinstance(feed, NotifyFeed if any_ws._meta.dialect == "postgresql" else FileFeed)
    assert not isinstance(feed, LocalFeed)


@pytest.mark.postgres
def test_a_postgres_notification_reaches_another_listener(postgres_url: str, tmp_path: Path) -> None:
    with (
        keel.Workspace(home=str(tmp_path / "a"), store=postgres_url) as a,
        keel.Workspace(home=str(tmp_path / "b"), store=postgres_url) as b,
    ):
        seen = b.models.generation  # starts b's listener
        a._meta.changes.bump()
        deadline = time.monotonic() + 5
        while b.models.generation == seen:
            assert time.monotonic() < deadline, "the notification never arrived"
            time.sleep(0.001)
        assert time.monotonic() - (deadline - 5) < 1.0


def test_prediction_log_maintenance_is_skipped_while_another_process_holds_it(ws: keel.Workspace) -> None:
    calls: list[str] = []
    ws.predictions.apply_retention = lambda *a, **k: calls.append("retention") or 0  # type: ignore[method-assign]
    assert _leases(ws).acquire("predlog-maintenance", "another process", ttl_s=30)
    ws.predictions.maintain()
    assert calls == []
    _leases(ws).release("predlog-maintenance", "another process")
    ws.predictions.maintain()
    assert calls == ["retention"]
