"""Summaries of parts of a prediction-log window, mergeable into the whole window's statistics.

    SummaryPlan.of(features, profile, outputs, key)  what a summary is taken against
    summarize(frame, plan)                -> WindowSummary   one segment (at log time) or a few rows
    merge(summaries, plan)                -> WindowSummary   the window (exact: counts add up)
    side_stats(profile, summary.features) -> {column: stats} what drift_report_from takes
    encode(summary) / decode(data, plan)                     the bytes stored beside a segment
    clean_for(table, plan)                -> bool            whether a segment may be summarized alone

A summary holds, per feature, what keel.monitoring.stats needs of the window and nothing that
depends on the rest of the window: counts per bucket of the reference profile's quantile grid
(after the same snapping as a check), values on each grid value, the sums of distances to the
bucket's grid value (Wasserstein), moments, the bins' counts; category counts; data-quality counts
(non-missing, out of range, unseen); and the same for the model's outputs against their profile.
So a check merges the summaries of its window's segments instead of reading their rows, and gets
the statistics `compute_check` gets from the rows: counts are exact, float sums differ by
rounding only (<= 1e-12 relative).

One part of the Wasserstein distance is not a sum: in the grid intervals where the reference and
window CDFs cross, the area is integrated between the window's own values. Which intervals cross
is known only for the whole window, so a numeric summary also keeps its values strictly inside
grid intervals, sorted (8 bytes a value; on-grid values, all of a discrete column's, cost
nothing), and a check loads them only for the columns and intervals that cross.

A summary is valid for one plan (`key`: the reference profile, the output profile, the
features); a check ignores a summary of another key and reads that segment's rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.monitoring._drift import (
    NumericWindow,
    categorical_counts,
    categorical_stats,
    numeric_array,
    numeric_stats,
    numeric_window,
)
from keel.monitoring._quality import QualityCounts, quality_counts
from keel.monitoring.columns import ERROR, PREDICTION, PROBA_PREFIX
from keel.monitoring.predentries import _json_columns
from keel.monitoring.profiles import CategoricalProfile, NumericProfile, ReferenceProfile

__all__ = ["SummaryPlan", "WindowSummary", "clean_for", "decode", "encode", "merge", "side_stats", "summarize"]

SUMMARY_FORMAT = 1


@dataclass(frozen=True)
class SummaryPlan:
    """The profiles a summary is taken against: `profile` for the `features`, `outputs` for the
    model's outputs (None when not known yet), and `key`, which names the plan in the store."""

    features: tuple[str, ...]
    profile: ReferenceProfile
    outputs: ReferenceProfile | None
    key: str

    @classmethod
    def of(
        cls, features: Iterable[str], profile: ReferenceProfile, outputs: ReferenceProfile | None, *parts: Any
    ) -> SummaryPlan:
        """A plan whose key hashes the features, whether outputs are known, and `parts` (what
        identifies the stored profiles: a profile never changes once stored for a dataset version)."""
        feats = tuple(features)
        ident = [SUMMARY_FORMAT, feats, outputs is not None, [str(p) for p in parts]]
        key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
        return cls(feats, profile.restricted(list(feats)), outputs, key)


@dataclass(frozen=True)
class Side:
    """Drift counts of one group of columns (the features, or the outputs) over served rows."""

    numeric: Mapping[str, NumericWindow] = field(default_factory=dict)
    categorical: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def columns(self) -> set[str]:
        return set(self.numeric) | set(self.categorical)


@dataclass(frozen=True)
class WindowSummary:
    """A part of a window (or the whole, merged): logged `rows`, `flagged` ones (refused
    requests), `served` ones, the columns seen, quality counts per feature over every row, and
    drift counts of the features and the outputs over served rows."""

    key: str
    rows: int
    flagged: int
    columns: frozenset[str]
    quality: Mapping[str, QualityCounts]
    features: Side
    outputs: Side

    @property
    def served(self) -> int:
        return self.rows - self.flagged


# -- taking a summary ------------------------------------------------------------------------------
def clean_for(table: pa.Table, plan: SummaryPlan) -> bool:
    """Whether a segment's column types read the same alone as in any window (numbers for
    numeric profiles, text or bool for categorical ones, no JSON-marked columns): only such a
    segment is summarized on its own; the others are read with their window."""
    marked = _json_columns(table)
    kinds = {**plan.profile.columns, **(plan.outputs.columns if plan.outputs else {})}
    for name, profile in kinds.items():
        if name not in table.column_names:
            continue
        if name in marked:
            return False
        t = table.schema.field(name).type
        if pa.types.is_null(t):
            continue
        if isinstance(profile, NumericProfile):
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                return False
        elif not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t)):
            return False
    return True


