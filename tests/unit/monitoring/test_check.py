"""The statistics of a check as a pure function (keel.monitoring.check.compute_check): a window,
a reference profile and the settings in, values out; no workspace, no store."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from keel.entities import ModelVersion
from keel.monitoring.check import compute_check
from keel.monitoring.columns import AT, ERROR, ID, LABEL, PREDICTION, VERSION
from keel.monitoring.monitor_config import MonitorConfig
from keel.monitoring.profiles import ModelReference
from keel.monitoring.stats import build_profile

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
INFO = ModelVersion("m", 3, "sklearn", "sha256:0", 0, None, None, {}, {}, {}, "", None, ("d@1",), (), T0, "")


def _window(values: np.ndarray, *, errors: int = 0) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {
            ID: [f"{i:032x}" for i in range(n)],
            AT: pd.date_range(T0, periods=n, freq="s", tz="UTC"),
            VERSION: 3,
            ERROR: [None] * (n - errors) + ["bad input"] * errors,
            "a": values,
            PREDICTION: np.zeros(n),
            LABEL: [None] * n,
        }
    )


class _Calls:
    def __init__(self) -> None:
        self.model_reference = 0
        self.sample = 0

    def model_ref(self) -> ModelReference:
        self.model_reference += 1
        return ModelReference(outputs=build_profile(pd.DataFrame({PREDICTION: np.zeros(500)})))

    def reference_sample(self) -> pd.DataFrame:
        self.sample += 1
        return pd.DataFrame({"a": np.random.default_rng(1).normal(0, 1, 500)})


def _check(window: pd.DataFrame, config: MonitorConfig, calls: _Calls, ref: pd.DataFrame):  # type: ignore[no-untyped-def]
    return compute_check(
        window,
        ["a"],
        build_profile(ref),
        config,
        model="m",
        info=INFO,
        reference="d@1",
        model_reference=calls.model_ref,
        reference_sample=calls.reference_sample,
    )


def test_a_shifted_window_is_drift_and_every_value_is_computed_from_the_inputs_alone() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": np.where(rng.random(2000) < 0.05, np.nan, rng.normal(0, 1, 2000))})
    shifted = rng.normal(1.5, 1, 300)
    shifted[:60] = np.nan  # 20% missing against the reference's 5%
    calls = _Calls()
    found = _check(_window(shifted, errors=3), MonitorConfig(min_rows=100), calls, ref)
    values = {(f, m): v for f, m, v in found.values}
    assert found.drifted == ("a",) and found.summary["drifted_features"] == ["a"]
    assert values[("", "rows")] == 300 and values[("", "served_rows")] == 297
    assert values[("a", "drift")] == 1.0 and values[("a", "psi")] > 0.2
    assert values[("a", "missing_rate_increase")] == pytest.approx(values[("a", "missing_rate")] - 0.05, abs=0.02)
    assert values[("", "multivariate_auc")] > 0.7
    assert calls.model_reference == 1 and calls.sample == 1
    assert found.rows == 300 and found.labelled_rows == 0
    assert found.window_start == T0 and found.window_end is not None and found.window_end > T0


def test_a_window_below_min_rows_skips_drift_and_per_feature_quality_and_never_asks_for_the_model() -> None:
    ref = pd.DataFrame({"a": np.random.default_rng(0).normal(0, 1, 1000)})
    calls = _Calls()
    found = _check(_window(np.random.default_rng(2).normal(0, 1, 20)), MonitorConfig(min_rows=100), calls, ref)
    metrics = {m for _, m, _ in found.values}
    assert "psi" not in metrics and "missing_rate" not in metrics and "missing_rate_increase" not in metrics
    assert "schema_violation_rate" in metrics
    assert calls.model_reference == 0 and calls.sample == 0
    assert any(s.startswith("drift: 20 served rows") for s in found.summary["skipped"])
    assert any(s.startswith("data quality per feature: 20 rows") for s in found.summary["skipped"])
