"""Monitors end to end on a real workspace: traffic in the prediction log, a check, stored
series, and the alerts the default rules raise, on synthetic data with known truth.

Traffic is scored by the registered model and written to the log the way a server writes it
(`ws.predictions.write`), so the checks read exactly what production would give them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import keel
from keel.errors import InvalidInputError, NotFoundError
from keel.monitoring import stats
from keel.monitoring.predlog import new_prediction_ids
from keel.monitoring.profiles import ReferenceProfile

FEATURES = ["a", "b", "c"]
CATS = ["x", "y", "z"]
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def world(n: int, seed: int, *, shift_b: float = 0.0, cat_p: tuple[float, ...] = (0.5, 0.3, 0.2)) -> pd.DataFrame:
    """a ~ N(0, 1), b ~ N(5, 2) (+ shift_b standard deviations), c categorical; a noisy logistic target."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    b = rng.normal(5 + 2 * shift_b, 2, n)
    c = rng.choice(CATS, n, p=list(cat_p))
    logit = 1.5 * a + 0.5 * (b - 5) + np.where(c == "x", 1.0, -0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"a": a, "b": b, "c": c, "target": y})


def register(ws: keel.Workspace, name: str, frame: pd.DataFrame) -> None:
    data = ws.datasets.add(name, frame)
    X, y = frame[FEATURES], frame["target"]
    est = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["c"]), remainder="passthrough"), LogisticRegression()
    )
    with ws.runs.start(name, inputs=[data]) as run:
        est.fit(X, y)
    ws.models.register(name, est, run=run, X=X)
    ws.models.set_alias(name, "champion", version=1)


def serve(
    ws: keel.Workspace, name: str, frame: pd.DataFrame, *, at: datetime = T0, error: str | None = None
) -> list[str]:
    """Score `frame` with the champion and log it as a server would; returns the prediction ids."""
    info = ws.models.get(f"{name}@champion")
    model = ws.models.load(info)
    X = frame[FEATURES]
    ids, _ = new_prediction_ids(len(X), at_ms=int(at.timestamp() * 1000))
    logged = X.copy()
    logged["__id"] = ids
    logged["__at"] = [at + timedelta(milliseconds=i) for i in range(len(X))]
    if error is not None:
        logged["__error"] = error
    else:
        proba = model.predict_proba(X)
        logged["__prediction"] = model.predict(X)
        for j, cls in enumerate(model.classes):
            logged[f"__proba_{cls}"] = proba[:, j]
    ws.predictions.write(name, info.version, logged)
    return ids


@pytest.fixture
def mws(ws: keel.Workspace) -> keel.Workspace:
    """Model 'syn' trained on 20,000 rows of world(); its monitor checks the newest 1,000 predictions."""
    register(ws, "syn", world(20_000, seed=0))
    ws.monitoring.watch("syn", window_rows=1000)
    return ws


def drift_alerts(result: Any) -> list[Any]:
    return [a for a in result.alerts if a.rule == "feature-drift"]


def test_no_alert_when_live_traffic_follows_the_training_distribution(mws: keel.Workspace) -> None:
    serve(mws, "syn", world(1000, seed=1))
    result = mws.monitoring.run("syn")
    assert result.drifted_features == ()
    assert result.alerts == []
    for feature in FEATURES:
        assert result.value("psi", feature) is not None and result.value("psi", feature) < 0.1
        assert result.value("drift", feature) == 0.0
    assert result.value("multivariate_auc") < 0.6
    assert result.value("prediction_psi") < 0.1
    assert result.value("rows") == 1000.0 and result.value("schema_violation_rate") == 0.0
    assert result.run.reference == "syn@1" and result.run.model_version == 1


def test_no_alert_at_a_million_rows_from_the_same_distribution(ws: keel.Workspace) -> None:
    register(ws, "big", world(20_000, seed=0))
    ws.monitoring.watch("big", window_rows=1_000_000, multivariate=False)
    serve(ws, "big", world(1_000_000, seed=7))
    result = ws.monitoring.run("big")
    assert result.value("rows") == 1_000_000
    assert result.drifted_features == () and drift_alerts(result) == []


