"""Checks from segment summaries merged (keel.monitoring.windowsummary, predsummaries,
summarycheck) give what checks from the window's rows give: the same values (to 1e-12), the same
drifted features and evidence, whatever the window's cut, errors, column types or compaction."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel.entities import ModelVersion
from keel.monitoring.check import CheckValues, compute_check
from keel.monitoring.columns import AT, ERROR, ID, LABEL, PREDICTION, VERSION
from keel.monitoring.monitor_config import MonitorConfig
from keel.monitoring.predlog import new_prediction_ids
from keel.monitoring.profiles import ModelReference
from keel.monitoring.stats import build_profile
from keel.monitoring.summarycheck import check_from_summary
from keel.monitoring.windowsummary import SummaryPlan, decode, encode, merge, summarize

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
INFO = ModelVersion("m", 1, "sklearn", "sha256:0", 0, None, None, {}, {}, {}, "", None, ("d@1",), (), T0, "")
FEATURES = ["a", "b", "d", "t", "c", "u", "f"]
CONFIG = MonitorConfig(min_rows=50, multivariate=False)


def table(n: int, seed: int, *, drift: bool) -> pd.DataFrame:
    """a normal, b discrete ints, d with NaN and inf, t heavy-tailed, c categorical (unseen labels
    when drifted), u categorical with missing values, f bool."""
    rng = np.random.default_rng(seed)
    shift = 0.3 if drift else 0.0
    d = rng.normal(2, 1, n)
    d[rng.random(n) < 0.05] = np.nan
    d[rng.random(n) < 0.01] = np.inf
    c = rng.choice(["x", "y", "z"], n, p=[0.3, 0.3, 0.4] if drift else [0.5, 0.3, 0.2]).astype(object)
    if drift:
        c[rng.random(n) < 0.05] = "new"
    u = rng.choice(np.array(["p", "q", None], dtype=object), n, p=[0.45, 0.45, 0.1])
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0 + shift, n),
            "b": rng.integers(0, 8 + (3 if drift else 0), n).astype(np.int64),
            "d": d,
            "t": rng.lognormal(shift, 1.2, n) * 100,
            "c": c,
            "u": u,
            "f": rng.random(n) < (0.5 if drift else 0.3),
        }
    )


def outputs(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"__proba_1": 1 / (1 + np.exp(-frame["a"].to_numpy(dtype=float)))})


REFERENCE = table(4000, seed=0, drift=False)
PROFILE = build_profile(REFERENCE)
OUTPUTS = ModelReference(outputs=build_profile(outputs(REFERENCE)))
PLAN = SummaryPlan.of(FEATURES, PROFILE, OUTPUTS.outputs, "d@1")


def logged(n: int, seed: int, *, drift: bool = True, start: datetime = T0) -> pd.DataFrame:
    frame = table(n, seed, drift=drift)
    frame["__proba_1"] = outputs(frame)["__proba_1"]
    frame[PREDICTION] = (frame["__proba_1"] > 0.5).astype(np.int64)
    ids, _ = new_prediction_ids(n, at_ms=int(start.timestamp() * 1000))
    frame[ID] = ids
    frame[AT] = [start + timedelta(milliseconds=i) for i in range(n)]
    return frame


def from_rows(window: pd.DataFrame) -> CheckValues:
    return compute_check(
        window,
        FEATURES,
        PROFILE,
        CONFIG,
        model="m",
        info=INFO,
        reference="d@1",
        model_reference=lambda: OUTPUTS,
        reference_sample=lambda: None,
    )


def from_summary(summary: Any, labelled: pd.DataFrame, start: Any = None, end: Any = None) -> CheckValues:
    return check_from_summary(
        summary,
        labelled,
        FEATURES,
        PROFILE,
        CONFIG,
        model="m",
        info=INFO,
        reference="d@1",
        model_reference=lambda: OUTPUTS,
        window_start=start,
        window_end=end,
    )


def same(rows: CheckValues, merged: CheckValues, *, span: bool = True) -> None:
    assert [(f, m) for f, m, _ in merged.values] == [(f, m) for f, m, _ in rows.values]
    for (feature, metric, want), (_, _, got) in zip(rows.values, merged.values, strict=True):
        if want is None:
            assert got is None, (feature, metric)
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (feature, metric)
    assert merged.drifted == rows.drifted and rows.drifted  # something drifted: the decisions are compared
    assert merged.rows == rows.rows and merged.labelled_rows == rows.labelled_rows
    _close(merged.summary, rows.summary, "summary")
    if span:
        assert (merged.window_start, merged.window_end) == (rows.window_start, rows.window_end)


def _close(got: Any, want: Any, where: str) -> None:
    """Equal, numbers to 1e-12 (NaN equal to NaN), through dicts, lists and tuples."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, rel=1e-12, abs=1e-12), where
    else:
        assert got == want, where


