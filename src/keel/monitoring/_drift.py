"""Column profiles and the distances between a profile and a window: the numeric core of drift.

A numeric profile keeps, from the sorted reference values, everything a window check needs: a grid
of distinct reference values (its quantiles, plus those either side of marks evenly spaced from
min to max) with the exact reference ECDF at and just below each and the exact area under it
between neighbours (Kolmogorov-Smirnov, Wasserstein-1), and bin edges taken from that grid with
their counts (PSI, Jensen-Shannon). A check never touches the reference rows and never sorts the
window: each window value is placed among the grid values (`positions`: a lookup table plus a
comparison or two), and per-interval counts and sums come from `np.bincount`.

The window side is exact; the reference is exact at grid values, so a discrete column (its mass
sits on grid values) and any reference of at most `quantile_points` rows are exact throughout.
Inside an interval between grid values only the reference's area is known: Wasserstein-1 is
exact there unless the two CDFs cross inside it, where the reference CDF is taken as linear, and
the KS supremum can miss at most the interval's reference mass (<= 1 / (quantile_points - 1)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from keel.data.distances import js_distance, psi
from keel.monitoring._noise import ks_pvalue
from keel.monitoring.profiles import CategoricalProfile, NumericProfile, NumericSummary

OTHER = "__other__"

# A window value this close to a reference grid value is that value: relative to the value, 4
# float32 roundings (a float32 round trip, or a 7-digit decimal rendering, of either side)...
_SNAP_RELATIVE = 2.4e-7
# ... and at most this share of the gap to the neighbouring grid values, so that continuous data
# far from zero (where a relative tolerance is wide) is never pulled onto reference values.
_SNAP_GAP_SHARE = 1e-3


# -- reading columns -------------------------------------------------------------------------------
def column_kind(series: pd.Series) -> str | None:
    """'numeric', 'categorical', or None for columns drift does not cover (dates, durations...)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) or dtype == object:
        return "categorical"
    return None


