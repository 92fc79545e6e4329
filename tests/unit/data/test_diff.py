"""ws.datasets.diff: schema changes, row counts, and how far each column's distribution moved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keel
from keel import InvalidInputError
from keel.data import js_distance, psi


@pytest.fixture
def credit_versions(ws: keel.Workspace, credit: pd.DataFrame) -> keel.Workspace:
    ws.datasets.add("credit", credit)
    changed = credit.iloc[:4000].copy()  # fewer rows; untouched columns keep their distribution
    changed["Income"] = changed["Income"] * 1.8 + 40  # a shifted numeric column
    changed["Status"] = "bad"  # a categorical column that moved completely
    changed["Home"] = changed["Home"].replace({"rent": "lease"})  # a renamed category
    changed["Age"] = changed["Age"].astype("float64")  # same values, new type
    changed = changed.drop(columns=["Job"]).assign(Score=np.linspace(0, 1, len(changed)))
    ws.datasets.add("credit", changed)
    return ws


def test_diff_reports_added_removed_and_retyped_columns(credit_versions: keel.Workspace) -> None:
    d = credit_versions.datasets.diff("credit@1", "credit@2")
    assert (d.a, d.b) == ("credit@1", "credit@2")
    assert d.added_columns == ("Score",)
    assert d.removed_columns == ("Job",)
    assert d.type_changes == (("Age", "int64", "double"),)
    assert d.schema_changed


def test_diff_reports_the_row_count_change(credit_versions: keel.Workspace) -> None:
    d = credit_versions.datasets.diff("credit@1", "credit")
    assert (d.rows_a, d.rows_b, d.rows_delta) == (4454, 4000, -454)


def test_shifted_numeric_column_has_a_large_psi_and_unchanged_ones_about_zero(credit_versions: keel.Workspace) -> None:
    changes = {c.name: c for c in credit_versions.datasets.diff("credit@1", "credit@2").columns}
    income = changes["Income"]
    assert (income.kind, income.statistic) == ("numeric", "psi")
    assert income.value > 1.0
    assert income.details["mean_b"] == pytest.approx(income.details["mean_a"] * 1.8 + 40, rel=0.05)
    for unchanged in ("Seniority", "Expenses", "Amount", "Age"):  # Age: only its type changed
        assert changes[unchanged].value < 0.01, unchanged


def test_shifted_categorical_column_has_a_large_js_distance_and_unchanged_ones_about_zero(
    credit_versions: keel.Workspace,
) -> None:
    changes = {c.name: c for c in credit_versions.datasets.diff("credit@1", "credit@2").columns}
    status = changes["Status"]
    assert (status.kind, status.statistic) == ("categorical", "js_distance")
    assert status.value > 0.5
    assert changes["Home"].value > 0.3
    assert changes["Home"].details["new_categories"] == ["lease"]
    assert changes["Home"].details["missing_categories"] == ["rent"]
    assert changes["Marital"].value < 0.02 and changes["Records"].value < 0.02


def test_diff_of_a_version_with_itself_is_empty(ws: keel.Workspace, credit: pd.DataFrame) -> None:
    ws.datasets.add("credit", credit)
    d = ws.datasets.diff("credit", "credit@1")
    assert not d.schema_changed and d.rows_delta == 0
    assert len(d.columns) == credit.shape[1]
    assert all(c.value == pytest.approx(0.0, abs=1e-12) for c in d.columns)


def test_diff_ignores_the_pandas_index(ws: keel.Workspace) -> None:
    ws.datasets.add("d", pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    ws.datasets.add("d", pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.Index(["a", "b", "c"], name="key")))
    d = ws.datasets.diff("d@1", "d@2")
    assert not d.schema_changed and [c.name for c in d.columns] == ["x"]


def test_diff_of_unknown_version_raises_not_found(ws: keel.Workspace) -> None:
    ws.datasets.add("d", pd.DataFrame({"x": [1]}))
    with pytest.raises(keel.NotFoundError, match="no version 2"):
        ws.datasets.diff("d@1", "d@2")


def test_diff_of_alias_reference_raises_invalid_input(ws: keel.Workspace) -> None:
    ws.datasets.add("d", pd.DataFrame({"x": [1]}))
    with pytest.raises(InvalidInputError):
        ws.datasets.diff("d@1", "d@prod")


def test_psi_is_zero_for_equal_histograms_and_grows_with_the_shift() -> None:
    base = np.array([10.0, 20, 40, 20, 10])
    small, large = np.array([12.0, 22, 36, 20, 10]), np.array([40.0, 30, 20, 8, 2])
    assert psi(base, base) == 0.0
    assert 0 < psi(base, small) < 0.1 < 0.25 < psi(base, large)
    assert psi(base, base * 3) == pytest.approx(0.0)  # counts, not proportions, may differ


def test_psi_stays_finite_when_a_bin_is_empty() -> None:
    assert np.isfinite(psi(np.array([10.0, 0.0]), np.array([5.0, 5.0])))


def test_js_distance_is_zero_for_equal_one_for_disjoint_and_symmetric() -> None:
    p, q = np.array([5.0, 5.0, 0.0]), np.array([0.0, 0.0, 9.0])
    assert js_distance(p, p * 2) == pytest.approx(0.0)
    assert js_distance(p, q) == pytest.approx(1.0)
    r = np.array([1.0, 3.0, 6.0])
    assert js_distance(p, r) == pytest.approx(js_distance(r, p)) and 0 < js_distance(p, r) < 1
