"""The prediction log's write-ahead files: records, group commit, replay after a crash, spill.

Crashes are real: a child process logs rows and dies with SIGKILL (or `os._exit`), and the test
replays what it left."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import keel
from keel import Settings
from keel.monitoring import predwal
from keel.monitoring.predlog import PredictionLogger
from keel.monitoring.predwal import PredictionWal, read_records


class GatedSink:
    """Keeps what it is given; every write waits for `gate`, and may be slowed by `delay_s`."""

    def __init__(self, gate: threading.Event | None = None, delay_s: float = 0.0) -> None:
        self.tables: list[Any] = []
        self.gate = gate
        self.delay_s = delay_s
        self.entered = threading.Event()

    def write(self, model_name: str, version: int, frame: Any) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(20), "the test never released the sink"
        time.sleep(self.delay_s)
        self.tables.append(frame)

    @property
    def ids(self) -> list[str]:
        return [i for t in self.tables for i in t.column("__id").to_pylist()]


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"x": float(i), "color": "red" if i % 2 else "blue"} for i in range(n)]


def _wal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


# -- the file format ------------------------------------------------------------------------------
def test_records_round_trip_and_a_torn_or_corrupt_tail_is_ignored(tmp_path: Path) -> None:
    wal = PredictionWal(tmp_path, sync_ms=0)
    for i in range(3):
        wal.append(f"record {i}".encode())
    path = wal.path(wal.current)
    wal.rotate()
    assert read_records(path) == ([b"record 0", b"record 1", b"record 2"], 0)
    whole = path.read_bytes()
    path.write_bytes(whole + predwal.frame(b"record 3")[:-2])  # a crash in the middle of a write
    assert read_records(path) == ([b"record 0", b"record 1", b"record 2"], len(predwal.frame(b"record 3")) - 2)
    broken = bytearray(whole)
    broken[-1] ^= 0xFF  # a flipped bit in the last record: its checksum fails
    path.write_bytes(bytes(broken))
    assert read_records(path)[0] == [b"record 0", b"record 1"]
    path.write_bytes(b"not a wal")
    assert read_records(path) == ([], 9)
    wal.close()
    assert not list(tmp_path.iterdir())  # its files and its lock are gone


# -- group commit -----------------------------------------------------------------------------------
def test_log_returns_only_after_a_sync_covered_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        time.sleep(0.2)
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(predwal.os, "fdatasync", slow_sync)
    log = PredictionLogger(
        GatedSink(), flush_interval_s=60, wal=lambda: PredictionWal(tmp_path, sync_ms=0), wait_for_sync=True
    )  # KEEL_PREDLOG_WAL=sync
    start = time.perf_counter()
    assert log.log("m", 1, _rows(2), predictions=[0, 1])
    assert time.perf_counter() - start >= 0.2 and synced

    async def serve() -> float:
        t = time.perf_counter()
        await log.log_async("m", 1, _rows(1), predictions=[1])
        return time.perf_counter() - t

    assert asyncio.run(serve()) >= 0.2
    start = time.perf_counter()
    log.log("m", 1, _rows(1), predictions=[1], durable=False)  # a refused request: no id is returned
    assert time.perf_counter() - start < 0.1
    log.close()


def test_by_default_an_answer_waits_for_the_append_only_and_syncs_follow_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KEEL_PREDLOG_WAL=on: the append (enough for a crash of the process) is in the file when log()
    returns; the slow sync is off the request's path and paced to at most one per sync_ms."""
    synced: list[int] = []
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        time.sleep(0.2)
        real(fd)
        synced.append(fd)

    monkeypatch.setattr(predwal.os, "fdatasync", slow_sync)
    with keel.Workspace(Settings(home=tmp_path / "ws", predlog_wal_sync_ms=50)) as ws:
        log = ws.predictions.logger(flush_interval_s=60)
        assert log.wait_for_sync is False
        start = time.perf_counter()

        async def serve() -> None:
            for _ in range(20):
                await log.log_async("m", 1, _rows(1), predictions=[0])

        asyncio.run(serve())
        assert time.perf_counter() - start < 0.2 * 5  # 20 answers did not wait for 20 syncs of 0.2 s
        assert log.wal is not None
        path = log.wal.path(log.wal.current)
        assert len(read_records(path)[0]) == 20  # every answered row is in the file already
        time.sleep(0.5)
        assert synced and log.wal.syncs <= 4  # paced: a handful of syncs, not one per answer
        log.close()
        assert ws.predictions.count("m") == 20