def numeric_array(series: pd.Series) -> tuple[np.ndarray, int]:
    """(values as float64 with NaN for missing, count of non-null values that are not numbers)."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), 0
    # A numeric column logged as text or objects (JSON payloads): parse, and count what fails.
    # NumPy's conversion parses like float() (exactly); pandas' coercing parser, needed once a
    # value is not a number, can be an ulp off under pandas 2.
    try:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        values = np.asarray(pd.to_numeric(series, errors="coerce"), dtype=np.float64)
    invalid = int(series.notna().sum() - np.count_nonzero(~np.isnan(values)))
    return values, invalid


def label_codes(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(codes, labels): codes index labels (the string form of each value), -1 marks missing."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques = list(series.cat.categories)
    else:
        codes, uniq = pd.factorize(series, use_na_sentinel=True)
        uniques = list(uniq)
    labels = [str(u) for u in uniques]
    if len(set(labels)) < len(labels):  # 1 and "1" are one label: merge their codes
        first: dict[str, int] = {}
        remap = np.array([first.setdefault(lab, i) for i, lab in enumerate(labels)], dtype=np.int64)
        codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return np.asarray(codes, dtype=np.int64), labels


def _finite(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]


def _moments(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return math.nan, math.nan
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return mean, std


# -- profiles --------------------------------------------------------------------------------------
def numeric_profile(values: np.ndarray, *, bins: int, quantile_points: int) -> NumericProfile:
    """Profile of one numeric column; `values` may hold NaN and infinities (counted as missing)."""
    rows = values.size
    ref = np.sort(_finite(values))
    n = ref.size
    missing_rate = (rows - n) / rows if rows else 0.0
    if n == 0:
        return NumericProfile(n=n, missing_rate=missing_rate)
    mean, std = _moments(ref)
    # Grid and edges are order statistics (real values of the column, never interpolated between
    # two), so an atom of a discrete column stays an atom and its jump is stored exactly. Besides
    # the quantiles, the grid holds the two values either side of each of `quantile_points` marks
    # evenly spaced from min to max: an interval wider than the marks' spacing then holds no
    # reference value, so the reference CDF is known to be flat across it (a heavy tail's last
    # 0.1% would otherwise be one wide interval of unknown shape). Bin edges are grid values too
    # (those nearest each 1/bins quantile): a check reads bin counts off the grid counts.
    ranks = np.round(np.linspace(0.0, 1.0, quantile_points) * (n - 1)).astype(np.int64)
    span = ref[-1] - ref[0]
    if np.isfinite(span) and span > 0:
        marks = ref[0] + span * np.linspace(0.0, 1.0, quantile_points)
        above = np.minimum(np.searchsorted(ref, marks, side="left"), n - 1)
        below = np.maximum(np.searchsorted(ref, marks, side="right") - 1, 0)
        ranks = np.r_[ranks, above, below]
    grid = np.unique(ref[ranks])
    edges = np.unique(ref[ranks[np.round(np.arange(1, bins) / bins * (quantile_points - 1)).astype(np.int64)]])
    at_or_below = np.searchsorted(ref, edges, side="right")  # bins are (edge[i-1], edge[i]]
    summary = _grid_summary(grid, ref)
    # .tolist(): plain floats and ints, as the profile's JSON holds them.
    return NumericProfile(
        n=n,
        missing_rate=missing_rate,
        summary=NumericSummary(
            mean=mean,
            std=std,
            min=float(ref[0]),
            max=float(ref[-1]),
            edges=tuple(edges.tolist()),
            counts=tuple(np.diff(np.r_[0, at_or_below, n]).tolist()),
            quantiles=tuple(grid.tolist()),
            le=tuple(summary.le.tolist()),  # reference values <= each grid value
            lt=tuple((summary.le - summary.equal).tolist()),  # reference values < each grid value
            # Area under the reference ECDF between neighbouring grid values: exact Wasserstein-1
            # pieces however the reference is spread inside an interval (a heavy tail's last one).
            areas=tuple((np.diff(grid) * summary.le[:-1] / n + summary.gaps[1 : grid.size] / n).tolist()),
        ),
    )


def categorical_profile(series: pd.Series, *, max_categories: int) -> CategoricalProfile:
    """Profile of one categorical column: the most frequent labels and one bucket for the rest."""
    rows = len(series)
    codes, labels = label_codes(series)
    present = codes[codes >= 0]
    counts = np.bincount(present, minlength=len(labels)) if labels else np.zeros(0, dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    top = order[:max_categories]
    n = int(present.size)
    return CategoricalProfile(
        n=n,
        missing_rate=(rows - n) / rows if rows else 0.0,
        categories={labels[i]: int(counts[i]) for i in top},
        other=int(counts[order[max_categories:]].sum()),
        distinct=int(order.size),
    )


# -- window side -----------------------------------------------------------------------------------

_CELLS = 65536  # lookup cells over the grid's range (256 KB of int32: stays in cache)
_MAX_PROBES = 2  # grid values per cell found by comparisons; denser cells use a binary search


def positions(grid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """How many grid values are < each x: np.searchsorted(grid, x, 'left'), 2-3x faster.

    x's cell in a uniform split of the grid's range gives the count of grid values in earlier
    cells; a comparison or two with the grid values in x's own cell finishes it. A value's cell is
    a monotone function of the value, computed the same way for grid and window, so the result is
    exact whatever the rounding. Values in cells holding more grid values than that get a binary
    search, and so does the whole window when most of it falls in such cells (a heavy tail
    stretches the range so that the bulk shares a few cells).
    """
    m = grid.size
    span = grid[-1] - grid[0] if m else 0.0
    if m < 2 or not np.isfinite(span) or span <= 0 or x.size < _CELLS:  # the table costs ~_CELLS steps
        return np.searchsorted(grid, x, side="left")
    scale = _CELLS / span

    def cell(values: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = np.clip((values - grid[0]) * scale, 0, _CELLS - 1)
        return scaled.astype(np.int32)

    per_cell = np.bincount(cell(grid), minlength=_CELLS).astype(np.int32)
    cells = cell(x)
    crowded = per_cell[cells] > _MAX_PROBES
    share_crowded = np.count_nonzero(crowded) / max(x.size, 1)
    if share_crowded > 0.25:
        return np.searchsorted(grid, x, side="left")
    before = np.r_[0, np.cumsum(per_cell)].astype(np.int32)  # grid values in cells < c
    base = before[cells]
    out: np.ndarray = base.astype(np.int64)
    padded = np.r_[grid, np.full(_MAX_PROBES, np.inf)]
    for k in range(_MAX_PROBES):  # grid values of later cells are > x: the count stops by itself
        out += padded[base + k] < x
    if share_crowded:
        out[crowded] = np.searchsorted(grid, x[crowded], side="left")
    return out


class _GridSummary(NamedTuple):
    bucket: np.ndarray  # (n,) k such that grid[k-1] < x <= grid[k]; k = m above the grid
    on_grid: np.ndarray  # (n,) x equals grid[bucket]
    counts: np.ndarray  # (m + 1,) values per bucket
    le: np.ndarray  # (m,) values <= grid[k]
    equal: np.ndarray  # (m,) values == grid[k]
    gaps: np.ndarray  # (m + 1,) sum of grid[k] - x over bucket k (0 for the bucket above the grid)


def _grid_summary(grid: np.ndarray, x: np.ndarray, bucket: np.ndarray | None = None) -> _GridSummary:
    m = grid.size
    if bucket is None:
        bucket = positions(grid, x)
    upper = np.r_[grid, np.inf][bucket]  # the grid value closing each x's bucket
    on_grid = x == upper
    counts = np.bincount(bucket, minlength=m + 1)
    equal = np.bincount(bucket[on_grid], minlength=m + 1)[:m]
    gaps = np.bincount(bucket, weights=np.where(bucket < m, upper - x, 0.0), minlength=m + 1)
    return _GridSummary(bucket, on_grid, counts, np.cumsum(counts)[:m], equal, gaps)


def snap_to_grid(grid: np.ndarray, x: np.ndarray, empty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x with values a rounding away from a grid value set to it, their positions in the grid).

    The same number stored as float32 on one side and float64 on the other (0.1 is not a float32
    number) would otherwise fall just beside the reference's grid value, in the next bin: a
    discrete column then shows drift that is only its representation. The tolerance is relative
    to the value (what a rounding moves) and capped by a small share of the gap to neighbouring
    grid values; and only values between grid values with no reference value between them
    (`empty`, per bucket: below the grid, between grid[k-1] and grid[k], above it) move, so a
    window equal to the reference is never changed.
    """
    bucket = positions(grid, x)
    m = grid.size
    if m == 0 or x.size == 0:
        return x, bucket
    gaps = np.diff(grid)
    nearest_gap = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
    tolerance = np.minimum(_SNAP_RELATIVE * np.abs(grid), _SNAP_GAP_SHARE * nearest_gap)
    above = np.minimum(bucket, m - 1)  # grid[above] >= x unless x is above the grid
    below = np.maximum(bucket - 1, 0)
    closer_below = np.abs(x - grid[below]) < np.abs(grid[above] - x)
    target = np.where(closer_below, below, above)
    snap = (np.abs(x - grid[target]) <= tolerance[target]) & (x != grid[target]) & empty[bucket]
    if not snap.any():
        return x, bucket
    x = np.where(snap, grid[target], x)
    return x, np.where(snap, target, bucket)  # a value equal to grid[k] has k grid values below it


