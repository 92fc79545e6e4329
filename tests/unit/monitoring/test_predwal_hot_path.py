"""The request path of the prediction log never waits for a file creation or removal (issue 17).

A request's `log()` appends to the write-ahead file under the logger's and the file's locks. Creating
the next file (at each flush's rotation) and deleting a written one are journaled directory changes
that take milliseconds on a busy disk: they happen outside those locks, so an append never waits
for them. Each test blocks one of them and checks that an append still returns at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from keel.monitoring.predbuffer import PredictionLogger
from keel.monitoring.predwal import PredictionWal, read_records


class ListSink:
    def __init__(self) -> None:
        self.tables: list[Any] = []

    def write(self, model_name: str, version: int, frame: Any) -> None:
        self.tables.append(frame)


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_an_append_does_not_wait_for_the_next_file_being_created(tmp_path: Path, monkeypatch: Any) -> None:
    wal = PredictionWal(tmp_path, sync_ms=1.0)
    gate = threading.Event()
    entered = threading.Event()
    try:
        time.sleep(0.2)  # the syncer makes the next file ahead
        wal.append(b"first")
        create = PredictionWal._create

        def slow_create(self: PredictionWal, file_id: int) -> int:
            entered.set()
            assert gate.wait(20)
            return create(self, file_id)

        monkeypatch.setattr(PredictionWal, "_create", slow_create)
        rotating = threading.Thread(target=wal.rotate)
        rotating.start()
        threading.Timer(3.0, gate.set).start()  # a blocked append would wait this long
        assert entered.wait(5), "no file was created after the rotation"
        took = _timed(lambda: wal.append(b"second"))
        gate.set()
        rotating.join(10)
        assert took < 1.0, f"an append waited {took:.2f} s for a file creation"
        assert wal.current == 1
        assert wal.records(0) == [b"first"]
        wal.rotate()
        assert wal.records(1) == [b"second"]
    finally:
        gate.set()
        wal.close()
    assert not list(tmp_path.glob("*.wal")), "close() leaves the file made ahead behind"


def test_a_request_does_not_wait_for_a_written_file_being_removed(tmp_path: Path, monkeypatch: Any) -> None:
    log = PredictionLogger(
        ListSink(), flush_interval_s=60.0, wal=lambda: PredictionWal(tmp_path, sync_ms=1.0, paced=True)
    )
    gate = threading.Event()
    entered = threading.Event()
    remove = PredictionWal.remove

    def slow_remove(self: PredictionWal, file_id: int) -> None:
        entered.set()
        assert gate.wait(20)
        remove(self, file_id)

    try:
        assert log.log("m", 1, [{"x": 1.0}], predictions=[0])
        monkeypatch.setattr(PredictionWal, "remove", slow_remove)
        flushing = threading.Thread(target=log.flush)
        flushing.start()
        threading.Timer(3.0, gate.set).start()
        assert entered.wait(5), "the written file was not removed"
        took = _timed(lambda: log.log("m", 1, [{"x": 2.0}], predictions=[1]))
        gate.set()
        flushing.join(10)
        assert took < 1.0, f"a request's log() waited {took:.2f} s for a file removal"
        assert log.wal is not None and not log.wal.path(0).exists()
    finally:
        gate.set()
        log.close()
    assert sum(t.num_rows for t in log.sink.tables) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("paced", [True, False])
def test_a_lone_append_is_still_synced_promptly(tmp_path: Path, paced: bool) -> None:
    """The syncer sleeps between paced syncs instead of being woken by every append: a request
    arriving after a quiet spell is still covered by a sync within about sync_ms."""
    wal = PredictionWal(tmp_path, sync_ms=20.0, paced=paced)
    try:
        for payload in (b"a", b"b"):
            time.sleep(0.1)  # quiet: the syncer waits for an append
            _, _, ticket = wal.append(payload)
            took = _timed(lambda t=ticket: wal.wait(t, timeout=5))  # type: ignore[misc]
            assert took < 1.0
        assert read_records(wal.path(0))[0] == [b"a", b"b"]
        assert wal.syncs >= 2
    finally:
        wal.close()
    assert not list(tmp_path.glob("*.wal"))
