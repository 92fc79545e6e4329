"""Profiles and schemas: the statistics a dataset version records about each column."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from keel.data.profile import HIST_BINS, TOP_CATEGORIES, column_schema, profile_table


def _profile(**columns: pa.Array) -> dict[str, dict]:  # type: ignore[type-arg]
    profile = profile_table(pa.table(columns))
    json.dumps(profile, allow_nan=False)  # PostgreSQL's JSON type has no NaN or Infinity
    return profile["columns"]  # type: ignore[no-any-return]


def test_numeric_profile_matches_numpy() -> None:
    from sklearn.datasets import load_diabetes

    bmi = load_diabetes().data[:, 2]
    p = _profile(bmi=pa.array(bmi))["bmi"]
    assert p["kind"] == "numeric" and (p["count"], p["missing"]) == (442, 0)
    assert p["mean"] == pytest.approx(bmi.mean()) and p["std"] == pytest.approx(bmi.std(ddof=1))
    assert (p["min"], p["max"]) == (bmi.min(), bmi.max())
    assert p["quantiles"]["p25"] == pytest.approx(np.quantile(bmi, 0.25))
    assert list(p["quantiles"]) == ["p1", "p5", "p25", "p50", "p75", "p95", "p99"]
    counts, edges = np.histogram(bmi, bins=HIST_BINS)
    assert p["histogram"]["counts"] == counts.tolist()
    assert p["histogram"]["edges"] == pytest.approx(edges.tolist())


def test_nulls_and_nans_count_as_missing_and_infinities_are_reported_apart() -> None:
    p = _profile(x=pa.array([1.0, None, np.nan, np.inf, 3.0], from_pandas=False))["x"]
    assert (p["count"], p["missing"], p["infinite"]) == (3, 2, 1)
    assert (p["min"], p["max"], p["mean"]) == (1.0, 3.0, 2.0)


def test_values_near_the_float_limit_do_not_produce_non_json_numbers() -> None:
    p = _profile(x=pa.array([1e308, 1e308, -1e308]))["x"]
    assert p["mean"] is None and p["max"] == 1e308
    assert "histogram" not in p  # its range would be infinite


def test_all_missing_and_empty_columns_have_counts_but_no_statistics() -> None:
    cols = _profile(nothing=pa.array([None, None], pa.float64()))
    assert cols["nothing"] == {"type": "double", "count": 0, "missing": 2, "kind": "numeric"}
    empty = profile_table(pa.table({"x": pa.array([], pa.int64())}))
    assert empty["num_rows"] == 0 and empty["columns"]["x"]["count"] == 0


def test_constant_column_has_a_one_bar_histogram() -> None:
    p = _profile(x=pa.array([5, 5, 5]))["x"]
    assert p["std"] == 0.0 and p["distinct"] == 1
    assert sum(p["histogram"]["counts"]) == 3 and p["histogram"]["counts"][0] == 3


def test_categorical_profile_lists_top_categories_by_count() -> None:
    values = ["b"] * 5 + ["a"] * 3 + ["c"] + [None] * 2 + [f"rare{i}" for i in range(30)]
    p = _profile(s=pa.array(values))["s"]
    assert p["kind"] == "categorical" and (p["missing"], p["distinct"]) == (2, 33)
    assert p["top"][:3] == [{"value": "b", "count": 5}, {"value": "a", "count": 3}, {"value": "c", "count": 1}]
    assert len(p["top"]) == TOP_CATEGORIES


def test_dictionary_column_is_profiled_as_categorical() -> None:
    p = _profile(c=pa.array([2, 1, 2, None]).dictionary_encode())["c"]
    assert p["kind"] == "categorical" and p["top"][0] == {"value": "2", "count": 2}


def test_boolean_and_datetime_columns() -> None:
    cols = _profile(
        flag=pa.array([True, None, False, True]),
        day=pa.array([dt.date(2024, 5, 1), dt.date(2023, 1, 9), None, dt.date(2023, 6, 1)]),
    )
    assert (cols["flag"]["true"], cols["flag"]["false"], cols["flag"]["missing"]) == (2, 1, 1)
    assert (cols["day"]["kind"], cols["day"]["min"], cols["day"]["max"]) == ("datetime", "2023-01-09", "2024-05-01")


def test_column_schema_records_type_nullability_and_categories_in_order() -> None:
    table = pa.table(
        {
            "grade": pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int8()), pa.array(["low", "high", "unused"])),
            "n": pa.array([1, None]),
            "s": pa.array(["x", "y"]),
        }
    )
    schema = {c["name"]: c for c in column_schema(table)}
    assert schema["grade"]["categories"] == ["low", "high", "unused"]
    assert (schema["n"]["type"], schema["n"]["nullable"]) == ("int64", True)
    assert (schema["s"]["type"], schema["s"]["nullable"], "categories" in schema["s"]) == ("string", False, False)
