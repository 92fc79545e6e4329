"""Reference profiles as frozen types: the JSON the store keeps reads back and writes out unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.errors import InvalidInputError
from keel.monitoring.profiles import CategoricalProfile, ModelReference, NumericProfile, ReferenceProfile
from keel.monitoring.stats import build_profile, build_reference, drift_report, quality_report

# A profile as the store holds it, written by build_reference before the profile had types.
STORED = (
    '{"format": 1, "n_rows": 5, "bins": 2, "quantile_points": 3, "max_categories": 2, "columns": {'
    '"x": {"kind": "numeric", "n": 4, "missing_rate": 0.2, "mean": 2.5, "std": 1.7320508075688772, "min": 1.0, '
    '"max": 5.0, "edges": [2.0], "counts": [3, 1], "quantiles": [1.0, 2.0, 5.0], "le": [1, 3, 4], "lt": [0, 1, 3], '
    '"areas": [0.25, 2.25], "dtype": "float64"}, '
    '"c": {"kind": "categorical", "n": 4, "missing_rate": 0.2, "categories": {"a": 2, "b": 1}, "other": 1, '
    '"distinct": 3, "dtype": "str"}, '
    '"e": {"kind": "numeric", "n": 0, "missing_rate": 1.0, "dtype": "float64"}}, '
    '"skipped": {"when": "datetime64[us] columns are not profiled for drift"}}'
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0, 2.0, 5.0, np.nan], "c": ["a", "b", "a", None, "c"], "e": [np.nan] * 5})


def test_a_stored_profile_reads_into_types_and_writes_back_the_same_json() -> None:
    profile = ReferenceProfile.from_dict(json.loads(STORED))
    x, c, e = profile.columns["x"], profile.columns["c"], profile.columns["e"]
    assert isinstance(x, NumericProfile) and x.summary is not None and x.summary.quantiles == (1.0, 2.0, 5.0)
    assert isinstance(c, CategoricalProfile) and dict(c.categories) == {"a": 2, "b": 1} and c.other == 1
    assert isinstance(e, NumericProfile) and e.summary is None and e.n == 0
    assert profile.skipped == {"when": "datetime64[us] columns are not profiled for drift"}
    assert json.dumps(profile.to_dict()) == STORED  # same keys, same order, same numbers


def test_build_reference_is_the_typed_profile_as_json_and_both_give_the_same_checks() -> None:
    frame = _frame()
    typed = build_profile(frame, bins=2, quantile_points=3, max_categories=2)
    stored = build_reference(frame, bins=2, quantile_points=3, max_categories=2)
    assert typed.to_dict() == stored
    # The stored example was built from this frame (and a date column, skipped).
    assert json.dumps({**stored, "skipped": {}}) == json.dumps({**json.loads(STORED), "skipped": {}})
    window = pd.DataFrame({"x": [1.0, 9.0, 2.0], "c": ["a", "z", "b"], "e": [1.0, 2.0, 3.0]})
    assert drift_report(typed, window) == drift_report(stored, window)
    assert repr(quality_report(typed, window)) == repr(quality_report(stored, window))


def test_restricted_keeps_only_the_named_columns() -> None:
    profile = build_profile(_frame())
    assert list(profile.restricted(["c", "missing"]).columns) == ["c"]
    assert list(profile.columns) == ["x", "c", "e"]  # frozen: the original is untouched


def test_a_model_reference_round_trips_and_an_old_one_without_performance_loads() -> None:
    outputs = build_profile(pd.DataFrame({"__prediction": np.arange(10.0)}))
    ref = ModelReference(outputs=outputs, performance={"accuracy": 0.9})
    assert ModelReference.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    assert ModelReference.from_dict({"outputs": outputs.to_dict()}).performance == {}


def test_a_profile_that_is_not_one_says_what_is_wrong() -> None:
    with pytest.raises(InvalidInputError, match="a dict with 'columns'"):
        ReferenceProfile.from_dict({"format": 1})
    with pytest.raises(InvalidInputError, match="Column 'x' .* kind 'date'"):
        ReferenceProfile.from_dict({"columns": {"x": {"kind": "date", "n": 1}}})
