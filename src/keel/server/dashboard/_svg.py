"""Geometry of the dashboard's inline SVGs, computed here so that the pages need no layout library:
the study page's causal graph in layers (left to right, a node one layer right of its deepest parent)
and the interval plot of its estimates (point and 95 % interval per estimator on one axis); the twin
page's cost plot (each classic policy's cost per period with its 95 % error bar, ±1.96 standard
errors of the common-random-numbers evaluation, against the exact optimum as a dashed line, drawn
with the interval plot's styles); the language model page's training curves (train and validation
loss against step on shared axes, thinned to a few hundred points).

Values only: names stay plain strings (the template escapes them), numbers are rounded to 0.1 px.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from keel.entities_studies import Study, StudyEstimate

__all__ = ["Z95", "cost_plot", "graph_layout", "interval_plot", "line_plot", "number"]

NODE_H = 30
ROW_GAP = 16
COL_GAP = 80
CHAR_W = 7.4  # px per character of the 13 px label font, roughly
MAX_LABEL = 26
PAD = 12


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "…"


def _layers(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: roots in layer 0, every node one layer right of its deepest parent."""
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        parents[b].append(a)
    layer: dict[str, int] = {}

    def depth(node: str, seen: frozenset[str]) -> int:
        if node not in layer:
            if node in seen:  # a stored study is acyclic; a cycle here would only be drawn flat
                return 0
            layer[node] = max((depth(p, seen | {node}) + 1 for p in parents[node]), default=0)
        return layer[node]

    for node in nodes:
        depth(node, frozenset())
    return layer


def _role(study: Study, node: str) -> str:
    if node == study.treatment:
        return "treatment"
    if node == study.outcome:
        return "outcome"
    if node in study.latent:
        return "latent"
    if node in study.covariates:
        return "adjustment"
    return "other"


def graph_layout(study: Study) -> dict[str, Any]:
    """{width, height, nodes: [{name, label, role, x, y, w, h}], edges: [{source, target, d, effect}]}."""
    nodes = list(dict.fromkeys([*(n for edge in study.edges for n in edge), *study.latent]))
    edges = [(a, b) for a, b in study.edges]
    layer = _layers(nodes, edges)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for node in nodes:
        columns[layer[node]].append(node)
    parents: dict[str, list[str]] = {n: [a for a, b in edges if b == n] for n in nodes}
    rank: dict[str, float] = {}
    for column in columns:  # one barycentre sweep: a node sits near its parents, fewer crossings
        if rank:
            column.sort(key=lambda n: sum(rank[p] for p in parents[n]) / len(parents[n]) if parents[n] else -1.0)
        rank.update({n: float(i) for i, n in enumerate(column)})
    widths = [max(len(_label(n)) for n in column) * CHAR_W + 2 * PAD for column in columns]
    tallest = max(len(column) for column in columns) if columns else 0
    height = max(tallest * (NODE_H + ROW_GAP) - ROW_GAP, NODE_H) + 2 * PAD
    boxes: dict[str, dict[str, Any]] = {}
    x = float(PAD)
    for column, width in zip(columns, widths, strict=True):
        top = (height - (len(column) * (NODE_H + ROW_GAP) - ROW_GAP)) / 2
        for i, node in enumerate(column):
            boxes[node] = {
                "name": node,
                "label": _label(node),
                "role": _role(study, node),
                "x": round(x, 1),
                "y": round(top + i * (NODE_H + ROW_GAP), 1),
                "w": round(width, 1),
                "h": NODE_H,
            }
        x += width + COL_GAP
    return {
        "width": round(x - COL_GAP + PAD, 1),
        "height": round(height, 1),
        "nodes": [boxes[n] for n in nodes],
        "edges": [_edge(boxes[a], boxes[b], a == study.treatment) for a, b in edges],
    }


def _edge(a: dict[str, Any], b: dict[str, Any], effect: bool) -> dict[str, Any]:
    """A curve from the right side of `a` to the left side of `b` (or below, within one layer)."""
    x1, y1 = a["x"] + a["w"], a["y"] + a["h"] / 2
    x2, y2 = b["x"] - 2, b["y"] + b["h"] / 2
    if x2 <= x1:  # same column (only for a malformed graph): leave from the bottom
        x1, y1 = a["x"] + a["w"] / 2, a["y"] + a["h"]
    mid = (x1 + x2) / 2
    d = f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    return {"source": a["name"], "target": b["name"], "d": d, "effect": effect}


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return [low]
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def interval_plot(estimates: Sequence[StudyEstimate], flagged: set[str]) -> dict[str, Any] | None:
    """Point and 95 % interval per estimate on one axis, with zero marked; `flagged` estimators
    (in a disagreement) drawn as such. None when no estimate has finite numbers."""
    rows = [e for e in estimates if all(math.isfinite(v) for v in (e.value, e.ci_low, e.ci_high))]
    if not rows:
        return None
    low = min(0.0, *(e.ci_low for e in rows))
    high = max(0.0, *(e.ci_high for e in rows))
    pad = (high - low) * 0.05 or 1.0
    low, high = low - pad, high + pad
    left, width, row_h = 120, 440, 30

    def px(v: float) -> float:
        return round(left + (v - low) / (high - low) * width, 1)

    height = len(rows) * row_h + 36
    return {
        "width": left + width + 20,
        "height": height,
        "axis_y": height - 26,
        "zero": px(0.0),
        "ticks": [{"x": px(t), "label": f"{t:,.6g}"} for t in _ticks(low, high)],
        "rows": [
            {
                "estimator": e.estimator,
                "y": 10 + i * row_h + row_h / 2,
                "x": px(e.value),
                "lo": px(e.ci_low),
                "hi": px(e.ci_high),
                "flagged": e.estimator in flagged,
                "title": f"{e.estimator}: {e.value:,.6g} (95% [{e.ci_low:,.6g}, {e.ci_high:,.6g}])",
            }
            for i, e in enumerate(rows)
        ],
    }