@dataclass(frozen=True)
class NumericWindow:
    """What the statistics need of a window's numeric column, summed over its values: mergeable
    across parts of a window (keel.monitoring.windowsummary). Counts are per grid bucket k
    (grid[k-1] < x <= grid[k]; k = m above the grid) after snapping; `inside(buckets)` gives
    the window values strictly inside those buckets, sorted (Wasserstein where the CDFs cross)."""

    n: int  # finite values
    mean: float
    std: float
    counts: np.ndarray  # (m + 1,)
    equal: np.ndarray  # (m,) values on grid[k]
    gaps: np.ndarray  # (m + 1,) sum of grid[k] - x
    above_sum: float  # sum of the values above the grid, and their count
    above_n: int
    bins: np.ndarray | None  # per bin counts, only for a profile whose edges are not grid values
    inside: Callable[[np.ndarray], np.ndarray]


def numeric_window(profile: NumericProfile, values: np.ndarray) -> NumericWindow:
    """The mergeable summary of `values` against `profile` (moments only without a grid)."""
    x = _finite(values)
    n = x.size
    mean, std = _moments(x)
    ref = profile.summary
    if ref is None or int(profile.n) == 0:
        none = np.zeros(0, dtype=np.int64)
        return NumericWindow(n, mean, std, none, none, np.zeros(0), 0.0, 0, None, lambda _: np.zeros(0))
    grid = np.asarray(ref.quantiles, dtype=np.float64)
    m = grid.size
    # Buckets holding no reference value: below and above the grid, and between neighbours whose
    # CDFs meet (always, for a discrete column).
    empty = np.r_[True, np.asarray(ref.le[:-1]) == np.asarray(ref.lt[1:]), True]
    x, bucket = snap_to_grid(grid, x, empty)
    g = _grid_summary(grid, x, bucket)
    above = x[g.bucket == m]
    edges = np.asarray(ref.edges, dtype=np.float64)
    bins = None
    if not _edges_on_grid(grid, edges):  # a profile whose edges are not grid values
        bins = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    bucket_of, on_grid = g.bucket, g.on_grid

    def inside(buckets: np.ndarray) -> np.ndarray:
        selected = np.zeros(m + 1, dtype=bool)
        selected[buckets] = True
        return np.sort(x[selected[bucket_of] & ~on_grid])

    return NumericWindow(n, mean, std, g.counts, g.equal, g.gaps, float(above.sum()), int(above.size), bins, inside)


