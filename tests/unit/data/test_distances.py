"""psi and js_distance have one home (keel.data.distances): the dataset diff and the monitors'
drift numerics use it, and it gives the numbers both gave before they were merged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import keel.data
import keel.data.diff
import keel.monitoring._drift
from keel.data.distances import js_distance, psi


def _old_diff_psi(expected: np.ndarray, actual: np.ndarray) -> float:  # keel.data.diff.psi, as it was
    e = np.clip(expected / max(expected.sum(), 1), 1e-4, None)
    a = np.clip(actual / max(actual.sum(), 1), 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _old_js(p: np.ndarray, q: np.ndarray) -> float:  # both copies, as they were
    p = p / max(p.sum(), 1)
    q = q / max(q.sum(), 1)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.5 * (kl_p + kl_q), 0.0)))


def test_both_callers_use_the_one_home() -> None:
    assert keel.data.psi is psi and keel.data.js_distance is js_distance
    assert keel.data.diff.psi is psi and keel.data.diff.js_distance is js_distance
    assert keel.monitoring._drift.psi is psi and keel.monitoring._drift.js_distance is js_distance


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_the_numbers_are_those_of_before(dtype: type) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        size = int(rng.integers(2, 30))
        a = rng.integers(0, 50, size).astype(dtype)
        b = rng.integers(0, 50, size).astype(dtype)
        b[rng.integers(0, size)] = 0  # an empty bin: the floor matters
        assert psi(a, b) == _old_diff_psi(a, b)
        assert js_distance(a, b) == _old_js(a, b)
    assert psi(np.zeros(3), np.zeros(3)) == 0.0 and js_distance(np.zeros(3), np.zeros(3)) == 0.0


def test_a_dataset_diff_and_a_monitor_agree_on_the_same_counts() -> None:
    a, b = ["x"] * 60 + ["y"] * 40, ["x"] * 30 + ["y"] * 70
    expected = _old_js(np.array([60, 40]), np.array([30, 70]))
    change = next(c for c in keel.data.diff.diff_tables("d@1", pa.table({"c": a}), "d@2", pa.table({"c": b})).columns)
    assert change.statistic == "js_distance" and change.value == pytest.approx(expected, rel=1e-12)
    profile = keel.monitoring._drift.categorical_profile(pd.Series(a), max_categories=50)
    window = keel.monitoring._drift.categorical_distances(profile, pd.Series(b))
    assert window["js_distance"] == pytest.approx(expected, rel=1e-12)
    assert window["psi"] == pytest.approx(_old_diff_psi(np.array([60, 40, 0]), np.array([30, 70, 0])), rel=1e-12)
