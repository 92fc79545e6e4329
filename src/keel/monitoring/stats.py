"""The statistics of monitoring: values in, values out, no storage.

    build_profile(frame)                    -> ReferenceProfile  once per reference dataset
    build_reference(frame)                  -> dict        the same as JSON (ReferenceProfile.to_dict)
    drift_report(reference, window)         -> DriftReport per feature PSI, JS, KS, Wasserstein
    prediction_drift(reference, outputs)    -> DriftReport the same for a model's outputs
    classifier_drift_auc(sample, window)    -> float       multivariate drift (0.5 = none)
    quality_report(reference, window)       -> QualityReport  missing, out of range, unseen, schema
    performance(kind, y_true, y_pred)       -> dict        accuracy, AUC, F1, log loss, ECE / MAE...

Drift decisions use effect sizes (`DriftThresholds`), never p-values: with a million rows a
p-value flags differences nobody cares about. The KS p-value is reported beside the statistics as
evidence only. Small windows get one safeguard: a threshold below what sampling noise alone reaches
at the window's size is raised to that level, set so that a check of unchanged data flags no
feature at all with probability DriftThresholds.noise_quantile (see there). A window is
binned against the stored profile; the reference rows are never read again (keel.monitoring._drift
has the numerics, keel.monitoring._noise the noise levels, keel.monitoring._quality the data quality).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError
from keel.monitoring._drift import (
    categorical_distances,
    categorical_profile,
    column_kind,
    numeric_array,
    numeric_distances,
    numeric_profile,
)
from keel.monitoring._noise import histogram_noise, wasserstein_quantile
from keel.monitoring._performance import classifier_drift_auc, performance
from keel.monitoring._quality import FeatureQuality, QualityReport, quality_report
from keel.monitoring.profiles import ColumnProfile, NumericProfile, ReferenceProfile

logger = logging.getLogger(__name__)

__all__ = [
    "DriftThresholds",
    "FeatureDrift",
    "DriftReport",
    "FeatureQuality",
    "QualityReport",
    "build_profile",
    "build_reference",
    "drift_report",
    "drift_report_from",
    "prediction_drift",
    "classifier_drift_auc",
    "quality_report",
    "performance",
]


@dataclass(frozen=True)
class DriftThresholds:
    """Effect sizes at or above which a feature counts as drifted.

    Numeric features drift when `psi` or `wasserstein_norm` (Wasserstein-1 distance over the
    reference standard deviation) reaches its threshold; categorical ones when `psi` or
    `js_distance` (Jensen-Shannon, base 2) does; `ks_stat`, when set, adds a numeric rule.

    Small windows are noisy: with 1,000 rows on each side and no drift at all, the Wasserstein
    distance passes 0.1 standard deviation for 3-5% of features, and at 100 rows PSI passes 0.2
    for most features with rare bins. So each threshold is raised, where needed, to a noise floor:
    the level sampling noise alone reaches with probability at most (1 - noise_quantile) / R,
    where R counts the rules of the whole report (Bonferroni), so that a check of unchanged data
    flags no feature at all with probability at least `noise_quantile`, whatever the window's size
    and the number of features. The floors come from the two sizes and the reference's bins: the
    exact distribution of PSI and Jensen-Shannon over binomial window counts (scaled by 1 +
    n_window / n_reference for the reference's own noise; never below the chi-square limit), the
    Brownian-bridge limit for Wasserstein, Kolmogorov for KS. From a few thousand rows on the
    thresholds above apply as they are; None turns the guard off.

    The report as a whole drifts when at least `share` of its features do (Evidently's default).
    """

    psi: float = 0.2
    wasserstein_norm: float = 0.1
    js_distance: float = 0.1
    ks_stat: float | None = None
    noise_quantile: float | None = 0.99
    share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("psi", "wasserstein_norm", "js_distance", "ks_stat", "share"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value >= 0):
                raise InvalidInputError(f"DriftThresholds.{name} must be a number >= 0, got {value!r}")
        if self.noise_quantile is not None and not 0.5 <= self.noise_quantile < 1:
            raise InvalidInputError(
                f"DriftThresholds.noise_quantile must be in [0.5, 1) or None, got {self.noise_quantile!r}"
            )


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: the statistics, the decision, and why (`reasons`).

    Statistics that do not apply to the feature's kind are None (KS and Wasserstein for
    categorical features); those that cannot be computed (no values in the window) are NaN.
    `limits` gives the threshold each rule used (raised above DriftThresholds' value where the
    window is too small to tell that much from noise); `shares` lists (bin or category,
    reference share, window share) for charts and evidence.
    """

    feature: str
    kind: str
    n: int
    n_reference: int
    missing_rate: float
    reference_missing_rate: float
    psi: float
    js_distance: float
    ks_stat: float | None
    ks_pvalue: float | None
    wasserstein: float | None
    wasserstein_norm: float | None
    drifted: bool
    reasons: tuple[str, ...]
    reference_mean: float | None = None
    current_mean: float | None = None
    reference_std: float | None = None
    current_std: float | None = None
    limits: tuple[tuple[str, float], ...] = ()
    shares: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift of a window against a reference profile; `drifted` uses `thresholds.share`."""

    n_rows: int
    features: tuple[FeatureDrift, ...]
    drifted_features: tuple[str, ...]
    share_drifted: float
    drifted: bool
    thresholds: DriftThresholds
    skipped: tuple[str, ...] = ()

    def feature(self, name: str) -> FeatureDrift:
        for fd in self.features:
            if fd.feature == name:
                return fd
        known = ", ".join(fd.feature for fd in self.features)
        raise KeyError(f"No feature {name!r} in this drift report. Known: {known}")


# -- reference -----------------------------------------------------------------------------------
def build_reference(
    frame: pd.DataFrame, *, bins: int = 10, quantile_points: int = 1001, max_categories: int = 50
) -> dict[str, Any]:
    """`build_profile(frame)` as the JSON-able dict the store keeps (`ReferenceProfile.to_dict`).

    >>> ref = build_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    >>> ref["columns"]["x"]["kind"], ref["columns"]["c"]["categories"]
    ('numeric', {'a': 2, 'b': 1})
    """
    return build_profile(frame, bins=bins, quantile_points=quantile_points, max_categories=max_categories).to_dict()


def build_profile(
    frame: pd.DataFrame, *, bins: int = 10, quantile_points: int = 1001, max_categories: int = 50
) -> ReferenceProfile:
    """Profile `frame` once for later drift and quality checks.

    Numeric columns keep quantile bin edges and counts, a grid of `quantile_points` quantiles (plus
    as many values evenly spaced from min to max) with the exact reference CDF there, and mean,
    std, min, max; categorical ones (text, category, bool)
    the `max_categories` most frequent labels plus an '__other__' count. Other columns (dates,
    durations) are listed under 'skipped' with the reason.

    >>> ref = build_profile(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    >>> ref.columns["x"].kind, dict(ref.columns["c"].categories)
    ('numeric', {'a': 2, 'b': 1})
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"build_reference needs a pandas DataFrame, got {type(frame).__name__}")
    if bins < 1 or quantile_points < 2 or max_categories < 1:
        raise InvalidInputError(
            f"build_reference needs bins >= 1, quantile_points >= 2 and max_categories >= 1; "
            f"got bins={bins}, quantile_points={quantile_points}, max_categories={max_categories}"
        )
    columns: dict[str, ColumnProfile] = {}
    skipped: dict[str, str] = {}
    for name in frame.columns:
        series = frame[name]
        kind = column_kind(series)
        profile: ColumnProfile
        if kind == "numeric":
            values, _ = numeric_array(series)
            profile = numeric_profile(values, bins=bins, quantile_points=quantile_points)
        elif kind == "categorical":
            profile = categorical_profile(series, max_categories=max_categories)
        else:
            skipped[str(name)] = f"{series.dtype} columns are not profiled for drift"
            continue
        columns[str(name)] = replace(profile, dtype=str(series.dtype))
    return ReferenceProfile(
        columns=columns,
        skipped=skipped,
        n_rows=len(frame),
        bins=bins,
        quantile_points=quantile_points,
        max_categories=max_categories,
    )


# A profile as `build_reference` returns it (its JSON) is read as well as the typed one.
Reference = ReferenceProfile | Mapping[str, Any]


def _columns(reference: Reference) -> Mapping[str, ColumnProfile]:
    return ReferenceProfile.coerce(reference).columns


# -- drift ---------------------------------------------------------------------------------------
def drift_report(
    reference: Reference, window: pd.DataFrame, *, thresholds: DriftThresholds = DriftThresholds()
) -> DriftReport:
    """Drift of each reference column present in `window`, decided on effect sizes.

    Only the window is read and binned; reference columns missing from it are listed in `skipped`.

    >>> ref = build_reference(pd.DataFrame({"x": np.arange(1000.0)}))
    >>> drift_report(ref, pd.DataFrame({"x": np.arange(1000.0) + 500})).drifted_features
    ('x',)
    """
    profiles = _columns(reference)
    stats: dict[str, dict[str, Any]] = {}
    for name, profile in profiles.items():
        if name not in window.columns:
            continue
        series = window[name]
        if isinstance(profile, NumericProfile):
            values, _ = numeric_array(series)
            stats[name] = numeric_distances(profile, values)
        else:
            stats[name] = categorical_distances(profile, series)
    return drift_report_from(reference, stats, len(window), thresholds=thresholds)


def drift_report_from(
    reference: Reference,
    stats: Mapping[str, dict[str, Any]],
    rows: int,
    *,
    thresholds: DriftThresholds = DriftThresholds(),
) -> DriftReport:
    """`drift_report` from each window column's statistics (`numeric_stats`, `categorical_stats`
    of keel.monitoring._drift; a column without an entry is not in the window) and the window's
    row count: what a check computes from summaries merged across the prediction log's segments."""
    profiles = _columns(reference)
    features: list[FeatureDrift] = []
    skipped = [f"{name}: not in the window" for name in profiles if name not in stats]
    rules = sum(
        len(_rules(isinstance(profile, NumericProfile), thresholds))
        for name, profile in profiles.items()
        if name in stats
    )
    # Bonferroni: each rule may fire on noise alone with this probability, the report with 1 - q.
    alpha = None if thresholds.noise_quantile is None else (1.0 - thresholds.noise_quantile) / max(rules, 1)
    for name, profile in profiles.items():
        if name in stats:
            features.append(_feature_drift(name, profile, stats[name], rows, thresholds, alpha))
    drifted = tuple(fd.feature for fd in features if fd.drifted)
    share = len(drifted) / len(features) if features else 0.0
    return DriftReport(
        n_rows=rows,
        features=tuple(features),
        drifted_features=drifted,
        share_drifted=share,
        drifted=bool(features) and share >= thresholds.share,
        thresholds=thresholds,
        skipped=tuple(skipped),
    )


def _rules(numeric: bool, thresholds: DriftThresholds) -> list[tuple[str, float]]:
    """(statistic, threshold) of each rule deciding a feature's drift."""
    rules = [("psi", thresholds.psi)]
    rules += (
        [("wasserstein_norm", thresholds.wasserstein_norm)] if numeric else [("js_distance", thresholds.js_distance)]
    )
    if numeric and thresholds.ks_stat is not None:
        rules.append(("ks_stat", thresholds.ks_stat))
    return rules


def _feature_drift(
    name: str,
    profile: ColumnProfile,
    stats: dict[str, Any],
    rows: int,
    thresholds: DriftThresholds,
    alpha: float | None,
) -> FeatureDrift:
    numeric = isinstance(profile, NumericProfile)
    summary = profile.summary if isinstance(profile, NumericProfile) else None
    n = int(stats["n"])
    nan = math.nan
    values = {
        key: float(stats.get(key, nan))
        for key in ("psi", "js_distance", "ks_stat", "ks_pvalue", "wasserstein", "wasserstein_norm")
    }
    reasons: list[str] = []
    limits: list[tuple[str, float]] = []
    if n == 0:
        reasons.append("no values in the window")
    elif profile.n == 0:
        reasons.append("no values in the reference")
    else:
        floors = _noise_floors(int(profile.n), n, stats["ref_counts"], stats.get("wasserstein_null"), alpha, thresholds)
        for key, threshold in _rules(numeric, thresholds):
            limit = max(threshold, floors[key])
            limits.append((key, limit))
            if values[key] >= limit:
                noise = " (noise floor)" if limit > threshold else ""
                reasons.append(f"{key} {values[key]:.4g} >= {limit:.4g}{noise}")
    drifted = n > 0 and profile.n > 0 and len(reasons) > 0
    return FeatureDrift(
        feature=name,
        kind=profile.kind,
        n=n,
        n_reference=int(profile.n),
        missing_rate=(rows - n) / rows if rows else nan,
        reference_missing_rate=float(profile.missing_rate),
        psi=values["psi"],
        js_distance=values["js_distance"],
        ks_stat=values["ks_stat"] if numeric else None,
        ks_pvalue=values["ks_pvalue"] if numeric else None,
        wasserstein=values["wasserstein"] if numeric else None,
        wasserstein_norm=values["wasserstein_norm"] if numeric else None,
        drifted=drifted,
        reasons=tuple(reasons),
        reference_mean=float(summary.mean if summary else nan) if numeric else None,
        current_mean=float(stats.get("current_mean", nan)) if numeric else None,
        reference_std=float(summary.std if summary else nan) if numeric else None,
        current_std=float(stats.get("current_std", nan)) if numeric else None,
        limits=tuple(limits),
        shares=stats.get("shares", ()),
    )


def _noise_floors(
    n_ref: int,
    n_cur: int,
    ref_counts: tuple[float, ...],
    wasserstein_null: tuple[np.ndarray, np.ndarray] | None,
    alpha: float | None,
    thresholds: DriftThresholds,
) -> dict[str, float]:
    """The level each statistic passes with probability at most `alpha` when both samples come
    from one distribution.

    PSI ~ chi2(k - 1) * (1/n_ref + 1/n_cur) and squared JS distance (bits) ~ the same / (8 ln 2)
    in the limit; where that limit could matter (a floor within 10x of the threshold) the window
    side's exact distribution (`histogram_noise`) replaces it when higher, which it is for small
    windows and rare bins. Wasserstein-1 / std ~ the Brownian-bridge limit's quantile
    (`wasserstein_quantile`) * sqrt(1/n_ref + 1/n_cur); KS ~ Kolmogorov / sqrt(n_eff) (the DKW
    bound).
    """
    if alpha is None:
        return {"psi": 0.0, "js_distance": 0.0, "wasserstein_norm": 0.0, "ks_stat": 0.0}
    size = 1.0 / n_ref + 1.0 / n_cur
    buckets = sum(1 for c in ref_counts if c > 0)
    dof = max(buckets - 1, 1)
    z = NormalDist().inv_cdf(1.0 - alpha)
    # Wilson-Hilferty: the chi-square quantile from the normal one (within ~1% from 1 dof up).
    chi2 = dof * max(1.0 - 2.0 / (9.0 * dof) + z * math.sqrt(2.0 / (9.0 * dof)), 0.0) ** 3
    psi_floor, js_squared = chi2 * size, chi2 * size / (8.0 * math.log(2.0))
    if psi_floor > thresholds.psi / 10 or math.sqrt(js_squared) > thresholds.js_distance / 10:
        # The exact window-side quantile, grown by the reference's share of the noise (the ratio
        # the chi-square limit has between one-sample and two-sample noise).
        exact_psi, exact_js = histogram_noise(tuple(float(c) for c in ref_counts), n_cur, alpha)
        psi_floor = max(psi_floor, exact_psi * n_cur * size)
        js_squared = max(js_squared, exact_js * n_cur * size)
    return {
        "psi": psi_floor,
        "js_distance": math.sqrt(js_squared),
        "wasserstein_norm": wasserstein_quantile(wasserstein_null, alpha) * math.sqrt(size)
        if wasserstein_null is not None
        else 0.0,
        "ks_stat": math.sqrt(math.log(2.0 / alpha) / 2.0 * size),
    }


def prediction_drift(
    reference_outputs: Reference, window_outputs: Any, *, thresholds: DriftThresholds = DriftThresholds()
) -> DriftReport:
    """Drift of a model's outputs: probabilities are numeric features, class labels categorical.

    `reference_outputs` is `build_reference` of the reference outputs; `window_outputs` a frame
    with the same column names, or a Series or 1-d array when the profile has one column.

    >>> ref = build_reference(pd.DataFrame({"proba": np.linspace(0, 1, 101)}))
    >>> prediction_drift(ref, np.linspace(0, 1, 101)).drifted
    False
    """
    names = list(_columns(reference_outputs))
    if isinstance(window_outputs, pd.DataFrame):
        frame = window_outputs
    else:
        if len(names) != 1:
            raise InvalidInputError(
                f"The output profile has {len(names)} columns ({', '.join(names)}); pass the window's outputs as a DataFrame with those columns"
            )
        values = window_outputs.to_numpy() if isinstance(window_outputs, pd.Series) else np.asarray(window_outputs)
        if values.ndim != 1:
            raise InvalidInputError(f"window_outputs must be 1-d for a one-column profile, got shape {values.shape}")
        frame = pd.DataFrame({names[0]: values})
    return drift_report(reference_outputs, frame, thresholds=thresholds)