def test_a_quarter_sd_mean_shift_in_one_feature_at_10000_rows_alerts_on_that_feature(mws: keel.Workspace) -> None:
    mws.monitoring.watch("syn", window_rows=10_000)
    serve(mws, "syn", world(10_000, seed=2, shift_b=0.25))
    result = mws.monitoring.run("syn")
    assert result.drifted_features == ("b",)
    alerts = drift_alerts(result)
    assert [a.feature for a in alerts] == ["b"]
    assert "b drifted" in alerts[0].title and "wasserstein_norm" in alerts[0].title
    evidence = alerts[0].evidence
    assert evidence["statistics"]["current_mean"] == pytest.approx(5.5, abs=0.1)
    assert evidence["statistics"]["reference_mean"] == pytest.approx(5.0, abs=0.1)
    assert evidence["reference"] == "syn@1" and evidence["window"]["rows"] == 10_000
    assert 0.0 < result.value("ks_pvalue", "b") < 1e-6  # reported beside the effect size


def test_a_change_in_category_frequencies_is_caught(mws: keel.Workspace) -> None:
    serve(mws, "syn", world(1000, seed=3, cat_p=(0.2, 0.3, 0.5)))
    result = mws.monitoring.run("syn")
    assert "c" in result.drifted_features and "a" not in result.drifted_features
    assert "c" in [a.feature for a in drift_alerts(result)]
    assert result.value("js_distance", "c") > 0.1


