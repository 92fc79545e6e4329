"""Reason codes: the features that pushed a prediction toward its outcome, as sentences.

"Income of 45 (typical 120) pushed toward bad (+0.61 log-odds)": the row's value, the typical
value in the training data (median, or most frequent category), the direction and the size.
Display names and units come from the model project (`explain.display`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from keel.explain.attributions import Explanation

__all__ = ["reason_codes", "typical_values"]


def typical_values(frame: pd.DataFrame) -> dict[str, Any]:
    """Median of each numeric column, most frequent value of the others."""
    out: dict[str, Any] = {}
    for c in frame.columns:
        col = frame[c].dropna()
        if col.empty:
            out[c] = None
        elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            out[c] = float(col.median())
        else:
            out[c] = col.mode().iloc[0]
    return out


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, float | np.floating):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit else text


def reason_codes(explanation: Explanation, X: pd.DataFrame, typical: Mapping[str, Any], *, outcomes: list[Any] | None = None,
                 top: int = 3, display: Mapping[str, Mapping[str, str]] | None = None) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Per row, up to `top` reasons: features whose attribution pushed the output toward the row's
    outcome (toward the explained class when the row's outcome is that class, away from it otherwise;
    the largest upward pushes for regressors)."""
    display = display or {}
    rows: list[list[dict[str, Any]]] = []
    for i in range(len(X)):
        outcome = outcomes[i] if outcomes is not None else explanation.target
        toward = explanation.target is None or str(outcome) == str(explanation.target)
        sign = 1.0 if toward else -1.0
        values = explanation.values[i] * sign
        order = [j for j in np.argsort(-values) if values[j] > 0][:top]
        reasons = []
        for j in order:
            feature = explanation.features[j]
            shown = display.get(feature, {})
            name, unit = shown.get("name", feature), shown.get("unit", "")
            value = X.iloc[i][feature] if feature in X.columns else None
            shown_value = "missing" if _fmt(value) == "missing" else f"of {_fmt(value, unit)}"
            text = (f"{name} {shown_value} (typical {_fmt(typical.get(feature), unit)}) pushed toward "
                    f"{outcome if outcome is not None else 'a higher value'} ({explanation.values[i, j]:+.3g} {explanation.space})")  # fmt: skip
            reasons.append({"feature": feature, "value": None if value is None else _plain(value), "typical": _plain(typical.get(feature)),
                            "attribution": float(explanation.values[i, j]), "text": text})  # fmt: skip
        rows.append(reasons)
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