def test_one_sync_covers_many_concurrent_requests(tmp_path: Path) -> None:
    log = PredictionLogger(
        GatedSink(), flush_interval_s=60, wal=lambda: PredictionWal(tmp_path, sync_ms=5), wait_for_sync=True
    )

    async def serve() -> None:
        await asyncio.gather(*(log.log_async("m", 1, _rows(1), predictions=[0]) for _ in range(200)))

    asyncio.run(serve())
    assert log.wal is not None and 1 <= log.wal.syncs < 50
    log.close()
    assert log.logged == 200


# -- spill instead of drop ----------------------------------------------------------------------------
def test_rows_past_the_buffer_spill_to_the_write_ahead_file_instead_of_being_dropped(tmp_path: Path) -> None:
    gate = threading.Event()
    sink = GatedSink(gate)
    log = PredictionLogger(
        sink, max_buffer_rows=10, flush_interval_s=60, flush_rows=4, wal=lambda: PredictionWal(tmp_path, sync_ms=0)
    )
    ids = []
    for _ in range(30):
        batch, at_ms = log.new_ids(2)
        ids += batch
        assert log.log("m", 1, _rows(2), predictions=[0, 1], ids=batch, at_ms=at_ms)
        if len(ids) == 4:
            assert sink.entered.wait(5)  # the writer holds 4 rows and is stuck in the sink
    assert log.dropped == 0 and log.spilled > 0 and log.pending == 56
    gate.set()
    log.close()
    assert log.dropped == 0 and log.logged == 60
    assert sorted(sink.ids) == sorted(ids)
    assert not list(tmp_path.iterdir())  # every file written: all removed


def test_without_a_write_ahead_file_dropped_rows_are_counted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    sink = GatedSink(gate)
    log = PredictionLogger(sink, max_buffer_rows=4, flush_interval_s=60, flush_rows=4, warn_interval_s=3600)
    log.log("m", 1, _rows(4), predictions=np.zeros(4))
    assert sink.entered.wait(5)
    with caplog.at_level(logging.WARNING, logger="keel.monitoring.predlog"):
        for _ in range(5):
            log.log("m", 1, _rows(2), predictions=np.zeros(2))  # 4 fit, 6 are dropped
        log._warn_dropped()
        log._warn_dropped()  # within warn_interval_s: no second warning
        gate.set()
        log.close()
    assert log.dropped == 6 and log.logged == 8
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1 and "6 rows dropped" in warnings[0]


def test_a_busy_spinning_producer_thread_loses_no_row(ws: keel.Workspace) -> None:
    """5,000 rows/s (more than the serving benchmark's single-row throughput) for 2 s from a
    thread that never sleeps, into a buffer far smaller than that: every row reaches the log
    (past the buffer they spill to the write-ahead file; with KEEL_PREDLOG_WAL=off ~15 % are dropped)."""
    log = ws.predictions.logger(max_buffer_rows=200, flush_interval_s=0.5)
    record = {f"f{i}": float(i) for i in range(13)}
    sent: list[str] = []

    def produce() -> None:
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < 2.0:
            while len(sent) < int(elapsed * 5_000):  # busy-spins: never gives up the GIL on purpose
                ids, at_ms = log.new_ids(1)
                log.log(
                    "m",
                    1,
                    [record],
                    predictions=np.array([1]),
                    probabilities=np.array([[0.3, 0.7]]),
                    classes=[0, 1],
                    ids=ids,
                    at_ms=at_ms,
                    latency_ms=0.5,
                    durable=False,
                )
                sent.extend(ids)

    t = threading.Thread(target=produce)
    t.start()
    t.join(60)
    dropped = log.dropped
    log.close()
    assert len(sent) >= 5_000 and dropped == 0 == log.dropped  # 5,000: even a very slow machine gets there in 30 s
    assert log.logged == len(sent) == ws.predictions.count("m")


# -- crash and replay -----------------------------------------------------------------------------------
_CHILD = textwrap.dedent("""
    import os, sys, time
    import keel
    ws = keel.Workspace(home=sys.argv[1])
    log = ws.predictions.logger(flush_interval_s=3600)
    mode = sys.argv[2]
    for i in range(int(sys.argv[3])):
        ids, at_ms = log.new_ids(2)
        log.log("m", 1, [{"x": float(i)}, {"x": -1.0}], predictions=[0, 1], ids=ids, at_ms=at_ms)
        print(*ids, flush=True)
    if mode == "written":  # the segment is written, then the process dies before removing its file
        log._wal.remove = lambda file_id: None
        log.flush()
    if mode == "wait":
        print("ready", flush=True)
        time.sleep(120)
    os.kill(os.getpid(), 9)
""")