def test_label_shift_lowers_accuracy_and_alerts_once_feedback_arrives(ws: keel.Workspace) -> None:
    # Class-conditional features are fixed; only the class prior moves (10% positives -> 80%).
    def labelled(n: int, positives: float, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        y = (rng.random(n) < positives).astype(int)
        return pd.DataFrame(
            {"a": rng.normal(1.2 * y, 1.0), "b": rng.normal(5 + 2 * y, 2.0), "c": rng.choice(CATS, n), "target": y}
        )

    register(ws, "prior", labelled(20_000, 0.1, seed=0))
    ws.monitoring.watch("prior", window_rows=2000)
    window = labelled(2000, 0.8, seed=1)
    ids = serve(ws, "prior", window)

    before = ws.monitoring.run("prior")
    assert before.value("labelled_rows") == 0.0 and before.value("accuracy") is None
    assert not [a for a in before.alerts if a.rule in ("accuracy-drop", "auc-drop")]

    assert ws.monitoring.feedback("prior", dict(zip(ids, window["target"].astype(str), strict=True))) == 2000
    after = ws.monitoring.run("prior")
    assert after.value("labelled_rows") == 2000.0
    assert after.value("accuracy_drop") > 0.2  # the model still expects mostly negatives
    assert abs(after.value("roc_auc_drop")) < 0.05  # ranking is unchanged by a prior shift
    fired = {a.rule: a for a in after.alerts}
    assert "accuracy-drop" in fired and "auc-drop" not in fired
    evidence = fired["accuracy-drop"].evidence
    assert evidence["reference_value"] > 0.85 and evidence["current_value"] < 0.65
    assert evidence["labelled_rows"] == 2000.0


def test_refused_requests_count_as_schema_violations(mws: keel.Workspace) -> None:
    serve(mws, "syn", world(900, seed=4))
    serve(mws, "syn", world(100, seed=5), at=T0 + timedelta(seconds=5), error="column 'b': expected float, got 'high'")
    result = mws.monitoring.run("syn")
    assert result.value("rows") == 1000.0 and result.value("served_rows") == 900.0
    assert result.value("schema_violation_rate") == pytest.approx(0.1)
    assert "schema-violations" in {a.rule for a in result.alerts}


def test_checks_are_stored_as_time_series_and_scheduled(mws: keel.Workspace) -> None:
    mws.monitoring.watch("syn", schedule_s=60)
    assert mws.monitoring.due(T0) == ["syn"]  # never run
    serve(mws, "syn", world(1000, seed=1))
    first = mws.monitoring.run("syn", at=T0 + timedelta(seconds=1))
    assert mws.monitoring.due(T0 + timedelta(seconds=30)) == []
    serve(mws, "syn", world(1000, seed=2, shift_b=1.0), at=T0 + timedelta(seconds=40))
    [second] = mws.monitoring.run_due(T0 + timedelta(seconds=62))
    assert second.run.id != first.run.id and "b" in second.drifted_features

    series = mws.monitoring.series("syn", "psi", feature="b")
    assert [run_id for _, run_id, _, _ in series] == [first.run.id, second.run.id]
    assert series[0][3] < 0.1 < 0.2 < series[1][3]
    assert {f for _, _, f, _ in mws.monitoring.series("syn", "psi")} == set(FEATURES)
    assert [r.id for r in mws.monitoring.runs("syn")] == [second.run.id, first.run.id]  # newest first
    latest_run, values = mws.monitoring.latest("syn")  # type: ignore[misc]
    assert latest_run.id == second.run.id and ("b", "drift", 1.0) in values


def test_a_time_window_reads_only_recent_traffic(mws: keel.Workspace) -> None:
    mws.monitoring.watch("syn", window_s=60)
    serve(mws, "syn", world(1000, seed=2, shift_b=1.0), at=T0)  # old, drifted
    serve(mws, "syn", world(500, seed=3), at=T0 + timedelta(minutes=10))  # recent, healthy
    result = mws.monitoring.run("syn", at=T0 + timedelta(minutes=10, seconds=30))
    assert result.value("rows") == 500.0 and result.drifted_features == ()


def test_the_reference_profile_is_computed_once(mws: keel.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = stats.build_profile

    def counting(frame: pd.DataFrame, **kwargs: Any) -> ReferenceProfile:
        calls.append(len(frame))
        return real(frame, **kwargs)

    monkeypatch.setattr(stats, "build_profile", counting)
    serve(mws, "syn", world(1000, seed=1))
    mws.monitoring.run("syn")
    assert calls == [20_000, 20_000]  # the dataset's profile, then the model's outputs on it
    mws.monitoring.run("syn")
    mws.monitoring.reference_profile("syn@1")
    assert len(calls) == 2  # later checks bin only the window
    assert set(mws.monitoring.reference_profile("syn@1")["columns"]) == {*FEATURES, "target"}


def test_small_windows_skip_drift_and_feature_rates_but_still_report_schema_violations(mws: keel.Workspace) -> None:
    serve(mws, "syn", world(20, seed=1))
    result = mws.monitoring.run("syn")
    assert result.value("rows") == 20.0 and result.value("psi", "a") is None
    assert result.value("missing_rate", "a") is None and result.value("missing_rate_increase", "a") is None
    assert result.value("schema_violation_rate") == 0.0
    skipped = result.run.summary["skipped"]
    assert any("drift: 20 served rows" in s and "min_rows=100" in s for s in skipped)
    assert any("data quality per feature: 20 rows" in s for s in skipped)


def test_the_missing_values_rule_compares_with_the_references_own_rate(ws: keel.Workspace) -> None:
    def blank(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[frame.sample(frac=share, random_state=seed).index, "a"] = np.nan
        return frame

    from sklearn.impute import SimpleImputer

    train = blank(world(20_000, seed=0), 0.085, 0)  # 8.5% empty in training, as Income
    data = ws.datasets.add("gap", train)
    est = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["c"]), (SimpleImputer(), ["a"]), remainder="passthrough"),
        LogisticRegression(),
    )
    with ws.runs.start("gap", inputs=[data]) as run:
        est.fit(train[FEATURES], train["target"])
    ws.models.register("gap", est, run=run, X=train[FEATURES])
    ws.models.set_alias("gap", "champion", version=1)
    ws.monitoring.watch("gap", window_rows=1000)
    serve(ws, "gap", blank(world(1000, seed=1), 0.11, 1), at=T0)  # 11%: above 0.1, but 8.5% plus noise
    quiet = ws.monitoring.run("gap", at=T0 + timedelta(minutes=1))
    assert quiet.value("missing_rate", "a") == pytest.approx(0.11)
    assert quiet.value("missing_rate_increase", "a") == pytest.approx(0.11 - 0.085, abs=0.002)
    assert not [a for a in quiet.alerts if a.rule == "missing-values"]
    serve(ws, "gap", blank(world(1000, seed=2), 0.3, 2), at=T0 + timedelta(minutes=2))  # a broken upstream field
    loud = ws.monitoring.run("gap", at=T0 + timedelta(minutes=3))
    assert [a.feature for a in loud.alerts if a.rule == "missing-values"] == ["a"]