# -- the twin page's cost plot --------------------------------------------------------------------
Z95 = 1.96  # a 95 % normal interval: the evaluation's mean over many independent copies


def number(value: Any) -> float | None:
    """A stored JSON number as a finite float; None for None, NaN, booleans and anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def cost_plot(classic: dict[str, Any], best: str | None, optimum: float | None) -> dict[str, Any] | None:
    """{width, height, left, axis_y, optimum, ticks, rows} for `classic` ({family: {"evaluation": {cost, se}}}),
    the best family flagged; None when no family has a finite cost."""
    rows = []
    for family, entry in classic.items():
        evaluation = (entry or {}).get("evaluation") or {}
        cost, se = number(evaluation.get("cost")), number(evaluation.get("se"))
        if cost is not None:
            half = Z95 * (se or 0.0)
            rows.append((family, cost, cost - half, cost + half))
    if not rows:
        return None
    optimum = number(optimum)
    marks = [v for _, _, lo, hi in rows for v in (lo, hi)] + ([] if optimum is None else [optimum])
    low, high = min(marks), max(marks)
    pad = (high - low) * 0.08 or max(abs(high) * 0.05, 1.0)
    low, high = low - pad, high + pad
    left, width, row_h = 150, 420, 30

    def px(v: float) -> float:
        return round(left + (v - low) / (high - low) * width, 1)

    height = len(rows) * row_h + 36
    return {
        "width": left + width + 20,
        "height": height,
        "left": left,
        "axis_y": height - 26,
        "optimum": None if optimum is None else px(optimum),
        "ticks": [{"x": px(t), "label": f"{t:,.6g}"} for t in _ticks(low, high)],
        "rows": [
            {
                "family": family,
                "y": 10 + i * row_h + row_h / 2,
                "x": px(cost),
                "lo": px(lo),
                "hi": px(hi),
                "best": family == best,
                "title": f"{family}: {cost:,.4f} per period (95% [{lo:,.4f}, {hi:,.4f}])",
            }
            for i, (family, cost, lo, hi) in enumerate(rows)
        ],
    }


# -- the language model page's training curves ------------------------------------------------------
CURVE_COLORS = ("#2563eb", "#d97706", "#059669", "#dc2626")
MAX_CURVE_POINTS = 400  # a path of a few hundred segments is smooth at 600 px; more only weighs the page


def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most MAX_CURVE_POINTS evenly strided points, the last one always kept (the final loss)."""
    stride = max(1, math.ceil(len(points) / MAX_CURVE_POINTS))
    kept = list(points[::stride])
    if points and kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


def line_plot(series: Mapping[str, Sequence[tuple[float, float]]]) -> dict[str, Any] | None:
    """{width, height, left, right, axis_y, x_ticks, y_ticks, series: [{label, color, d, end}]} of named
    (x, y) series on shared axes (loss against step); None when no series has a finite point."""
    clean = {
        label: _thin([(float(x), float(y)) for x, y in points if number(x) is not None and number(y) is not None])
        for label, points in series.items()
    }
    clean = {label: points for label, points in clean.items() if points}
    if not clean:
        return None
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:  # one step: widen so the point sits inside the axis
        x_low, x_high = x_low - 1, x_high + 1
    pad = (max(ys) - min(ys)) * 0.06 or max(abs(max(ys)) * 0.05, 0.1)
    y_low, y_high = min(ys) - pad, max(ys) + pad
    left, right, top, axis_y = 56, 600, 12, 220

    def px(x: float) -> float:
        return round(left + (x - x_low) / (x_high - x_low) * (right - left), 1)

    def py(y: float) -> float:
        return round(axis_y - (y - y_low) / (y_high - y_low) * (axis_y - top), 1)

    drawn = []
    for i, (label, points) in enumerate(clean.items()):
        d = " ".join(f"{'M' if j == 0 else 'L'}{px(x)},{py(y)}" for j, (x, y) in enumerate(points))
        last_x, last_y = points[-1]
        drawn.append(
            {
                "label": label,
                "color": CURVE_COLORS[i % len(CURVE_COLORS)],
                "d": d,
                "end": {"x": px(last_x), "y": py(last_y), "step": last_x, "value": last_y},
            }
        )
    return {
        "width": right + 16,
        "height": axis_y + 40,
        "left": left,
        "right": right,
        "top": top,
        "axis_y": axis_y,
        "x_ticks": [{"x": px(t), "label": f"{t:,.6g}"} for t in _ticks(x_low, x_high) if x_low <= t <= x_high],
        "y_ticks": [{"y": py(t), "label": f"{t:,.4g}"} for t in _ticks(y_low, y_high) if y_low <= t <= y_high],
        "series": drawn,
    }