def _child(home: Path, mode: str, n: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(home), mode, str(n)], stdout=subprocess.PIPE, text=True, env=env
    )


def _ids_of(out: str) -> list[str]:
    return [i for line in out.splitlines() if line != "ready" for i in line.split()]


def test_rows_of_a_killed_process_are_replayed_once_by_the_next_logger(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    keel.Workspace(home=home).close()
    out, _ = _child(home, "crash", 20).communicate(timeout=120)
    ids = _ids_of(out)
    assert len(ids) == 40 and _wal_files(home / "predlog")
    with keel.Workspace(home=home) as ws:
        assert ws.predictions.count("m") == 0  # nothing was written before the kill
        ws.predictions.logger().close()  # a new logger replays what the dead one left
        window = ws.predictions.window("m")
        assert sorted(window["__id"]) == sorted(ids)
        assert window["x"].tolist()[:4] == [0.0, -1.0, 1.0, -1.0]
        assert ws.predictions.feedback("m", {ids[0]: 1, ids[-1]: 0}) == 2
        assert ws.predictions.logger().close() is None and ws.predictions.count("m") == 40  # replayed once
    assert not list((home / "predlog").iterdir())


def test_a_crash_after_the_segment_was_written_does_not_duplicate_rows(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    keel.Workspace(home=home).close()
    out, _ = _child(home, "written", 5).communicate(timeout=120)
    ids = _ids_of(out)
    with keel.Workspace(home=home) as ws:
        assert ws.predictions.count("m") == 10 and _wal_files(home / "predlog")  # written, file still there
        assert ws.predictions.replay() == 0
        assert sorted(ws.predictions.window("m")["__id"]) == sorted(ids)
    assert not _wal_files(home / "predlog")


def test_a_live_process_write_ahead_file_is_not_replayed_by_another(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    keel.Workspace(home=home).close()
    child = _child(home, "wait", 3)
    try:
        assert child.stdout is not None
        lines = []
        while (line := child.stdout.readline()) and line.strip() != "ready":
            lines.append(line)
        with keel.Workspace(home=home) as ws:
            assert ws.predictions.replay() == 0 and ws.predictions.count("m") == 0  # it is alive: its lock is held
            assert _wal_files(home / "predlog")
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            assert ws.predictions.replay() == 6
            assert sorted(ws.predictions.window("m")["__id"]) == sorted(_ids_of("".join(lines)))
    finally:
        child.kill()
        child.wait(30)


def test_two_loggers_in_one_process_keep_their_own_files(tmp_path: Path) -> None:
    with keel.Workspace(Settings(home=tmp_path / "ws")) as ws:
        a, b = ws.predictions.logger(flush_interval_s=60), ws.predictions.logger(flush_interval_s=60)
        a.log("m", 1, _rows(2), predictions=[0, 1])
        ws.predictions.logger()  # replays nothing of a's: a holds its lock
        assert ws.predictions.count("m") == 0
        b.log("m", 1, _rows(1), predictions=[0])
        a.close()
        b.close()
        assert ws.predictions.count("m") == 3
    assert not list((tmp_path / "ws" / "predlog").iterdir())


def test_wal_off_writes_no_file_and_settings_are_checked(tmp_path: Path) -> None:
    with keel.Workspace(Settings(home=tmp_path / "ws", predlog_wal="off")) as ws:
        log = ws.predictions.logger(flush_interval_s=60)
        log.log("m", 1, _rows(1), predictions=[0])
        assert log.wal is None and not (tmp_path / "ws" / "predlog").exists()
        log.close()
    s = Settings.from_env({"KEEL_PREDLOG_WAL": "OFF", "KEEL_PREDLOG_WAL_SYNC_MS": "0"})
    assert (s.predlog_wal, s.predlog_wal_sync_ms) == ("off", 0.0)
    assert Settings.from_env({"KEEL_PREDLOG_WAL": "Sync"}).predlog_wal == "sync"
    with pytest.raises(keel.errors.ConfigError, match="KEEL_PREDLOG_WAL"):
        Settings(predlog_wal="maybe")
