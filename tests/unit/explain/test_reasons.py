"""Reason codes as frozen values that still read like the dicts they were."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from keel.explain import Explanation, Reason, reason_codes


def _explanation() -> Explanation:
    values = np.array([[0.6, -0.2, 0.1], [-0.5, 0.3, 0.0]])
    return Explanation(
        features=("income", "age", "city"),
        values=values,
        base_values=np.zeros(2),
        outputs=values.sum(axis=1),
        method="linear",
        space="log-odds",
        target="bad",
    )


def test_reason_codes_are_frozen_reasons_readable_as_the_dicts_they_were() -> None:
    X = pd.DataFrame({"income": [45.0, 200.0], "age": [np.int64(30), 50], "city": ["Oslo", None]})
    rows = reason_codes(
        _explanation(),
        X,
        {"income": 120.0, "age": 40.0, "city": "Bergen"},
        outcomes=["bad", "good"],
        display={"income": {"name": "Income", "unit": "k"}},
    )
    first = rows[0][0]
    assert isinstance(first, Reason) and [r.feature for r in rows[0]] == ["income", "city"]
    assert first.text == "Income of 45 k (typical 120 k) pushed toward bad (+0.6 log-odds)"
    # dict-style reading, as the README and the demo do, and the same dict for JSON
    assert first["text"] == first.text and first.get("nope") is None and list(first) == list(first.to_dict())
    assert first.to_dict() == {
        "feature": "income",
        "value": 45.0,
        "typical": 120.0,
        "attribution": 0.6,
        "text": first.text,
    }
    assert json.loads(json.dumps(first.to_dict())) == dict(first)
    # the second row is 'good': features that pushed away from 'bad' are its reasons
    assert [r.feature for r in rows[1]] == ["income"] and rows[1][0].value == 200.0
    assert type(first.value) is float and rows[0][1]["value"] == "Oslo"  # numpy scalars come out plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.text = "changed"  # type: ignore[misc]
    with pytest.raises(KeyError):
        first["nope"]