def summarize(frame: pd.DataFrame, plan: SummaryPlan) -> WindowSummary:
    """The summary of `frame`'s rows (a segment, or rows of a window read as `compute_check` reads
    them): quality over every row, drift over served ones (no `__error`)."""
    features = [f for f in plan.features if f in frame.columns]
    errors = frame[ERROR].notna() if ERROR in frame.columns else pd.Series(False, index=frame.index)
    flagged = int(errors.sum())
    served = frame.loc[~errors] if flagged else frame
    quality = {f: quality_counts(plan.profile.columns[f], frame[f]) for f in features if f in plan.profile.columns}
    outputs = Side()
    out_cols: list[str] = []
    if plan.outputs is not None:
        out_cols = [c for c in plan.outputs.columns if c in frame.columns and _is_output(c)]
        outputs = _side(plan.outputs, served, out_cols)
    return WindowSummary(
        key=plan.key,
        rows=len(frame),
        flagged=flagged,
        columns=frozenset(features + out_cols),
        quality=quality,
        features=_side(plan.profile, served, [f for f in features if f in plan.profile.columns]),
        outputs=outputs,
    )


def _is_output(column: str) -> bool:
    return column == PREDICTION or column.startswith(PROBA_PREFIX)


def _side(profile: ReferenceProfile, frame: pd.DataFrame, columns: list[str]) -> Side:
    numeric: dict[str, NumericWindow] = {}
    categorical: dict[str, np.ndarray] = {}
    for name in columns:
        column = profile.columns[name]
        if isinstance(column, NumericProfile):
            numeric[name] = numeric_window(column, numeric_array(frame[name])[0])
        else:
            categorical[name] = categorical_counts(column, frame[name])
    return Side(numeric, categorical)


def side_stats(profile: ReferenceProfile, side: Side) -> dict[str, dict[str, Any]]:
    """Each column's drift statistics from its counts (`drift_report_from`'s input)."""
    out: dict[str, dict[str, Any]] = {}
    for name, column in profile.columns.items():
        if isinstance(column, NumericProfile):
            if name in side.numeric:
                out[name] = numeric_stats(column, side.numeric[name])
        elif name in side.categorical:
            out[name] = categorical_stats(column, side.categorical[name])
    return out


# -- merging -----------------------------------------------------------------------------------------
def merge(summaries: list[WindowSummary], plan: SummaryPlan) -> WindowSummary:
    """The summary of the window made of `summaries`' parts (all taken against `plan`)."""
    quality: dict[str, QualityCounts] = {}
    for name in plan.profile.columns:
        parts = [s.quality[name] for s in summaries if name in s.quality]
        if parts:
            present = sum(p.present for p in parts)
            unknown = any(p.flagged is None and p.present for p in parts)
            column = plan.profile.columns[name]
            if isinstance(column, CategoricalProfile) and (column.other > 0 or not present):
                unknown = True
            quality[name] = QualityCounts(present, None if unknown else sum(p.flagged or 0 for p in parts))
    return WindowSummary(
        key=plan.key,
        rows=sum(s.rows for s in summaries),
        flagged=sum(s.flagged for s in summaries),
        columns=frozenset().union(*(s.columns for s in summaries)),
        quality=quality,
        features=_merge_side([s.features for s in summaries]),
        outputs=_merge_side([s.outputs for s in summaries]),
    )


def _merge_side(sides: list[Side]) -> Side:
    numeric = {}
    for name in dict.fromkeys(n for s in sides for n in s.numeric):
        numeric[name] = _merge_numeric([s.numeric[name] for s in sides if name in s.numeric])
    categorical: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(n for s in sides for n in s.categorical):
        categorical[name] = _total([s.categorical[name] for s in sides if name in s.categorical])
    return Side(numeric, categorical)


def _total(arrays: list[np.ndarray]) -> np.ndarray:
    return np.asarray(np.sum(arrays, axis=0, dtype=np.int64))


def _merge_numeric(parts: list[NumericWindow]) -> NumericWindow:
    if len(parts) == 1:
        return parts[0]
    n, mean, m2 = 0, 0.0, 0.0
    for p in parts:  # Chan et al.: moments of the union from each part's count, mean and M2
        if p.n == 0:
            continue
        delta = p.mean - mean
        total = n + p.n
        mean += delta * p.n / total
        m2 += (p.std**2) * (p.n - 1) + delta * delta * n * p.n / total
        n = total
    mean_out = mean if n else float("nan")
    std = (m2 / (n - 1)) ** 0.5 if n > 1 else (0.0 if n == 1 else float("nan"))
    bins = None if parts[0].bins is None else np.sum([p.bins for p in parts if p.bins is not None], axis=0)
    insides = [p.inside for p in parts if p.n]

    def inside(buckets: np.ndarray) -> np.ndarray:
        return np.sort(np.concatenate([f(buckets) for f in insides])) if insides else np.zeros(0)

    return NumericWindow(
        n=n,
        mean=mean_out,
        std=std,
        counts=_total([p.counts for p in parts]),
        equal=_total([p.equal for p in parts]),
        gaps=np.sum([p.gaps for p in parts], axis=0),
        above_sum=float(sum(p.above_sum for p in parts)),
        above_n=sum(p.above_n for p in parts),
        bins=bins,
        inside=inside,
    )


# -- bytes ---------------------------------------------------------------------------------------------
_MAGIC = b"KWS1"