def _edges_on_grid(grid: np.ndarray, edges: np.ndarray) -> bool:
    at_edges = np.searchsorted(grid, edges)
    return bool(edges.size) and bool(np.array_equal(grid[np.minimum(at_edges, grid.size - 1)], edges))


def numeric_distances(profile: NumericProfile, values: np.ndarray) -> dict[str, Any]:
    """Window statistics of one numeric column against its profile (NaN/inf values ignored)."""
    return numeric_stats(profile, numeric_window(profile, values))


def numeric_stats(profile: NumericProfile, w: NumericWindow) -> dict[str, Any]:
    """`numeric_distances` from a window's summary: the same numbers, whether the summary was
    taken of the window at once or merged from its parts."""
    n, n_ref = w.n, int(profile.n)
    out: dict[str, Any] = {"n": n, "current_mean": w.mean, "current_std": w.std}
    ref = profile.summary
    if n == 0 or n_ref == 0 or ref is None:
        return out
    grid = np.asarray(ref.quantiles, dtype=np.float64)  # (m,) distinct, ascending
    m = grid.size
    ref_le = np.asarray(ref.le, dtype=np.float64) / n_ref  # reference CDF at grid
    ref_lt = np.asarray(ref.lt, dtype=np.float64) / n_ref  # ... just below grid
    le_counts = np.cumsum(w.counts)[:m]
    cur_le, cur_lt = le_counts / n, (le_counts - w.equal) / n
    ks = float(max(np.abs(ref_le - cur_le).max(), np.abs(ref_lt - cur_lt).max()))

    # Wasserstein-1 = integral of |F_ref - F_cur| dx, interval by interval. Below the grid F_ref
    # is 0 and the area is the sum of (grid[0] - x) / n; inside interval j the area under F_cur is
    # cur_le[j] * width + sum of (grid[j+1] - x) / n, that under F_ref is stored, and where
    # F_ref - F_cur keeps its sign at both ends the area of |difference| is the difference of
    # areas. Intervals where it changes sign are integrated piece by piece between their window
    # values; above the grid F_ref is 1 and the area is the sum of (x - grid[-1]) / n.
    gaps = w.gaps
    inside = w.counts[1:m] - w.equal[1:]  # window values strictly inside
    widths = np.diff(grid)
    cur_area = widths * cur_le[:-1] + gaps[1:m] / n
    ref_area = np.asarray(ref.areas, dtype=np.float64)
    area = np.abs(ref_area - cur_area)
    crossing = np.flatnonzero((ref_le[:-1] - cur_le[:-1]) * (ref_lt[1:] - cur_lt[1:]) < 0)
    if crossing.size:
        chosen = w.inside(crossing + 1)  # the crossing intervals' values, in order
        area[crossing] = _stepwise_area(chosen, grid, ref_le, ref_lt, cur_le, inside, crossing, n)
    tails = (gaps[0] + w.above_sum - w.above_n * grid[-1]) / n
    wasserstein = float(area.sum()) + tails
    ref_std = float(ref.std)
    if ref_std > 0:
        norm = wasserstein / ref_std
    else:  # a constant reference: any movement at all is infinitely many standard deviations
        norm = 0.0 if wasserstein == 0 else math.inf

    edges = np.asarray(ref.edges, dtype=np.float64)
    cur_bins = w.bins if w.bins is not None else np.diff(np.r_[0, le_counts[np.searchsorted(grid, edges)], n])
    ref_bins = np.asarray(ref.counts, dtype=np.float64)
    out.update(
        psi=psi(ref_bins, cur_bins.astype(np.float64)),
        js_distance=js_distance(ref_bins, cur_bins.astype(np.float64)),
        ks_stat=ks,
        ks_pvalue=ks_pvalue(ks, n_ref, n),
        wasserstein=wasserstein,
        wasserstein_norm=norm,
        wasserstein_null=_wasserstein_null(grid, ref_le, ref_lt, ref_std),
        ref_counts=tuple(ref_bins.tolist()),
        shares=_shares(_bin_labels(edges), ref_bins, cur_bins.astype(np.float64)),
    )
    return out