def test_watch_installs_the_default_rules_once_and_keeps_settings(mws: keel.Workspace) -> None:
    rules = {r.name for r in mws.monitoring.alerts.rules("syn")}
    assert {"feature-drift", "auc-drop", "schema-violations"} <= rules and "rmse-increase" not in rules
    config = mws.monitoring.watch("syn", schedule_s=30)
    assert (config.window_rows, config.schedule_s) == (1000, 30)  # earlier settings kept
    assert len(mws.monitoring.alerts.rules("syn")) == len(rules)
    assert [name for name, _, _ in mws.monitoring.monitors()] == ["syn"]


def test_bad_monitor_settings_are_refused_and_change_nothing(mws: keel.Workspace) -> None:
    with pytest.raises(NotFoundError):
        mws.monitoring.watch("nope")
    with pytest.raises(InvalidInputError, match="Unknown monitor setting.*windw_rows"):
        mws.monitoring.watch("syn", windw_rows=10)
    with pytest.raises(InvalidInputError, match="window_rows must be >= 1"):
        mws.monitoring.watch("syn", window_rows=0)
    with pytest.raises(NotFoundError):
        mws.monitoring.watch("syn", reference="missing@1")
    assert mws.monitoring.config("syn").window_rows == 1000


def test_a_model_without_training_data_needs_an_explicit_reference(ws: keel.Workspace) -> None:
    frame = world(2000, seed=0)
    est = LogisticRegression().fit(frame[["a", "b"]], frame["target"])
    ws.models.register("bare", est, X=frame[["a", "b"]])
    ws.models.set_alias("bare", "champion", version=1)
    ws.monitoring.watch("bare")
    with pytest.raises(InvalidInputError, match="no training dataset in its lineage.*reference="):
        ws.monitoring.run("bare")
    ref = ws.datasets.add("bare-ref", frame[["a", "b", "target"]])
    ws.monitoring.watch("bare", reference=ref.ref)
    result = ws.monitoring.run("bare")
    assert result.run.reference == ref.ref and result.value("rows") == 0.0


