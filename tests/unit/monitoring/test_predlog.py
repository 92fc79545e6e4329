"""The prediction log: the buffered logger, segments, windows, feedback, retention, export.

Tests taking `any_ws` run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel import Settings
from keel.errors import ConfigError, InvalidInputError, NotFoundError, StoreUnavailableError
from keel.monitoring.predlog import PredictionLogger, new_prediction_ids, prediction_id_time

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class RecordingSink:
    """Keeps what it is given; `gate` (when set up) holds every write until released."""

    def __init__(self, *, gate: threading.Event | None = None, fail: list[Exception] | None = None) -> None:
        self.tables: list[tuple[str, int, Any]] = []
        self.gate = gate
        self.fail = list(fail or [])
        self.entered = threading.Event()
        self.wrote = threading.Event()

    def write(self, model_name: str, version: int, frame: Any) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never released the sink"
        if self.fail:
            raise self.fail.pop(0)
        self.tables.append((model_name, version, frame))
        self.wrote.set()

    @property
    def rows(self) -> int:
        return sum(t.num_rows for _, _, t in self.tables)


def _rows(n: int, start: float = 0.0) -> list[dict[str, Any]]:
    return [{"x": start + i, "color": "red" if i % 2 else "blue"} for i in range(n)]


def _frame(n: int, at: datetime, *, step_s: float = 1.0, x0: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "__at": [at + timedelta(seconds=step_s * i) for i in range(n)],
            "x": [x0 + i for i in range(n)],
            "__prediction": [i % 2 for i in range(n)],
        }
    )


# -- ids ---------------------------------------------------------------------------------------------
def test_prediction_ids_carry_their_time_and_other_ids_do_not() -> None:
    ids, at_ms = new_prediction_ids(3)
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert {prediction_id_time(i) for i in ids} == {at_ms}
    assert prediction_id_time("f" * 32) is None  # a "time" far in the future: not one of ours
    assert prediction_id_time("not-hex-" * 4) is None
    assert prediction_id_time("abc") is None


# -- the logger -------------------------------------------------------------------------------------------
def test_log_never_waits_for_a_stuck_sink_and_drops_and_counts_past_the_buffer() -> None:
    gate = threading.Event()
    sink = RecordingSink(gate=gate)
    log = PredictionLogger(sink, max_buffer_rows=10, flush_interval_s=60, flush_rows=4)
    accepted: list[bool] = []

    def serve() -> None:
        accepted.append(log.log("m", 1, _rows(4), predictions=np.zeros(4)))  # reaches flush_rows: the writer takes it
        assert sink.entered.wait(5)  # ... and is now stuck inside the sink
        for i in range(6):  # 12 rows offered to a 10-row buffer
            accepted.append(log.log("m", 1, _rows(2, start=i), predictions=np.zeros(2)))

    t = threading.Thread(target=serve)
    t.start()
    t.join(5)
    assert not t.is_alive(), "log() blocked on a stuck sink"
    assert accepted == [True, True, True, True, True, True, False]
    assert log.dropped == 2 and log.pending == 10 and log.logged == 0
    gate.set()
    log.close()
    assert log.logged == 14 == sink.rows and log.dropped == 2 and log.pending == 0


def test_buffer_is_written_when_it_reaches_flush_rows_not_before() -> None:
    sink = RecordingSink()
    log = PredictionLogger(sink, max_buffer_rows=100, flush_interval_s=60, flush_rows=5)
    for i in range(4):
        log.log("m", 1, _rows(1, start=i), predictions=[0])
    assert not sink.wrote.wait(0.3)
    log.log("m", 1, _rows(1), predictions=[0])
    assert sink.wrote.wait(5)
    assert sink.rows == 5 and log.logged == 5
    log.close()


def test_writer_flushes_on_its_interval() -> None:
    sink = RecordingSink()
    log = PredictionLogger(sink, max_buffer_rows=100, flush_interval_s=0.05)
    log.log("m", 1, _rows(1), predictions=[1])
    assert sink.wrote.wait(5) and sink.rows == 1
    log.close()


def test_close_writes_everything_and_a_later_log_starts_the_writer_again() -> None:
    sink = RecordingSink()
    log = PredictionLogger(sink, max_buffer_rows=1000, flush_interval_s=60)
    log.log("a", 1, _rows(3), predictions=[0, 1, 0])
    log.log("b", 2, _rows(2), predictions=[1, 1])
    log.close()
    assert sorted((m, v, t.num_rows) for m, v, t in sink.tables) == [("a", 1, 3), ("b", 2, 2)]
    log.log("a", 1, _rows(1), predictions=[0])
    log.close()
    assert log.logged == 6 == sink.rows


def test_one_request_larger_than_the_buffer_is_kept_when_the_buffer_is_empty() -> None:
    sink = RecordingSink()
    log = PredictionLogger(sink, max_buffer_rows=10, flush_interval_s=60)
    assert log.log("m", 1, _rows(25), predictions=np.zeros(25))
    log.close()
    assert sink.rows == 25 and log.dropped == 0


def test_failed_writes_are_retried_when_the_store_was_unavailable_and_counted_otherwise() -> None:
    sink = RecordingSink(fail=[StoreUnavailableError("locked")])
    log = PredictionLogger(sink, max_buffer_rows=100, flush_interval_s=60)
    log.log("m", 1, _rows(3), predictions=np.zeros(3))
    assert log.flush() == 0 and log.pending == 3  # back in the buffer
    assert log.flush() == 3 and log.logged == 3 and log.dropped == 0

    broken = RecordingSink(fail=[RuntimeError("disk on fire")])
    log2 = PredictionLogger(broken, max_buffer_rows=100, flush_interval_s=60)
    log2.log("m", 1, _rows(2), predictions=np.zeros(2))
    log2.close()
    assert log2.dropped == 2 and log2.logged == 0 and broken.rows == 0


def test_logged_table_holds_ids_inputs_outputs_and_refusals_apart() -> None:
    sink = RecordingSink()
    log = PredictionLogger(sink, max_buffer_rows=100, flush_interval_s=60)
    ids, at_ms = log.new_ids(2)
    log.log(
        "m",
        3,
        _rows(2),
        predictions=np.array(["no", "yes"]),
        probabilities=np.array([[0.9, 0.1], [0.2, 0.8]]),
        classes=["no", "yes"],
        ids=ids,
        at_ms=at_ms,
        latency_ms=1.25,
    )
    log.log("m", 3, [{"x": "high", "color": 7}], error="x: expected a number")
    log.close()
    served = next(t for _, _, t in sink.tables if t.column("__error").null_count == t.num_rows).to_pandas()
    refused = next(t for _, _, t in sink.tables if t.column("__error").null_count == 0).to_pandas()
    assert served["__id"].tolist() == ids
    assert served["__prediction"].tolist() == ["no", "yes"]
    assert served["__proba_yes"].tolist() == [0.1, 0.8]
    assert served["x"].dtype == np.float64 and served["__latency_ms"].tolist() == [1.25, 1.25]
    assert served["__version"].tolist() == [3, 3]
    assert (served["__at"] == pd.Timestamp(at_ms, unit="ms", tz="UTC")).all()
    assert refused["x"].tolist() == ["high"] and refused["color"].tolist() == [7]
    assert refused["__error"].tolist() == ["x: expected a number"]


def test_logger_refuses_unusable_settings() -> None:
    with pytest.raises(InvalidInputError, match="max_buffer_rows"):
        PredictionLogger(RecordingSink(), max_buffer_rows=0)
    with pytest.raises(InvalidInputError, match="flush_interval_s"):
        PredictionLogger(RecordingSink(), flush_interval_s=0)


def test_settings_read_prediction_log_variables() -> None:
    s = Settings.from_env(
        {"KEEL_PREDLOG_FLUSH_S": "0.5", "KEEL_PREDLOG_BUFFER_ROWS": "50", "KEEL_PREDLOG_RETENTION_DAYS": "7"}
    )
    assert (s.predlog_flush_s, s.predlog_buffer_rows, s.predlog_retention_days) == (0.5, 50, 7)
    with pytest.raises(ConfigError, match="KEEL_PREDLOG_FLUSH_S='soon' is not a number"):
        Settings.from_env({"KEEL_PREDLOG_FLUSH_S": "soon"})
    with pytest.raises(ConfigError, match="predlog_buffer_rows"):
        Settings(predlog_buffer_rows=0)


# -- the log -------------------------------------------------------------------------------------------
def test_logger_into_the_workspace_log_round_trips_rows(ws: keel.Workspace) -> None:
    log = ws.predictions.logger(flush_interval_s=60)
    ids, at_ms = log.new_ids(3)
    log.log(
        "m",
        1,
        _rows(3),
        predictions=np.array([0, 1, 1]),
        probabilities=np.array([[1, 0], [0.4, 0.6], [0, 1]]),
        classes=[0, 1],
        ids=ids,
        at_ms=at_ms,
        latency_ms=2.0,
    )
    log.close()
    w = ws.predictions.window("m")
    assert w["__id"].tolist() == ids
    assert w["x"].tolist() == [0.0, 1.0, 2.0] and w["color"].tolist() == ["blue", "red", "blue"]
    assert w["__prediction"].tolist() == [0, 1, 1] and w["__proba_1"].tolist() == [0.0, 0.6, 1.0]
    assert w["__label"].isna().all() and ws.predictions.count("m") == 3


def test_window_filters_by_rows_time_version_and_labels(any_ws: keel.Workspace) -> None:
    log = any_ws.predictions
    log.write("m", 1, _frame(10, T0))  # x 0..9 at T0 + 0..9 s
    log.write("m", 2, _frame(10, T0 + timedelta(seconds=10), x0=10))  # x 10..19
    log.write("other", 1, _frame(5, T0))
    assert log.window("m")["x"].tolist() == list(range(20))
    assert log.window("m", last_rows=3)["x"].tolist() == [17, 18, 19]
    assert log.window("m", last_rows=0).empty
    assert log.window("m", version=1, last_rows=2)["x"].tolist() == [8, 9]
    got = log.window("m", since=T0 + timedelta(seconds=8), until=T0 + timedelta(seconds=11))
    assert got["x"].tolist() == [8, 9, 10, 11]
    assert log.window("m", since=T0 + timedelta(days=1)).empty
    ids = log.window("m")["__id"].tolist()
    log.feedback("m", {ids[2]: 1, ids[15]: 0})
    labelled = log.window("m", labelled_only=True)
    assert labelled["x"].tolist() == [2, 15] and labelled["__label"].tolist() == [1, 0]
    assert log.window("m", labelled_only=True, last_rows=1)["x"].tolist() == [15]


def test_last_rows_finds_the_newest_rows_across_overlapping_segments(any_ws: keel.Workspace) -> None:
    log = any_ws.predictions
    log.write("m", 1, _frame(11, T0))  # T0 .. T0+10 s, x 0..10
    log.write("m", 1, _frame(2, T0 + timedelta(seconds=8.5), x0=100))  # T0+8.5 s, T0+9.5 s: ends before the first
    assert log.window("m", last_rows=4)["x"].tolist() == [100, 9, 101, 10]


def test_feedback_stores_labels_and_replaces_a_second_label(any_ws: keel.Workspace) -> None:
    log = any_ws.predictions
    log.write("m", 1, _frame(3, T0))
    ids = log.window("m")["__id"].tolist()
    assert log.feedback("m", [(ids[0], "yes"), (ids[1], "no")]) == 2
    assert log.feedback("m", {ids[0]: "no"}) == 1  # a correction
    assert log.window("m")["__label"].tolist() == ["no", "no", None]


def test_feedback_with_an_unknown_id_names_it_and_stores_nothing(ws: keel.Workspace) -> None:
    log = ws.predictions
    log.write("m", 1, _frame(3, T0))
    log.write("other", 1, _frame(1, T0))
    ids = log.window("m")["__id"].tolist()
    stranger = log.window("other")["__id"].iloc[0]
    fresh = new_prediction_ids(1)[0][0]
    for bad in ("no-such-id", fresh, stranger):
        with pytest.raises(NotFoundError, match=bad):
            log.feedback("m", {ids[0]: 1, bad: 0})
    assert log.window("m")["__label"].isna().all()
    with pytest.raises(InvalidInputError, match="missing"):
        log.feedback("m", {ids[0]: None})


def test_feedback_finds_ids_written_by_callers_that_are_not_keel_ids(ws: keel.Workspace) -> None:
    frame = _frame(2, T0)
    frame["__id"] = ["order-17", "order-18"]
    ws.predictions.write("m", 1, frame)
    ws.predictions.write("m", 1, _frame(2, T0 + timedelta(days=3)))
    assert ws.predictions.feedback("m", {"order-18": 1.5}) == 1
    assert ws.predictions.window("m", labelled_only=True)["__id"].tolist() == ["order-18"]


def test_retention_deletes_old_segments_and_gc_then_removes_their_blobs(any_ws: keel.Workspace) -> None:
    log = any_ws.predictions
    now = datetime.now(UTC)
    old = log.write("m", 1, _frame(3, now - timedelta(days=100)))
    new = log.write("m", 1, _frame(2, now - timedelta(days=1)))
    assert old is not None and new is not None
    assert log.apply_retention() == 1  # the default: 90 days
    assert [s.id for s in log.segments("m")] == [new.id] and log.count("m") == 2
    report = any_ws.gc(grace_s=0)
    assert old.digest in report.deleted and new.digest not in report.deleted
    assert len(log.window("m")) == 2
    assert log.apply_retention(older_than_days=0) == 1 and log.count("m") == 0


def test_retention_of_zero_days_in_settings_keeps_everything(tmp_path: Any) -> None:
    with keel.Workspace(Settings(home=tmp_path, predlog_retention_days=0)) as w:
        w.predictions.write("m", 1, _frame(1, datetime.now(UTC) - timedelta(days=1000)))
        assert w.predictions.apply_retention() == 0 and w.predictions.count("m") == 1


def test_compaction_merges_small_segments_and_keeps_every_row(any_ws: keel.Workspace) -> None:
    log = any_ws.predictions
    for i in range(5):
        log.write("m", 1, _frame(2, T0 + timedelta(seconds=10 * i), x0=10 * i))
    log.write("m", 1, _frame(1, T0 + timedelta(days=2), x0=99))  # another day: kept apart
    refused = pd.DataFrame({"__at": [T0 + timedelta(seconds=55)], "x": ["high"], "__error": ["x is text"]})
    log.write("m", 1, refused)  # text where the others hold numbers: cannot merge with them
    before = log.window("m")
    assert log.compact("m") == 4
    assert sorted(s.rows for s in log.segments("m")) == [1, 1, 10]
    after = log.window("m")
    pd.testing.assert_frame_equal(before, after)
    assert any_ws.gc(grace_s=0).deleted  # the merged-away blobs are no longer referenced


def test_export_makes_a_dataset_version_of_labelled_served_rows_with_lineage(ws: keel.Workspace) -> None:
    log = ws.predictions
    log.write("m", 1, _frame(4, T0))
    log.write("m", 2, _frame(2, T0 + timedelta(seconds=4), x0=4))
    refused = pd.DataFrame({"__at": [T0 + timedelta(seconds=1)], "x": [50.0], "__error": ["bad"]})
    log.write("m", 2, refused)
    w = log.window("m")
    log.feedback("m", {w["__id"][0]: 1, w["__id"][5]: 0, w.loc[w["__error"].notna(), "__id"].iloc[0]: 1})
    v = log.export("m", "m-live", target="y")
    data = ws.datasets.load(v)
    assert data.columns.tolist() == ["x", "y"]
    assert data["x"].tolist() == [0.0, 4.0] and data["y"].tolist() == [1, 0]  # the refused row is left out
    assert v.tags["source"] == "prediction_log" and v.tags["model"] == "m"
    assert v.tags["model_versions"] == "1,2" and v.tags["rows"] == "2" and v.tags["labelled_rows"] == "2"
    assert v.tags["window_start"].startswith("2025-03-01T12:00:00")
    assert "prediction log" in v.description and "m" in v.description
    everything = log.export("m", "m-all", labelled_only=False, since=T0 + timedelta(seconds=2))
    assert ws.datasets.load(everything)["x"].tolist() == [2.0, 3.0, 4.0, 5.0]
    with pytest.raises(InvalidInputError, match="no labelled predictions"):
        log.export("m", "m-none", since=T0 + timedelta(days=1))
    with pytest.raises(InvalidInputError, match="input column"):
        log.export("m", "m-clash", target="x")


def test_refused_inputs_of_mixed_types_come_back_exactly_even_after_compaction(ws: keel.Workspace) -> None:
    log = ws.predictions.logger(flush_interval_s=60)
    log.log("m", 1, [{"x": 1.5}, {"x": "high"}], error="x: mistyped")
    log.flush()
    log.log("m", 1, [{"x": [1, 2]}, {"x": 3}], error="x: mistyped")
    log.flush()
    log.log("m", 1, [{"x": "low"}], error="x: mistyped")  # all text: a plain column, not JSON
    log.close()
    expected = [1.5, "high", [1, 2], 3, "low"]
    assert ws.predictions.window("m")["x"].tolist() == expected
    assert ws.predictions.compact("m") == 1  # the two JSON-marked segments merge; the plain one stays
    assert ws.predictions.window("m")["x"].tolist() == expected


def test_maintenance_runs_on_its_own_thread_now_and_then() -> None:
    ran = threading.Event()
    log = PredictionLogger(RecordingSink(), flush_interval_s=0.02, maintenance=ran.set, maintenance_interval_s=0)
    log.log("m", 1, _rows(1), predictions=[0])
    assert ran.wait(5)
    log.close()


def test_rows_written_with_keel_ids_but_no_times_take_the_ids_times_and_accept_feedback(ws: keel.Workspace) -> None:
    ids, at_ms = new_prediction_ids(3, at_ms=int(T0.timestamp() * 1000))
    ws.predictions.write("m", 1, pd.DataFrame({"__id": ids, "x": [1.0, 2.0, 3.0], "__prediction": [0, 1, 0]}))
    log = ws.predictions.window("m")
    assert (log["__at"] == pd.Timestamp(T0)).all()
    assert ws.predictions.feedback("m", {ids[0]: 1, ids[2]: 0}) == 2
    assert ws.predictions.window("m")["__label"].tolist() == [1, None, 0]