def _wasserstein_null(
    grid: np.ndarray, ref_le: np.ndarray, ref_lt: np.ndarray, ref_std: float
) -> tuple[np.ndarray, np.ndarray]:
    """(F between neighbouring grid values, their gaps in reference standard deviations): what
    `wasserstein_quantile` needs of the reference (exact F where the reference is discrete)."""
    if grid.size < 2 or ref_std <= 0:
        return np.zeros(0), np.zeros(0)
    return 0.5 * (ref_le[:-1] + ref_lt[1:]), np.diff(grid) / ref_std


def _linear_abs_integral(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integral over [0, 1] of |a + (b - a) t|: the mean absolute value of a linear function."""
    same_sign = a * b >= 0
    total = np.abs(a) + np.abs(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(total > 0, (a * a + b * b) / (2.0 * total), 0.0)
    return np.where(same_sign, 0.5 * total, crossing)


def _stepwise_area(
    chosen: np.ndarray,
    grid: np.ndarray,
    ref_le: np.ndarray,
    ref_lt: np.ndarray,
    cur_le: np.ndarray,
    inside: np.ndarray,
    intervals: np.ndarray,
    n: int,
) -> np.ndarray:
    """Integral of |F_ref - F_cur| over each of `intervals`, split at every window value inside.

    `chosen` holds those intervals' window values, sorted. Interval j (grid[j] to grid[j + 1])
    with k values inside has k + 1 pieces; on piece s F_cur = cur_le[j] + s / n and F_ref is
    linear, so each piece has a closed form.
    """
    lo, hi = grid[intervals], grid[intervals + 1]
    slope = (ref_lt[intervals + 1] - ref_le[intervals]) / (hi - lo)
    k = inside[intervals]
    first = np.cumsum(k) - k  # where each interval's values start in `chosen`
    pieces = k + 1
    owner = np.repeat(np.arange(intervals.size), pieces)  # (pieces,) the interval of each piece
    s = np.arange(owner.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)  # piece number within it
    last = max(chosen.size - 1, 0)
    padded = chosen if chosen.size else np.zeros(1)
    left = np.where(s == 0, lo[owner], padded[np.clip(first[owner] + s - 1, 0, last)])
    right = np.where(s == k[owner], hi[owner], padded[np.clip(first[owner] + s, 0, last)])
    base = ref_le[intervals][owner] - (cur_le[intervals][owner] + s / n)
    diff_left = base + slope[owner] * (left - lo[owner])
    diff_right = base + slope[owner] * (right - lo[owner])
    per_piece = (right - left) * _linear_abs_integral(diff_left, diff_right)
    return np.bincount(owner, weights=per_piece, minlength=intervals.size)


def categorical_counts(profile: CategoricalProfile, series: pd.Series) -> np.ndarray:
    """Window counts per profile category, then one for every other label (missing not counted)."""
    codes, labels = label_codes(series)
    index = {label: i for i, label in enumerate(profile.categories)}
    other = len(index)
    lookup = np.array([index.get(label, other) for label in labels] + [other + 1], dtype=np.int64)
    binned = np.bincount(lookup[codes], minlength=other + 2)  # code -1 (missing) reads the last slot
    return binned[: other + 1]


def categorical_distances(profile: CategoricalProfile, series: pd.Series) -> dict[str, Any]:
    """Window statistics of one categorical column: labels the profile lacks go to '__other__'."""
    return categorical_stats(profile, categorical_counts(profile, series))


def categorical_stats(profile: CategoricalProfile, counts: np.ndarray) -> dict[str, Any]:
    """`categorical_distances` from the window's `categorical_counts` (merged from parts or not)."""
    cur_counts = counts.astype(np.float64)
    ref_counts = np.array([*profile.categories.values(), profile.other], dtype=np.float64)
    n = int(cur_counts.sum())
    out: dict[str, Any] = {"n": n}
    if n == 0 or profile.n == 0:
        return out
    out.update(
        psi=psi(ref_counts, cur_counts),
        js_distance=js_distance(ref_counts, cur_counts),
        shares=_shares([*profile.categories, OTHER], ref_counts, cur_counts),
        ref_counts=tuple(ref_counts.tolist()),
    )
    return out


def _bin_labels(edges: np.ndarray) -> list[str]:
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    return [f"({bounds[i]}, {bounds[i + 1]}]" for i in range(len(bounds) - 1)]


def _shares(labels: list[str], ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[tuple[str, float, float], ...]:
    ref = ref_counts / max(float(ref_counts.sum()), 1.0)
    cur = cur_counts / max(float(cur_counts.sum()), 1.0)
    return tuple((label, float(r), float(c)) for label, r, c in zip(labels, ref, cur, strict=True) if r > 0 or c > 0)
