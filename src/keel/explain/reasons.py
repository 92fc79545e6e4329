"""Reason codes: the features that pushed a prediction toward its outcome, as sentences.

"Income of 45 (typical 120) pushed toward bad (+0.61 log-odds)": the row's value, the typical
value in the training data (median, or most frequent category), the direction and the size.
Display names and units come from the model project (`explain.display`). Each reason is a frozen
`Reason`; it reads like the dict it used to be (`reason["text"]`) and `to_dict()` gives that dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from keel.explain.attributions import Explanation

__all__ = ["Reason", "reason_codes", "typical_values"]


@dataclass(frozen=True)
class Reason(Mapping[str, Any]):
    """One feature that pushed a row's output toward its outcome: the row's `value` (None when
    missing), the `typical` value in the training data, the `attribution` (in the explanation's
    space) and the sentence (`text`). A read-only mapping of those five keys as well, so code
    written for the dicts reason codes used to be (`reason["text"]`) keeps working."""

    feature: str
    value: Any
    typical: Any
    attribution: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict the API, the CLI and batch jobs show."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __getitem__(self, key: str) -> Any:
        if key not in _REASON_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_REASON_KEYS)

    def __len__(self) -> int:
        return len(_REASON_KEYS)


_REASON_KEYS = tuple(f.name for f in fields(Reason))


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
        text = f"{value:,.0f}" if abs(float(value)) >= 1000 else f"{value:.4g}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit else text


def reason_codes(
    explanation: Explanation,
    X: pd.DataFrame,
    typical: Mapping[str, Any],
    *,
    outcomes: list[Any] | None = None,
    top: int = 3,
    display: Mapping[str, Mapping[str, str]] | None = None,
) -> list[list[Reason]]:
    """Per row, up to `top` reasons: features whose attribution pushed the output toward the row's
    outcome (toward the explained class when the row's outcome is that class, away from it otherwise;
    the largest upward pushes for regressors)."""
    display = display or {}
    rows: list[list[Reason]] = []
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
            text = (
                f"{name} {shown_value} (typical {_fmt(typical.get(feature), unit)}) pushed toward "
                f"{outcome if outcome is not None else 'a higher value'} ({explanation.values[i, j]:+.3g} {explanation.space})"
            )
            reasons.append(
                Reason(
                    feature=feature,
                    value=None if value is None else _plain(value),
                    typical=_plain(typical.get(feature)),
                    attribution=float(explanation.values[i, j]),
                    text=text,
                )
            )
        rows.append(reasons)
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