def test_one_broken_monitor_does_not_stop_the_others(mws: keel.Workspace) -> None:
    frame = world(500, seed=0)
    ws = mws
    ws.models.register("orphan", LogisticRegression().fit(frame[["a", "b"]], frame["target"]), X=frame[["a", "b"]])
    ws.monitoring.watch("orphan")  # no reference: its checks fail
    serve(ws, "syn", world(1000, seed=1))
    results = ws.monitoring.run_due()
    assert [r.run.model for r in results] == ["syn"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"window_rows": "x"}, "window_rows must be a whole number"),
        ({"window_rows": float("nan")}, "window_rows must be a whole number"),
        ({"window_rows": True}, "window_rows must be a whole number"),
        ({"window_rows": 10**30}, "window_rows must be at most"),
        ({"window_s": float("inf"), "window_rows": None}, "window_s must be a finite number"),
        ({"window_s": 1e308, "window_rows": None}, "window_s must be at most"),
        ({"schedule_s": 1e308}, "schedule_s must be at most"),
        ({"schedule_s": float("nan")}, "schedule_s must be a finite number"),
        ({"schedule_s": "60"}, "schedule_s must be a finite number"),
        ({"min_rows": 2.5}, "min_rows must be a whole number"),
        ({"multivariate": "yes"}, "multivariate must be true or false"),
        ({"reference": 3}, "reference must be a non-empty string"),
        ({"target": ""}, "target must be a non-empty string"),
        ({"alias": ["champion"]}, "Invalid alias"),
        ({"thresholds": "x"}, "thresholds must be an object"),
        ({"thresholds": {"psi": "high"}}, "thresholds.psi must be a finite number"),
        ({"thresholds": {"psi": float("nan")}}, "thresholds.psi must be a finite number"),
        ({"thresholds": {"pis": 0.3}}, "thresholds: unknown name.*pis"),
        ({"thresholds": {"noise_quantile": 2.0}}, "thresholds: .*noise_quantile"),
        ({"model": "other"}, "Unknown monitor setting.*model"),
        ({"self": 1}, "Unknown monitor setting.*self"),
    ],
)
def test_every_monitor_setting_is_validated_for_python_callers_and_nothing_is_stored(
    mws: keel.Workspace, given: dict[str, Any], message: str
) -> None:
    """Before: 'x' thresholds were stored and every later check failed; NaN became null; 1e308 passed."""
    before = mws.monitoring._meta.monitors.get_monitor("syn")
    with pytest.raises(InvalidInputError, match=message):
        mws.monitoring.watch("syn", **given)
    assert mws.monitoring._meta.monitors.get_monitor("syn") == before


def test_valid_thresholds_are_kept_and_used(mws: keel.Workspace) -> None:
    config = mws.monitoring.watch("syn", thresholds={"psi": 0.5, "ks_stat": None}, schedule_s=86_400)
    assert config.thresholds == {"psi": 0.5, "ks_stat": None} and config.schedule_s == 86_400
    assert mws.monitoring.config("syn").thresholds == {"psi": 0.5, "ks_stat": None}


def test_after_a_promotion_checks_read_the_new_champions_traffic_and_older_checks_are_marked(
    mws: keel.Workspace,
) -> None:
    serve(mws, "syn", world(1000, seed=1, shift_b=1.0), at=T0)  # v1 served drifted traffic
    before = mws.monitoring.run("syn", at=T0 + timedelta(minutes=1))
    assert "b" in before.drifted_features and before.run.model_version == 1
    assert mws.monitoring.health(["syn"])["syn"].state == "alert"

    # A retrained v2 (on data that is like the drifted traffic) is promoted.
    fresh = world(5000, seed=2, shift_b=1.0)
    data = mws.datasets.add("syn", fresh)
    est = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["c"]), remainder="passthrough"), LogisticRegression()
    )
    with mws.runs.start("syn", inputs=[data]) as run:
        est.fit(fresh[FEATURES], fresh["target"])
    mws.models.register("syn", est, run=run, X=fresh[FEATURES])
    mws.models.set_alias("syn", "champion", version=2)
    for alert in mws.monitoring.alerts.list(model="syn", status="active"):
        mws.monitoring.alerts.resolve(alert.id, note="v2 promoted")

    [old] = mws.monitoring.runs("syn")
    assert old.superseded_by == 2 and mws.monitoring.get_run("syn", old.id).superseded_by == 2
    pending = mws.monitoring.health(["syn"])["syn"]
    assert (pending.state, pending.drifted, pending.last, pending.version) == ("pending", (), None, 2)
    assert pending.superseded is not None and pending.superseded.id == old.id

    # v2 serves 300 rows like its own training data: its check sees those rows only, not v1's.
    serve(mws, "syn", world(300, seed=3, shift_b=1.0), at=T0 + timedelta(minutes=2))
    after = mws.monitoring.run("syn", at=T0 + timedelta(minutes=3))
    assert (after.run.model_version, after.run.rows, after.run.reference) == (2, 300, "syn@2")
    assert after.drifted_features == () and after.alerts == []
    healthy = mws.monitoring.health(["syn"])["syn"]
    assert healthy.state == "ok" and healthy.last is not None and healthy.last.id == after.run.id
    assert [r.superseded_by for r in mws.monitoring.runs("syn")] == [None, 2]