def encode(summary: WindowSummary, plan: SummaryPlan) -> bytes:
    """The summary as bytes: a JSON header, then each count vector raw (8-byte aligned), so that
    reading it back is views on the bytes; each numeric column's inside values sorted, which a
    check reads only where the CDFs cross."""
    arrays: list[tuple[str, np.ndarray]] = []
    head: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "key": summary.key,
        "rows": summary.rows,
        "flagged": summary.flagged,
        "columns": sorted(summary.columns),
        "quality": {k: [q.present, q.flagged] for k, q in summary.quality.items()},
    }
    for side_name, side, profile in (("f", summary.features, plan.profile), ("o", summary.outputs, plan.outputs)):
        nums = {}
        for i, (name, w) in enumerate(side.numeric.items()):
            nums[name] = [w.n, w.mean, w.std, w.above_sum, w.above_n, w.bins is not None]
            tag = f"{side_name}n{i}"
            arrays += [(tag + "c", _small(w.counts)), (tag + "e", _small(w.equal)), (tag + "g", w.gaps)]
            if w.bins is not None:
                arrays.append((tag + "b", w.bins))
            column = profile.columns[name] if profile is not None else None
            m = len(column.summary.quantiles) if isinstance(column, NumericProfile) and column.summary else 0
            arrays.append((tag + "v", w.inside(np.arange(1, m)) if m > 1 and w.n else np.zeros(0)))
        head[side_name + "num"] = nums
        head[side_name + "cat"] = list(side.categorical)
        arrays += [(f"{side_name}c{i}", np.asarray(c)) for i, c in enumerate(side.categorical.values())]
    layout: dict[str, tuple[str, int, int]] = {}
    offset = 0
    for name, array in arrays:
        layout[name] = (array.dtype.str, offset, int(array.size))
        offset += -(-array.nbytes // 8) * 8
    head["arrays"] = layout
    text = json.dumps(head).encode()
    text += b" " * (-(len(_MAGIC) + 4 + len(text)) % 8)
    body = bytearray(offset)
    for name, array in arrays:
        start = layout[name][1]
        body[start : start + array.nbytes] = np.ascontiguousarray(array).tobytes()
    return _MAGIC + len(text).to_bytes(4, "little") + text + bytes(body)


def _small(counts: np.ndarray) -> np.ndarray:
    """Counts as int32 (half the bytes): a segment's counts are far below 2**31."""
    return counts.astype(np.int32) if counts.size and int(counts.max()) < 2**31 else counts.astype(np.int64)


def decode(data: bytes, plan: SummaryPlan) -> WindowSummary | None:
    """A stored summary read back (views on `data`), or None when taken against another plan."""
    if data[:4] != _MAGIC:
        return None
    size = int.from_bytes(data[4:8], "little")
    head = json.loads(data[8 : 8 + size])
    if head.get("format") != SUMMARY_FORMAT or head.get("key") != plan.key:
        return None
    base = 8 + size
    layout = head["arrays"]

    def array(name: str) -> np.ndarray:
        dtype, offset, count = layout[name]
        return np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=base + offset)

    sides = []
    for side_name in ("f", "o"):
        numeric = {}
        for i, (name, (n, mean, std, above_sum, above_n, has_bins)) in enumerate(head[side_name + "num"].items()):
            tag = f"{side_name}n{i}"
            counts, equal = array(tag + "c"), array(tag + "e")
            numeric[name] = NumericWindow(
                n=n,
                mean=mean,
                std=std,
                counts=counts,
                equal=equal,
                gaps=array(tag + "g"),
                above_sum=above_sum,
                above_n=above_n,
                bins=array(tag + "b") if has_bins else None,
                inside=_stored_inside(array(tag + "v"), counts, equal),
            )
        categorical = {name: array(f"{side_name}c{i}") for i, name in enumerate(head[side_name + "cat"])}
        sides.append(Side(numeric, categorical))
    return WindowSummary(
        key=head["key"],
        rows=head["rows"],
        flagged=head["flagged"],
        columns=frozenset(head["columns"]),
        quality={k: QualityCounts(p, f) for k, (p, f) in head["quality"].items()},
        features=sides[0],
        outputs=sides[1],
    )


def _stored_inside(values: np.ndarray, counts: np.ndarray, equal: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """inside(buckets) over stored values: bucket k's values (1 <= k < m) are a slice of the
    sorted array, at the running total of the earlier buckets' inside counts."""

    def inside(buckets: np.ndarray) -> np.ndarray:
        per_bucket = (counts[:-1] - equal)[1:].astype(np.int64)  # buckets 1..m-1
        k = buckets - 1
        lengths = per_bucket[k]
        total = int(lengths.sum())
        if not total:
            return np.zeros(0)
        starts = np.cumsum(per_bucket) - per_bucket
        # Indices of the chosen slices, as one vector: each slice's start repeated over its length.
        offsets = np.repeat(starts[k] - np.cumsum(lengths) + lengths, lengths)
        return values[offsets + np.arange(total)]

    return inside
