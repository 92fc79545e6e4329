"""Statistical quality of keel.monitoring.stats, on seeded synthetic data whose truth is known."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn import metrics

from keel.errors import InvalidInputError
from keel.monitoring._drift import positions
from keel.monitoring.stats import (
    DriftThresholds,
    build_reference,
    classifier_drift_auc,
    drift_report,
    performance,
    prediction_drift,
    quality_report,
)

NUMERIC = [f"num{i}" for i in range(12)]
CATEGORICAL = [f"cat{i}" for i in range(8)]


def mixed_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """20 columns: 12 numeric of assorted shapes (skewed, discrete, bounded, with gaps) and 8
    categorical (text, pandas categorical, bool, with missing values)."""
    labels20 = np.array([f"c{i:02d}" for i in range(20)])
    p20 = np.r_[np.full(10, 0.08), np.full(10, 0.02)]
    num0 = rng.normal(0.0, 1.0, n)
    num0[rng.random(n) < 0.02] = np.nan  # 2% missing
    return pd.DataFrame(
        {
            "num0": num0,
            "num1": rng.normal(50.0, 10.0, n),
            "num2": rng.lognormal(0.0, 1.0, n),
            "num3": rng.exponential(2.0, n),
            "num4": rng.uniform(-1.0, 1.0, n),
            "num5": rng.poisson(3.0, n),  # int64
            "num6": rng.integers(18, 91, n),  # ages
            "num7": rng.gamma(2.0, 1.0, n),
            "num8": rng.standard_t(5, n),
            "num9": rng.beta(2.0, 5.0, n),
            "num10": np.where(rng.random(n) < 0.4, 0.0, rng.exponential(1.0, n)),  # zero-inflated
            "num11": (rng.random(n) < 0.3).astype(np.int64),  # a 0/1 flag
            "cat0": rng.choice(np.array(["a", "b", "c"]), n, p=[0.6, 0.3, 0.1]),
            "cat1": rng.choice(np.array(list("abcde")), n, p=[0.4, 0.25, 0.15, 0.12, 0.08]),
            "cat2": rng.choice(np.array(list("abcdefghij")), n),
            "cat3": rng.choice(labels20, n, p=p20),
            "cat4": rng.random(n) < 0.7,  # bool
            "cat5": pd.Categorical.from_codes(rng.integers(0, 4, n), categories=["north", "south", "east", "west"]),
            "cat6": pd.Series(rng.choice(np.array(["x", "y"]), n)).where(rng.random(n) > 0.05, None),
            "cat7": rng.choice(np.array(["basic", "plus", "pro"]), n, p=[0.5, 0.35, 0.15]),
        }
    )


# -- drift decisions ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_no_drift_flagged_when_reference_and_window_share_a_distribution_at_1000_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = build_reference(mixed_frame(rng, 1000))
    report = drift_report(reference, mixed_frame(rng, 1000))
    assert len(report.features) == 20
    assert report.drifted_features == ()
    assert report.drifted is False and report.share_drifted == 0.0


def test_no_drift_flagged_when_reference_and_window_share_a_distribution_at_1_000_000_rows() -> None:
    rng = np.random.default_rng(7)
    reference = build_reference(mixed_frame(rng, 1_000_000))
    report = drift_report(reference, mixed_frame(rng, 1_000_000))
    assert report.drifted_features == ()
    # At this size the noise guard is far below the thresholds: decisions are pure effect sizes,
    # and every effect is tiny.
    for fd in report.features:
        assert dict(fd.limits)["psi"] == DriftThresholds().psi
        assert fd.psi < 0.01
        if fd.kind == "numeric":
            assert fd.wasserstein_norm is not None and fd.wasserstein_norm < 0.01


@pytest.mark.parametrize("feature", ["num1", "num2", "num6", "num10"])
def test_quarter_std_mean_shift_in_one_feature_is_flagged_on_that_feature_only(feature: str) -> None:
    rng = np.random.default_rng(11)
    reference_frame = mixed_frame(rng, 10_000)
    window = mixed_frame(rng, 10_000)
    window[feature] = window[feature] + 0.25 * reference_frame[feature].std()
    report = drift_report(build_reference(reference_frame), window)
    assert report.drifted_features == (feature,)
    shifted = report.feature(feature)
    assert any(reason.startswith("wasserstein_norm") for reason in shifted.reasons)
    assert shifted.wasserstein_norm == pytest.approx(0.25, abs=0.03)
    assert shifted.current_mean is not None and shifted.reference_mean is not None
    assert shifted.current_mean > shifted.reference_mean
    assert report.drifted is False  # one feature in twenty is below the report's share of 0.5


def test_change_in_category_frequencies_is_caught() -> None:
    rng = np.random.default_rng(3)
    reference_frame = mixed_frame(rng, 10_000)
    window = mixed_frame(rng, 10_000)
    window["cat7"] = rng.choice(np.array(["basic", "plus", "pro"]), 10_000, p=[0.3, 0.35, 0.35])
    report = drift_report(build_reference(reference_frame), window)
    assert report.drifted_features == ("cat7",)
    fd = report.feature("cat7")
    assert fd.kind == "categorical" and fd.ks_stat is None and fd.wasserstein_norm is None
    assert any(reason.startswith("js_distance") for reason in fd.reasons)
    shares = {label: (ref, cur) for label, ref, cur in fd.shares}
    assert shares["pro"][0] == pytest.approx(0.15, abs=0.02) and shares["pro"][1] == pytest.approx(0.35, abs=0.02)


def test_new_category_in_window_goes_to_other_and_is_caught() -> None:
    rng = np.random.default_rng(4)
    reference_frame = mixed_frame(rng, 5000)
    window = mixed_frame(rng, 5000)
    window.loc[:999, "cat0"] = "brand-new"  # 20% of rows
    fd = drift_report(build_reference(reference_frame), window).feature("cat0")
    assert fd.drifted
    assert dict((label, cur) for label, _, cur in fd.shares)["__other__"] == pytest.approx(0.2)


def test_noise_guard_raises_thresholds_only_for_small_windows() -> None:
    rng = np.random.default_rng(5)
    reference = build_reference(pd.DataFrame({"x": rng.normal(size=50_000)}))
    small = drift_report(reference, pd.DataFrame({"x": rng.normal(size=200)})).feature("x")
    large = drift_report(reference, pd.DataFrame({"x": rng.normal(size=50_000)})).feature("x")
    assert dict(small.limits)["wasserstein_norm"] > 0.2  # 200 rows cannot resolve 0.1 std
    assert dict(large.limits)["wasserstein_norm"] == 0.1
    unguarded = drift_report(
        reference, pd.DataFrame({"x": rng.normal(size=200)}), thresholds=DriftThresholds(noise_quantile=None)
    )
    assert dict(unguarded.feature("x").limits)["wasserstein_norm"] == 0.1


def test_thresholds_are_configurable_and_validated() -> None:
    rng = np.random.default_rng(6)
    reference = build_reference(pd.DataFrame({"x": rng.normal(size=20_000)}))
    window = pd.DataFrame({"x": rng.normal(0.15, 1.0, size=20_000)})
    assert drift_report(reference, window).drifted_features == ("x",)
    assert drift_report(reference, window, thresholds=DriftThresholds(wasserstein_norm=0.2)).drifted_features == ()
    strict_ks = DriftThresholds(wasserstein_norm=1.0, ks_stat=0.05)
    assert drift_report(reference, window, thresholds=strict_ks).feature("x").reasons[0].startswith("ks_stat")
    with pytest.raises(InvalidInputError, match="psi"):
        DriftThresholds(psi=-1)
    with pytest.raises(InvalidInputError, match="noise_quantile"):
        DriftThresholds(noise_quantile=1.0)


# -- agreement with scipy on the raw data ---------------------------------------------------------
DISTRIBUTIONS = {
    "normal": lambda rng, n: rng.normal(size=n),
    "lognormal": lambda rng, n: rng.lognormal(size=n),
    "pareto": lambda rng, n: rng.pareto(1.5, size=n),  # heavy tail: infinite variance
    "poisson": lambda rng, n: rng.poisson(3.0, size=n).astype(float),
    "binary": lambda rng, n: (rng.random(n) < 0.3).astype(float),
    "zero_inflated": lambda rng, n: np.where(rng.random(n) < 0.4, 0.0, rng.exponential(size=n)),
}


@pytest.mark.parametrize("shift", [0.0, -0.05, 0.3])
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_ks_and_wasserstein_from_the_profile_match_scipy_on_raw_data(name: str, shift: float) -> None:
    rng = np.random.default_rng(21)
    ref = DISTRIBUTIONS[name](rng, 50_000)
    cur = DISTRIBUTIONS[name](rng, 5000) + shift
    fd = drift_report(build_reference(pd.DataFrame({"x": ref})), pd.DataFrame({"x": cur})).feature("x")
    ks = scipy_stats.ks_2samp(ref, cur, method="asymp")
    assert fd.ks_stat is not None and fd.wasserstein is not None
    # The KS supremum is read at 2 x 1001 grid points: it can miss at most one grid step of mass.
    assert abs(fd.ks_stat - ks.statistic) <= 1e-3 + 1e-12
    assert fd.wasserstein == pytest.approx(scipy_stats.wasserstein_distance(ref, cur), abs=2e-4 * ref.std())
    assert fd.wasserstein_norm == pytest.approx(fd.wasserstein / ref.std(ddof=1))


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_large_windows_take_the_lookup_table_path_and_still_match_scipy(name: str) -> None:
    rng = np.random.default_rng(24)
    ref = DISTRIBUTIONS[name](rng, 100_000)
    cur = DISTRIBUTIONS[name](rng, 200_000) * 1.1
    fd = drift_report(build_reference(pd.DataFrame({"x": ref})), pd.DataFrame({"x": cur})).feature("x")
    assert fd.ks_stat == pytest.approx(scipy_stats.ks_2samp(ref, cur).statistic, abs=1e-3)
    assert fd.wasserstein == pytest.approx(scipy_stats.wasserstein_distance(ref, cur), abs=2e-4 * ref.std())


@pytest.mark.parametrize("name", [*sorted(DISTRIBUTIONS), "outside_range", "few_values"])
def test_window_positions_equal_numpy_searchsorted(name: str) -> None:
    rng = np.random.default_rng(25)
    if name == "outside_range":
        ref, cur = rng.normal(size=50_000), rng.normal(0.0, 3.0, size=300_000)
    elif name == "few_values":
        ref, cur = rng.integers(0, 3, 50_000).astype(float), rng.integers(-1, 5, 300_000).astype(float)
    else:
        ref, cur = DISTRIBUTIONS[name](rng, 50_000), DISTRIBUTIONS[name](rng, 300_000) + 0.01
    grid = np.asarray(build_reference(pd.DataFrame({"x": ref}))["columns"]["x"]["quantiles"])
    cur = np.r_[cur, grid]  # every grid value itself, where the count must not include it
    assert np.array_equal(positions(grid, cur), np.searchsorted(grid, cur, side="left"))


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_ks_and_wasserstein_are_exact_when_the_grid_holds_every_reference_value(name: str) -> None:
    rng = np.random.default_rng(22)
    ref = DISTRIBUTIONS[name](rng, 800)
    cur = DISTRIBUTIONS[name](rng, 300) + 0.1
    fd = drift_report(build_reference(pd.DataFrame({"x": ref})), pd.DataFrame({"x": cur})).feature("x")
    ks = scipy_stats.ks_2samp(ref, cur, method="asymp")
    assert fd.ks_stat == pytest.approx(ks.statistic, abs=1e-12)
    assert fd.ks_pvalue == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-300)
    assert fd.wasserstein == pytest.approx(scipy_stats.wasserstein_distance(ref, cur), rel=1e-9, abs=1e-12)


def test_ks_pvalue_is_reported_but_does_not_decide() -> None:
    rng = np.random.default_rng(23)
    reference = build_reference(pd.DataFrame({"x": rng.normal(size=1_000_000)}))
    fd = drift_report(reference, pd.DataFrame({"x": rng.normal(0.02, 1.0, size=1_000_000)})).feature("x")
    assert fd.ks_pvalue is not None and fd.ks_pvalue < 1e-6  # "significant" ...
    assert not fd.drifted  # ... but 0.02 std is no drift anyone acts on


# -- PSI / JS sanity --------------------------------------------------------------------------------
def test_identical_window_has_zero_distances() -> None:
    rng = np.random.default_rng(31)
    frame = mixed_frame(rng, 2000)
    report = drift_report(build_reference(frame), frame)
    for fd in report.features:
        assert fd.psi == pytest.approx(0.0, abs=1e-12) and fd.js_distance == pytest.approx(0.0, abs=1e-12)
        if fd.kind == "numeric":
            assert fd.ks_stat == 0.0 and fd.wasserstein == pytest.approx(0.0, abs=1e-9)


def test_psi_and_js_are_roughly_symmetric_and_grow_with_the_shift() -> None:
    rng = np.random.default_rng(32)
    a = pd.DataFrame({"x": rng.normal(size=20_000), "c": rng.choice(np.array(list("abc")), 20_000, p=[0.5, 0.3, 0.2])})
    b = pd.DataFrame(
        {"x": rng.normal(0.5, 1.0, size=20_000), "c": rng.choice(np.array(list("abc")), 20_000, p=[0.3, 0.3, 0.4])}
    )
    ab, ba = drift_report(build_reference(a), b), drift_report(build_reference(b), a)
    for name in ("x", "c"):
        # Bins are the reference's quantiles, so swapping sides changes them: symmetric-ish only.
        assert ab.feature(name).psi == pytest.approx(ba.feature(name).psi, rel=0.15)
        assert ab.feature(name).js_distance == pytest.approx(ba.feature(name).js_distance, rel=0.15)
    shifts = [drift_report(build_reference(a), a.assign(x=a["x"] + s)).feature("x") for s in (0.1, 0.3, 1.0)]
    for stat in ("psi", "js_distance", "ks_stat", "wasserstein_norm"):
        values = [getattr(fd, stat) for fd in shifts]
        assert values == sorted(values) and values[0] < values[-1], stat
    assert shifts[1].wasserstein_norm == pytest.approx(0.3, rel=0.01)
    assert 0 <= shifts[-1].js_distance <= 1


# -- reference profile -----------------------------------------------------------------------------
def test_reference_profile_is_json_and_a_check_from_the_json_round_trip_is_identical() -> None:
    rng = np.random.default_rng(41)
    frame = mixed_frame(rng, 3000).assign(when=pd.date_range("2026-01-01", periods=3000, freq="min"))
    reference = build_reference(frame, bins=10, quantile_points=1001, max_categories=5)
    assert set(reference["columns"]) == set(NUMERIC + CATEGORICAL)
    assert "when" in reference["skipped"]
    num = reference["columns"]["num0"]
    assert num["kind"] == "numeric" and num["missing_rate"] == pytest.approx(frame["num0"].isna().mean())
    assert num["n"] == frame["num0"].notna().sum() and sum(num["counts"]) == num["n"]
    assert len(num["counts"]) == len(num["edges"]) + 1 <= 10
    assert num["min"] == frame["num0"].min() and num["mean"] == pytest.approx(frame["num0"].mean())
    cat = reference["columns"]["cat3"]
    assert len(cat["categories"]) == 5 and cat["other"] + sum(cat["categories"].values()) == 3000
    assert reference["columns"]["cat6"]["missing_rate"] == pytest.approx(frame["cat6"].isna().mean())
    reloaded = json.loads(json.dumps(reference, allow_nan=False))
    window = mixed_frame(rng, 1000)
    assert drift_report(reloaded, window) == drift_report(reference, window)


def test_report_serialises_and_lists_reference_columns_missing_from_the_window() -> None:
    rng = np.random.default_rng(42)
    reference = build_reference(mixed_frame(rng, 2000))
    report = drift_report(reference, mixed_frame(rng, 500).drop(columns=["num3", "cat1"]))
    assert report.skipped == ("num3: not in the window", "cat1: not in the window")
    assert len(report.features) == 18
    decoded = json.loads(json.dumps(asdict(report), allow_nan=False))
    assert decoded["thresholds"]["psi"] == 0.2 and decoded["features"][0]["feature"] == "num0"


def test_window_values_logged_as_text_are_parsed_and_missing_ones_reported() -> None:
    rng = np.random.default_rng(43)
    values = rng.normal(size=2000)
    reference = build_reference(pd.DataFrame({"x": values}))
    as_text = pd.Series([f"{v:.17g}" for v in values], dtype=object)
    assert drift_report(reference, pd.DataFrame({"x": as_text})).feature("x").wasserstein == pytest.approx(
        0.0, abs=1e-12
    )
    empty = drift_report(reference, pd.DataFrame({"x": [np.nan] * 10})).feature("x")
    assert not empty.drifted and empty.reasons == ("no values in the window",) and math.isnan(empty.psi)
    assert empty.missing_rate == 1.0


def test_build_reference_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="bins"):
        build_reference(pd.DataFrame({"x": [1.0]}), bins=0)
    with pytest.raises(InvalidInputError, match="DataFrame"):
        build_reference({"x": [1.0]})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="build_reference"):
        drift_report({"x": 1}, pd.DataFrame({"x": [1.0]}))


# -- prediction drift ------------------------------------------------------------------------------
def test_prediction_drift_on_probabilities_and_on_labels() -> None:
    rng = np.random.default_rng(51)
    proba_ref = build_reference(pd.DataFrame({"__proba_yes": rng.beta(2, 5, 5000)}))
    assert prediction_drift(proba_ref, rng.beta(2, 5, 5000)).drifted is False
    shifted = prediction_drift(proba_ref, pd.Series(rng.beta(4, 4, 5000)))
    assert shifted.drifted and shifted.drifted_features == ("__proba_yes",)
    label_ref = build_reference(pd.DataFrame({"__prediction": rng.choice(np.array(["no", "yes"]), 5000, p=[0.8, 0.2])}))
    assert prediction_drift(label_ref, rng.choice(np.array(["no", "yes"]), 5000, p=[0.8, 0.2])).drifted is False
    assert prediction_drift(label_ref, rng.choice(np.array(["no", "yes"]), 5000, p=[0.5, 0.5])).drifted
    two = build_reference(pd.DataFrame({"a": [0.1, 0.2], "b": [0.9, 0.8]}))
    with pytest.raises(InvalidInputError, match="DataFrame"):
        prediction_drift(two, np.array([0.1, 0.2]))


# -- multivariate drift ----------------------------------------------------------------------------
def test_classifier_auc_is_half_on_one_distribution_and_high_on_a_shifted_one() -> None:
    rng = np.random.default_rng(61)
    reference = mixed_frame(rng, 3000)
    same = classifier_drift_auc(reference, mixed_frame(rng, 3000), max_rows=3000)
    assert same == pytest.approx(0.5, abs=0.04)
    shifted_frame = mixed_frame(rng, 3000)
    shifted_frame["num0"] = shifted_frame["num0"] + 1.0
    shifted_frame["cat7"] = rng.choice(np.array(["basic", "plus", "pro"]), 3000, p=[0.2, 0.3, 0.5])
    assert classifier_drift_auc(reference, shifted_frame, max_rows=3000) > 0.6
    # A joint change that leaves every marginal intact: x and y become correlated.
    x, y = rng.normal(size=(2, 3000))
    z = rng.normal(size=3000)
    independent = pd.DataFrame({"x": x, "y": y})
    correlated = pd.DataFrame({"x": z, "y": z + 0.1 * rng.normal(size=3000)})
    assert drift_report(build_reference(independent), correlated).share_drifted <= 0.5
    assert classifier_drift_auc(independent, correlated) > 0.6


def test_classifier_auc_is_nan_without_rows_or_shared_columns() -> None:
    assert math.isnan(classifier_drift_auc(pd.DataFrame({"x": [1.0, 2.0]}), pd.DataFrame({"x": [1.0, 2.0, 3.0]})))
    assert math.isnan(classifier_drift_auc(pd.DataFrame({"x": np.arange(10.0)}), pd.DataFrame({"y": np.arange(10.0)})))


# -- data quality ----------------------------------------------------------------------------------
def test_quality_rates_are_exact_on_a_constructed_window() -> None:
    reference = build_reference(pd.DataFrame({"x": np.linspace(0.0, 10.0, 101), "c": ["a", "b"] * 50 + ["a"]}))
    window = pd.DataFrame(
        {
            # 10 rows: 2 missing; of the 8 values, 10.000001 is within tolerance, 11, -1 and inf are out
            "x": [1.0, 5.0, np.nan, 11.0, -1.0, np.inf, 10.000001, 0.0, None, 10.0],
            # 1 missing; of the 9 values, "z" twice and "A" (case differs) are unseen
            "c": ["a", "b", None, "z", "z", "A", "a", "b", "a", "b"],
            "__error": [None, None, None, None, None, None, None, "signature: missing column", None, "bad type"],
        }
    )
    report = quality_report(reference, window, error_column="__error")
    assert report.n_rows == 10 and report.flagged_rows == 2
    assert report.schema_violation_rate == pytest.approx(0.2)
    assert report.missing_columns == ()
    x, c = report.features["x"], report.features["c"]
    assert x.missing_rate == pytest.approx(0.2) and x.out_of_range_rate == pytest.approx(3 / 8)
    assert x.unseen_category_rate is None
    assert c.missing_rate == pytest.approx(0.1) and c.unseen_category_rate == pytest.approx(3 / 9)
    assert c.out_of_range_rate is None
    assert json.loads(json.dumps(asdict(report)))["features"]["x"]["missing_rate"] == pytest.approx(0.2)


def test_quality_counts_unparseable_numbers_as_out_of_range_and_missing_columns_as_violations() -> None:
    reference = build_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    window = pd.DataFrame({"x": pd.Series(["1.5", "oops", None, "2"], dtype=object), "ok": [True, False, True, False]})
    report = quality_report(reference, window, expected_columns=["x", "c"], error_column="ok")
    assert report.missing_columns == ("c",)
    assert report.schema_violation_rate == 1.0  # an expected column is absent from every row
    assert report.flagged_rows == 2  # a bool error column flags its True rows
    assert report.features["x"].out_of_range_rate == pytest.approx(1 / 3)
    assert report.features["c"].missing_rate == 1.0
    assert quality_report(reference, window[["x"]], expected_columns=["x"]).schema_violation_rate == 0.0
    with pytest.raises(InvalidInputError, match="error_column"):
        quality_report(reference, window, error_column="nope")


def test_unseen_rate_is_unknowable_when_the_reference_kept_only_top_categories() -> None:
    reference = build_reference(pd.DataFrame({"c": list("aabbcd")}), max_categories=2)
    assert reference["columns"]["c"]["other"] == 2
    assert math.isnan(quality_report(reference, pd.DataFrame({"c": ["c", "z"]})).features["c"].unseen_category_rate)  # type: ignore[arg-type]


# -- performance -----------------------------------------------------------------------------------
def test_binary_classifier_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(71)
    y = rng.choice(np.array(["no", "yes"]), 500, p=[0.7, 0.3])
    p_yes = np.clip(np.where(y == "yes", 0.65, 0.3) + rng.normal(0, 0.2, 500), 0.01, 0.99)
    proba = np.column_stack([1 - p_yes, p_yes])
    pred = np.where(p_yes >= 0.5, "yes", "no")
    got = performance("classification", y, pred, proba=proba, classes=["no", "yes"])
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(metrics.f1_score(y, pred, pos_label="yes"))
    assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(y == "yes", p_yes))
    assert got["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=["no", "yes"]))
    bins = np.minimum((p_yes * 10).astype(int), 9)
    ece = sum(abs((y[bins == b] == "yes").sum() - p_yes[bins == b].sum()) for b in range(10)) / 500
    assert got["ece"] == pytest.approx(ece)
    # 1-d positive-class probabilities are accepted too.
    assert performance("classification", y, pred, proba=p_yes, classes=["no", "yes"]) == got


def test_ece_is_exact_on_a_small_example_and_auc_nan_for_one_class() -> None:
    got = performance("classification", [1, 1, 0, 0], [1, 1, 1, 0], proba=[0.95, 0.95, 0.55, 0.05], classes=[0, 1])
    # bins: 0.95 x2 (hit rate 1) -> |2 - 1.9|; 0.55 (hit 0) -> |0 - 0.55|; 0.05 (hit 0) -> |0 - 0.05|
    assert got["ece"] == pytest.approx((0.1 + 0.55 + 0.05) / 4)
    one_class = performance("classification", [1, 1, 1], [1, 0, 1], proba=[0.9, 0.4, 0.8], classes=[0, 1])
    assert math.isnan(one_class["roc_auc"]) and one_class["accuracy"] == pytest.approx(2 / 3)
    assert set(performance("classification", [0, 1], [0, 1])) == {"accuracy", "f1"}


def test_multiclass_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(72)
    classes = ["a", "b", "c"]
    y = rng.choice(np.array(classes), 600)
    logits = rng.normal(size=(600, 3)) + 1.5 * (y[:, None] == np.array(classes))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = np.array(classes)[proba.argmax(axis=1)]
    got = performance("classification", y, pred, proba=proba, classes=classes)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    )
    assert got["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=classes))
    top = proba.max(axis=1)
    hit = pred == y
    bins = np.minimum((top * 10).astype(int), 9)
    assert got["ece"] == pytest.approx(sum(abs(hit[bins == b].sum() - top[bins == b].sum()) for b in range(10)) / 600)


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(73)
    y = rng.normal(size=300)
    pred = y + rng.normal(0, 0.3, 300)
    got = performance("regression", y, pred)
    assert got == pytest.approx(
        {
            "mae": metrics.mean_absolute_error(y, pred),
            "rmse": metrics.root_mean_squared_error(y, pred),
            "r2": metrics.r2_score(y, pred),
        }
    )
    assert math.isnan(performance("regression", [1.0], [2.0])["r2"])
    with pytest.raises(InvalidInputError, match="kind"):
        performance("ranking", [1], [1])
    with pytest.raises(InvalidInputError, match="1-d"):
        performance("regression", [1.0, 2.0], [1.0])


def test_label_shift_lowers_accuracy_and_auc() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(74)
    X = rng.normal(size=(4000, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.5, 4000) > 0).astype(int)
    model = LogisticRegression().fit(X[:2000], y[:2000])
    X_live, y_live = X[2000:], y[2000:]
    same = performance(
        "classification", y_live, model.predict(X_live), proba=model.predict_proba(X_live), classes=[0, 1]
    )
    # The world changes: the label now also depends on a feature the model gives little weight.
    y_shifted = (X_live[:, 0] + 0.5 * X_live[:, 1] - 1.5 * X_live[:, 2] > 0).astype(int)
    shifted = performance(
        "classification", y_shifted, model.predict(X_live), proba=model.predict_proba(X_live), classes=[0, 1]
    )
    assert shifted["accuracy"] < same["accuracy"] - 0.1
    assert shifted["roc_auc"] < same["roc_auc"] - 0.1
    assert shifted["log_loss"] > same["log_loss"]


# -- representation of the same values (issue 11) ---------------------------------------------
@pytest.mark.parametrize("side", ["window", "reference"])
def test_a_float32_round_trip_of_discrete_values_is_not_drift(side: str) -> None:
    # 0.1, 0.2, 0.3 and 0.7 are not float32 numbers: cast, each lands a hair beside the
    # reference's grid value, and used to change bins (PSI 3.6 on an unchanged distribution).
    rng = np.random.default_rng(0)
    values = np.array([0.1, 0.2, 0.3, 0.7])
    reference_values, window_values = rng.choice(values, 5000), rng.choice(values, 1000)
    exact = drift_report(
        build_reference(pd.DataFrame({"x": reference_values})), pd.DataFrame({"x": window_values})
    ).feature("x")
    if side == "window":
        window_values = window_values.astype(np.float32)
    else:
        reference_values = reference_values.astype(np.float32)
    cast = drift_report(
        build_reference(pd.DataFrame({"x": reference_values})), pd.DataFrame({"x": window_values})
    ).feature("x")
    assert not cast.drifted, cast.reasons
    assert cast.psi == pytest.approx(exact.psi, abs=1e-9)
    assert cast.js_distance == pytest.approx(exact.js_distance, abs=1e-9)
    assert cast.ks_stat == pytest.approx(exact.ks_stat, abs=1e-9)
    assert cast.wasserstein_norm == pytest.approx(exact.wasserstein_norm, rel=1e-5)


def test_snapping_to_the_grid_leaves_continuous_values_alone() -> None:
    # Far from zero a relative float32 tolerance is wide (here 1e6 * 6e-8 = 0.06 of a standard
    # deviation): snapping is also capped by a tiny share of the gap to the neighbouring grid
    # values, so a continuous window moved by less than the tolerance still shows the move.
    rng = np.random.default_rng(1)
    reference_values = rng.normal(1e6, 1.0, 2000)
    reference = build_reference(pd.DataFrame({"x": reference_values}), quantile_points=2001)
    fd = drift_report(reference, pd.DataFrame({"x": reference_values + 0.05})).feature("x")
    assert fd.wasserstein_norm == pytest.approx(0.05 / reference_values.std(ddof=1), rel=1e-3)
    assert fd.ks_stat is not None and fd.ks_stat > 0.01