# -- pure: parts of a frame ------------------------------------------------------------------------
def test_merged_summaries_of_parts_give_the_statistics_of_the_whole_window() -> None:
    window = logged(6000, seed=1)
    window[ERROR] = None
    window.loc[window.index[::97], ERROR] = "refused"  # refused rows: quality only
    cuts = [0, 1, 900, 2500, 2501, 4700, 6000]
    parts = [summarize(window.iloc[a:b], PLAN) for a, b in zip(cuts, cuts[1:], strict=False)]
    merged = merge(parts, PLAN)
    labelled = window.iloc[0:0].assign(**{LABEL: []})
    same(from_rows(window.assign(**{LABEL: None})), from_summary(merged, labelled), span=False)
    # The stored form reads back to the same numbers.
    stored = merge([decode(encode(p, PLAN), PLAN) for p in parts], PLAN)  # type: ignore[misc]
    same(from_rows(window.assign(**{LABEL: None})), from_summary(stored, labelled), span=False)


def test_a_summary_of_another_plan_is_not_used() -> None:
    other = SummaryPlan.of(FEATURES, PROFILE, OUTPUTS.outputs, "d@2")
    data = encode(summarize(logged(100, seed=2), PLAN), PLAN)
    assert decode(data, PLAN) is not None and decode(data, other) is None


# -- the log: stored summaries, cut windows, errors, mixed types, compaction --------------------------
@pytest.fixture
def log(ws: keel.Workspace) -> Any:
    ws.predictions.summary_plan = lambda model, version: PLAN
    return ws.predictions


def write_minutes(log: Any, minutes: int, rows: int = 700) -> None:
    for i in range(minutes):
        log.write("m", 1, logged(rows, seed=10 + i, start=T0 + timedelta(minutes=i)))


def test_a_window_of_whole_segments_reads_no_rows_and_matches_the_rows(log: Any) -> None:
    write_minutes(log, 5)
    since, until = T0, T0 + timedelta(minutes=10)
    part = log.window_summary("m", PLAN, since=since, until=until, version=1)
    assert part is not None and (part.summarized, part.read) == (5, 0)
    same(
        from_rows(log.window("m", since=since, until=until, version=1)),
        from_summary(part.summary, part.labelled, part.start, part.end),
    )


@pytest.mark.parametrize("by", ["time", "count"])
def test_a_boundary_inside_a_segment_reads_that_segments_rows(log: Any, by: str) -> None:
    write_minutes(log, 6)
    if by == "time":  # from the middle of minute 1 to the middle of minute 4
        kw: dict[str, Any] = {
            "since": T0 + timedelta(minutes=1, milliseconds=350),
            "until": T0 + timedelta(minutes=4, milliseconds=200),
        }
    else:
        kw = {"last_rows": 2 * 700 + 333, "until": T0 + timedelta(minutes=10)}
    part = log.window_summary("m", PLAN, version=1, **kw)
    assert part is not None and part.summarized == 2
    rows = from_rows(log.window("m", version=1, **kw))
    assert rows.rows == (2 * 700 + 350 + 201 if by == "time" else 2 * 700 + 333)  # bounds included
    same(rows, from_summary(part.summary, part.labelled, part.start, part.end))


def test_refused_requests_and_text_in_a_numeric_feature_are_read_with_the_window(log: Any) -> None:
    write_minutes(log, 3)
    writer = log.logger(flush_interval_s=60)
    at_ms = int((T0 + timedelta(minutes=3)).timestamp() * 1000)
    records = [{"a": v, "b": 3, "c": "x"} for v in ["high", 0.5, [1, 2], 2.5] * 10]
    writer.log("m", 1, records, error="a: mistyped", at_ms=at_ms)  # mixed types: stored as JSON text
    writer.close()
    text = logged(300, seed=51, start=T0 + timedelta(minutes=4))
    text["a"] = text["a"].map(repr)  # a numeric feature logged as text
    log.write("m", 1, text)
    kw = {"since": T0, "until": T0 + timedelta(minutes=10)}
    part = log.window_summary("m", PLAN, version=1, **kw)
    assert part is not None and (part.summarized, part.read) == (3, 2)
    rows = from_rows(log.window("m", version=1, **kw))
    same(rows, from_summary(part.summary, part.labelled, part.start, part.end))
    assert dict(((f, m), v) for f, m, v in rows.values)[("", "schema_violation_rate")] > 0


