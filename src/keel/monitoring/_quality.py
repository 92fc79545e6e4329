"""Data quality of a window against a reference profile: missing, out-of-range and unseen-category
rates per feature, and the share of rows breaking the schema (re-exported by keel.monitoring.stats)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError
from keel.monitoring._drift import label_codes, numeric_array
from keel.monitoring.profiles import ColumnProfile, NumericProfile, ReferenceProfile

__all__ = [
    "FeatureQuality",
    "QualityCounts",
    "QualityReport",
    "quality_counts",
    "quality_from_counts",
    "quality_report",
]

# Values within this fraction of the reference's scale outside [min, max] are still in range:
# a float32 round trip or a decimal rendering must not count as an out-of-range value.
_RANGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class FeatureQuality:
    """Data quality of one feature in a window. Rates of out-of-range values and of unseen
    categories are over the feature's non-missing values; None where they do not apply, NaN where
    the window has no values or the reference cannot tell (its categories were truncated)."""

    feature: str
    kind: str
    n: int
    missing_rate: float
    out_of_range_rate: float | None
    unseen_category_rate: float | None


@dataclass(frozen=True)
class QualityReport:
    """Data quality of a window: per feature rates, and the share of rows breaking the schema."""

    n_rows: int
    flagged_rows: int
    schema_violation_rate: float
    missing_columns: tuple[str, ...]
    features: dict[str, FeatureQuality]


def quality_report(
    reference: ReferenceProfile | Mapping[str, Any],
    window: pd.DataFrame,
    *,
    expected_columns: list[str] | None = None,
    error_column: str | None = None,
) -> QualityReport:
    """Missing, out-of-range and unseen-category rates per reference column, and schema violations.

    Numeric values outside the reference's [min, max] (widened by 1e-6 of its scale), infinite,
    or not numbers at all are out of range. A row violates the schema when `error_column` flags it
    (non-null, or True for a bool column: the request was rejected); when an expected column
    (default: the reference's columns) is absent from the window, every row does.
    """
    profiles = ReferenceProfile.coerce(reference).columns
    rows = len(window)
    expected = list(profiles) if expected_columns is None else list(expected_columns)
    missing_columns = tuple(c for c in expected if c not in window.columns)
    flagged = 0
    if error_column is not None:
        if error_column not in window.columns:
            raise InvalidInputError(
                f"error_column {error_column!r} is not in the window; columns: {', '.join(map(str, window.columns))}"
            )
        errors = window[error_column]
        mask = errors.fillna(False).astype(bool) if pd.api.types.is_bool_dtype(errors.dtype) else errors.notna()
        flagged = int(mask.sum())
    counts = {name: quality_counts(p, window[name]) if name in window.columns else None for name, p in profiles.items()}
    return quality_from_counts(profiles, rows, flagged, missing_columns, counts)


def quality_from_counts(
    profiles: Mapping[str, ColumnProfile],
    rows: int,
    flagged: int,
    missing_columns: tuple[str, ...],
    counts: Mapping[str, QualityCounts | None],
) -> QualityReport:
    """`quality_report` from per-feature `quality_counts` (None: the column is not in the window),
    the window's `rows` and its `flagged` rows (merged from parts or not)."""
    if not rows:
        violation = math.nan
    elif missing_columns:
        violation = 1.0
    else:
        violation = flagged / rows
    features = {name: _feature_quality(name, profile, counts.get(name), rows) for name, profile in profiles.items()}
    return QualityReport(
        n_rows=rows,
        flagged_rows=flagged,
        schema_violation_rate=violation,
        missing_columns=missing_columns,
        features=features,
    )


@dataclass(frozen=True)
class QualityCounts:
    """One feature's quality in a window as counts (they add up across parts of a window):
    non-missing values, and of those the ones out of range (numeric) or of an unseen category
    (categorical; None where the reference kept only its top categories)."""

    present: int
    flagged: int | None


def quality_counts(profile: ColumnProfile, series: pd.Series) -> QualityCounts:
    present = int(series.notna().sum())
    if isinstance(profile, NumericProfile):
        values, invalid = numeric_array(series)
        out = invalid + int(np.count_nonzero(np.isinf(values)))
        if profile.summary is not None:
            lo, hi = float(profile.summary.min), float(profile.summary.max)
            slack = _RANGE_TOLERANCE * max(abs(lo), abs(hi), hi - lo)
            finite = values[np.isfinite(values)]
            out += int(np.count_nonzero((finite < lo - slack) | (finite > hi + slack)))
        return QualityCounts(present, out)
    if profile.other > 0 or not present:
        return QualityCounts(present, None)  # the reference kept only its top categories: unknowable
    codes, labels = label_codes(series)
    known = set(profile.categories)
    is_unseen = np.array([label not in known for label in labels] + [False], dtype=bool)
    return QualityCounts(present, int(np.count_nonzero(is_unseen[codes])))  # code -1 (missing) reads False


def _feature_quality(name: str, profile: ColumnProfile, counts: QualityCounts | None, rows: int) -> FeatureQuality:
    numeric = isinstance(profile, NumericProfile)
    if counts is None:
        return FeatureQuality(
            name,
            profile.kind,
            rows,
            1.0 if rows else math.nan,
            math.nan if numeric else None,
            None if numeric else math.nan,
        )
    present = counts.present
    missing_rate = (rows - present) / rows if rows else math.nan
    rate = counts.flagged / present if present and counts.flagged is not None else math.nan
    if numeric:
        return FeatureQuality(name, "numeric", rows, missing_rate, rate, None)
    return FeatureQuality(name, "categorical", rows, missing_rate, None, rate)
