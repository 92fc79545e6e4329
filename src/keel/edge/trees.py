"""Tree ensembles to C99: scikit-learn decision trees, random forests, extra trees and gradient
boosting, LightGBM and XGBoost, through one intermediate form (`Ensemble`, `_tree_ir.py`) and one
packed table layout (`_tree_c.py`).

What agrees with Python, and why:

- Thresholds. The C code compares `x <= t32` with a float input. scikit-learn compares
  `float64(float32(x)) <= t` with a float64 t; for every float32 x that equals `x <= down(t)`, where
  down(t) is the largest float32 not above t (rounding to nearest would move a float32 that lies
  between down(t) and t to the wrong side). LightGBM compares in float64: the same rule, exact for
  inputs representable in float32. XGBoost compares `x < t` in float32: `x <= prev(t)`.
- Forest classifiers average per-tree class probabilities as predict_proba does, in double: a pure
  leaf adds 1 to its class (stored as the class itself, no table), a mixed leaf adds count / sum
  (exact counts, the correctly rounded float64 division scikit-learn stored), tree by tree, then
  the sums are divided by the tree count and the first maximum is the class. That is float64 bit
  for bit, so ties (frequent with few trees) break as in Python; float32 sums, or exact rational
  ones, break some of them differently. The float64 arithmetic is done on the doubles' bits in
  integers (`_tree_c._F64`: about 0.6 KB of Cortex-M4 flash, where libgcc's soft-double routines
  took 2.4 KB); scores are float32(sum) / tree count, within an ulp of float32(predict_proba).
  Boosting sums leaf values onto the model's base margin; the scores are raw margins (no expf),
  and argmax of the margins is the class.
- int16 builds feed `q = round(x * scale)` (saturated). A feature whose calibration values sit on a
  grid (integers, fixed decimals) gets scale = 1 / step, and each threshold becomes the largest
  grid point the library sends left: for inputs on that grid every split is proven lossless. Other
  features get scale = 32767 / max|x| and route differently only within half a step of a threshold.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from keel.edge._tree_c import c_source, pack
from keel.edge._tree_ir import Ensemble, Rule, extract_ensemble, go_left, reference_scores
from keel.edge.source import CModel, Quantize
from keel.errors import InvalidInputError

__all__ = ["Ensemble", "extract_ensemble", "float32_threshold", "reference_scores", "tree_to_c"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_FLT_MAX = float(np.finfo(np.float32).max)
# Rough Cortex-M code of the walk (measured later on the real toolchain); the tables dominate.
_CODE_ESTIMATE = {"float32": 320, "int16": 420}


def float32_threshold(rule: Rule, t: float) -> np.float32:
    """The float32 t32 for which `(float)x <= t32` decides as the library does, for every float32 x."""
    t = float(np.clip(t, -_FLT_MAX, _FLT_MAX))
    t32 = np.float32(t)
    if rule == "xgboost":  # x < t32  <=>  x <= the float32 just below t32
        return np.float32(np.nextafter(t32, np.float32(-np.inf)))
    if float(t32) > t:  # rounded up past t: the largest float32 <= t is the one below
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return np.float32(t32)


def tree_to_c(
    model: Any,
    name: str,
    *,
    feature_names: list[str] | tuple[str, ...],
    quantize: Quantize = "float32",
    input_range: Any = None,
    max_flash_bytes: int | None = None,
) -> CModel:
    """C99 source of a fitted tree ensemble; `input_range` (calibration rows, e.g. the training X)
    is required for int16. Raises InvalidInputError, before any source is written, when the tables
    plus the code estimate exceed `max_flash_bytes`."""
    if not _IDENT.match(name):
        raise InvalidInputError(f"name {name!r} is not a C identifier: use letters, digits and '_'")
    if quantize not in ("float32", "int16"):
        raise InvalidInputError(f"tree ensembles build as quantize='float32' or 'int16', not {quantize!r}")
    ens = extract_ensemble(model)
    names = tuple(str(f) for f in feature_names)
    if len(names) != ens.n_features:
        raise InvalidInputError(f"feature_names has {len(names)} names; the model takes {ens.n_features} features")
    notes: list[str] = []
    details: dict[str, Any] = {}
    if quantize == "float32":
        thresholds = [_float_thresholds(ens.rule, t.threshold, t.feature) for t in ens.trees]
        scales = None
        thr_type, thr_size = "float", 4
    else:
        if input_range is None:
            raise InvalidInputError("an int16 build needs input_range: calibration rows such as the training X")
        scales, thresholds, qnotes, qdetails = _int16(ens, names, np.asarray(input_range, dtype=np.float64))
        notes += qnotes
        details["int16"] = qdetails
        lo, hi = (
            min(min((int(v) for v in t), default=0) for t in thresholds),
            max(max((int(v) for v in t), default=0) for t in thresholds),
        )
        thr_type, thr_size = ("int8_t", 1) if -128 <= lo and hi <= 127 else ("int16_t", 2)
    packed = pack(ens, thresholds)
    table = packed.table_bytes(thr_size) + (4 * ens.n_features if scales and any(v != 1.0 for v in scales) else 0)
    estimate = table + _CODE_ESTIMATE[quantize]
    if max_flash_bytes is not None and estimate > max_flash_bytes:
        raise InvalidInputError(
            f"{ens.source} needs about {estimate} bytes of flash ({table} of tables, {len(packed.code)} nodes) "
            f"but the limit is max_flash_bytes={max_flash_bytes}: use fewer or shallower trees, or int16"
        )
    files = c_source(name, ens, packed, thr_type, scales)
    notes += _notes(ens, packed)
    details.update(
        trees=len(ens.trees),
        nodes=len(packed.code),
        leaves_pure=packed.pure_leaves,
        leaves_mixed=packed.mixed_leaves,
        table_bytes=table,
        flash_estimate_bytes=estimate,
        types={k: v[0] for k, v in packed.types().items()} | {"thr": thr_type},
        score_space=_score_space(ens),
        threshold_rule=ens.rule,
        base=ens.base,
    )
    return CModel(
        name=name,
        files=files,
        kind=ens.kind,
        feature_names=names,
        n_outputs=ens.n_outputs,
        classes=ens.classes,
        quantize=quantize,
        int_input="int16_t" if scales is not None else None,
        input_scale=tuple(scales) if scales is not None else None,
        notes=tuple(notes),
        details=details,
    )


def _score_space(ens: Ensemble) -> str:
    if ens.aggregate == "votes":
        return "probability"
    if ens.aggregate == "mean" or ens.kind == "regressor":
        return "value"
    return "margin"


def _notes(ens: Ensemble, p: Any) -> list[str]:
    out = [f"{len(ens.trees)} trees, {len(p.code)} split nodes from a {ens.source}"]
    if ens.aggregate == "votes":
        out.append(
            f"scores are class probabilities averaged in double as predict_proba does (ties break as in Python): "
            f"{p.pure_leaves} pure leaves "
            f"stored as their class, {p.mixed_leaves} mixed leaves as "
            + (
                "exact class counts"
                if p.exact_counts
                else "probabilities on a 1/65535 grid (weighted tree: each off by < 1/65535)"
            )
        )
    elif ens.kind == "classifier":
        link = "sigmoid" if ens.n_outputs == 1 else "softmax"
        out.append(
            f"scores are raw margins (apply {link} for probabilities; the C needs no expf): "
            + ("one margin, class 1 when it is > 0" if ens.n_outputs == 1 else "the class is their argmax")
        )
    out.append("features must be finite (no NaN / missing-value routing in C)")
    return out


def _float_thresholds(rule: Rule, t: np.ndarray, feature: np.ndarray) -> np.ndarray:
    return np.array([float(float32_threshold(rule, v)) if f >= 0 else 0.0 for v, f in zip(t, feature)])


def _grid_step(col: np.ndarray) -> int | None:
    """The scale s (1, 10, ..., 10**4) that puts every value on an integer grid within int16, if any."""
    for d in range(5):
        s: int = 10**d
        k = col * s
        r = np.round(k)
        if np.all(np.abs(k - r) <= 1e-6 * np.maximum(1.0, np.abs(k))) and np.all(np.abs(r) <= 32767):
            q = _c_quantise(col, np.float32(s))
            if np.array_equal(q, r):  # the C rounding of float32(x) * s lands on the same integers
                return s
    return None


def _c_quantise(x: np.ndarray, scale: np.float32) -> np.ndarray:
    v = (x.astype(np.float32) * scale).astype(np.float32)
    v = np.clip(v, np.float32(-32767), np.float32(32767))
    return np.trunc(np.where(v >= 0, v + np.float32(0.5), v - np.float32(0.5)).astype(np.float32))


def _int16(
    ens: Ensemble, names: tuple[str, ...], X: np.ndarray
) -> tuple[list[float], list[np.ndarray], list[str], dict[str, Any]]:
    if X.ndim != 2 or X.shape[1] != ens.n_features or len(X) == 0:
        raise InvalidInputError(f"input_range must be rows of {ens.n_features} features, got shape {X.shape}")
    used = sorted({int(f) for t in ens.trees for f in t.feature if f >= 0})
    scales = [1.0] * ens.n_features
    grid: dict[str, float] = {}
    bound: dict[str, float] = {}
    for f in used:
        col = X[:, f][np.isfinite(X[:, f])]
        s = _grid_step(col) if len(col) else 1
        if s is not None:
            scales[f] = float(s)
            grid[names[f]] = 1.0 / s
        else:
            m = float(np.max(np.abs(col))) if len(col) else 1.0
            scales[f] = float(np.float32(32767.0 / (m if m > 0 else 1.0)))
            bound[names[f]] = 0.5 / scales[f]
    thresholds = [
        _int_thresholds(ens.rule, t.threshold, t.feature, scales, {names.index(n) for n in grid}) for t in ens.trees
    ]
    notes = []
    ints = [n for n, step in grid.items() if step == 1.0]
    if ints:
        notes.append(
            f"lossless: {_few(ints)} take integer values (int16 input = the value; every split on them is exact)"
        )
    decs = [n for n, step in grid.items() if step != 1.0]
    if decs:
        notes.append(
            f"lossless: {_few(decs)} take values on a decimal grid (scale = 1 / step; every split on them is exact)"
        )
    if bound:
        worst = max(bound, key=lambda n: bound[n])
        notes.append(
            f"bound: {_few(list(bound))} are off-grid; a split routes differently from Python only when "
            f"|x - threshold| <= 0.5 / scale (largest: {worst}, {bound[worst]:.3g})"
        )
    notes.append("inputs outside the calibration range saturate at +-32767; lossless holds for grid values only")
    details = {"lossless": not bound, "grid_step": grid, "half_step_bound": bound}
    return scales, thresholds, notes, details


def _few(items: list[str]) -> str:
    return (
        ("features " + ", ".join(items)) if len(items) <= 8 else f"{len(items)} features ({', '.join(items[:4])}, ...)"
    )


def _int_thresholds(rule: Rule, t: np.ndarray, feature: np.ndarray, scales: list[float], grid: set[int]) -> np.ndarray:
    out = np.zeros(len(t), dtype=np.int64)
    for i, (thr, f) in enumerate(zip(t, feature)):
        if f < 0:
            continue
        s = scales[f]
        if f in grid:
            # The largest grid point k the library sends left (go_left is monotone in x).
            k = int(np.floor(np.clip(thr * s, -40000, 40000)))
            while go_left(rule, np.array([(k + 1) / s]), thr)[0] and k < 40000:
                k += 1
            while not go_left(rule, np.array([k / s]), thr)[0] and k > -40000:
                k -= 1
        else:
            k = int(np.round(np.clip(thr * s, -40000, 40000) - 0.5))
        out[i] = int(np.clip(k, -32768, 32767))
    return out