def test_segments_logged_before_the_plan_are_summarized_once_by_the_first_check(ws: keel.Workspace) -> None:
    write_minutes(ws.predictions, 3)  # no plan yet: no summaries
    kw = {"since": T0, "until": T0 + timedelta(minutes=10)}
    first = ws.predictions.window_summary("m", PLAN, version=1, **kw)
    second = ws.predictions.window_summary("m", PLAN, version=1, **kw)
    assert first is not None and second is not None
    assert (first.read, second.read) == (3, 0)
    same(from_summary(first.summary, first.labelled), from_summary(second.summary, second.labelled), span=False)


def test_compaction_merges_the_summaries_and_retention_drops_them(log: Any, ws: keel.Workspace) -> None:
    write_minutes(log, 4, rows=300)
    kw = {"since": T0, "until": T0 + timedelta(minutes=10)}
    rows = from_rows(log.window("m", version=1, **kw))
    assert log.compact("m", target_rows=10_000) == 3
    part = log.window_summary("m", PLAN, version=1, **kw)
    assert part is not None and (part.summarized, part.read) == (1, 0)  # the merged summary, not the rows
    same(rows, from_summary(part.summary, part.labelled, part.start, part.end))
    assert log.apply_retention(older_than_days=0) == 1
    with ws._meta.predictions.connect() as conn:  # no summary reference outlives its segment
        from sqlalchemy import select

        from keel.storage import schema as s

        owners = conn.execute(select(s.blob_refs.c.owner)).scalars().all()
    assert not [o for o in owners if o.startswith("prediction_summary:")]


def test_labelled_rows_come_with_their_feedback(log: Any) -> None:
    write_minutes(log, 2)
    window = log.window("m", version=1)
    ids = window[ID].tolist()[::5]
    log.feedback("m", {i: 1 for i in ids})
    part = log.window_summary("m", PLAN, version=1, since=T0, until=T0 + timedelta(minutes=5))
    assert part is not None and part.read == 0
    assert sorted(part.labelled[ID]) == sorted(ids) and set(part.labelled[LABEL]) == {1}
    assert VERSION not in part.labelled.columns  # only what performance reads


# -- a monitor: summaries stored at log time, the check merges them -----------------------------------
def test_a_monitor_checks_from_log_time_summaries_and_gets_what_the_rows_give(
    ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 3000), "g": rng.choice(["p", "q"], 3000)})
    train["y"] = (train["x"] + (train["g"] == "p") > 0.5).astype(int)
    data = ws.datasets.add("s", train)
    with ws.runs.start("s", inputs=[data]) as run:
        est = LogisticRegression().fit(train[["x"]], train["y"])
    ws.models.register("s", est, run=run, X=train[["x"]])
    ws.models.set_alias("s", "champion", version=1)
    ws.monitoring.watch("s", window_rows=1500, multivariate=False, min_rows=50)

    def serve(i: int, shift: float) -> list[str]:
        x = np.random.default_rng(i).normal(shift, 1, 500)
        frame = logged(500, seed=i, start=T0 + timedelta(minutes=i))[[ID, AT]].assign(x=x)
        frame[PREDICTION] = est.predict(frame[["x"]])
        frame["__proba_1"] = est.predict_proba(frame[["x"]])[:, 1]
        ws.predictions.write("s", 1, frame)
        return list(frame[ID])

    serve(0, 0.0)
    ws.monitoring.run("s", at=T0 + timedelta(hours=1))  # the first check stores the output profile
    ws.monitoring._plans._cache.clear()  # (plans are reused for 10 s)
    ids = [i for k in (1, 2, 3) for i in serve(k, 0.6)]
    ws.monitoring.feedback("s", {i: int(k % 3 == 0) for k, i in enumerate(ids[::4])})
    reads: list[Any] = []
    monkeypatch.setattr(ws.predictions, "window", lambda *a, **k: reads.append(a) or pytest.fail("rows read"))
    merged = ws.monitoring.run("s", at=T0 + timedelta(hours=2))
    assert reads == []
    monkeypatch.undo()
    monkeypatch.setattr(ws.monitoring, "_check_summarized", lambda *a, **k: None)
    rows = ws.monitoring.run("s", at=T0 + timedelta(hours=2))
    assert rows.value("rows") == 1500 and rows.value("labelled_rows") == len(ids[::4])
    assert rows.value("accuracy") is not None and rows.drifted_features == ("x",)
    assert [(f, m) for f, m, _ in merged.values] == [(f, m) for f, m, _ in rows.values]
    for (f, m, want), (_, _, got) in zip(rows.values, merged.values, strict=True):
        assert (got is None) if want is None else got == pytest.approx(want, rel=1e-12, abs=1e-12), (f, m)
    assert [a.rule for a in merged.alerts] == [a.rule for a in rows.alerts]
