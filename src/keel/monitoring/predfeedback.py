"""Feedback as `PredictionLog.feedback` takes it: (prediction id, label) pairs checked one by one,
so that a bad item is named and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from keel.errors import InvalidInputError

__all__ = ["feedback_values", "shown_ids"]


def feedback_values(items: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
    """{prediction id: label} of `items` ({id: label} or pairs); InvalidInputError naming a bad item."""
    pairs = items.items() if isinstance(items, Mapping) else items
    out: dict[str, Any] = {}
    for pair in pairs:
        try:
            prediction_id, value = pair
        except (TypeError, ValueError):
            raise InvalidInputError(f"Feedback items are (prediction_id, label) pairs; got {pair!r}") from None
        if not isinstance(prediction_id, str) or not prediction_id:
            raise InvalidInputError(f"A prediction id is a non-empty string; got {prediction_id!r}")
        if len(prediction_id) > 32:
            raise InvalidInputError(f"Prediction ids have at most 32 characters; got {prediction_id[:40]!r}...")
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or (isinstance(value, float) and value != value):
            raise InvalidInputError(f"The label for prediction {prediction_id} is missing; send a value")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"The label for prediction {prediction_id} is not a JSON value: {value!r}"
            ) from None
        out[prediction_id] = value
    return out


def shown_ids(ids: list[str]) -> str:
    """The first ten ids, and how many more, for a message."""
    return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
