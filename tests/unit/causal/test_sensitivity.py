"""The sensitivity sweep (Cinelli & Hazlett bounds) and the chunked bootstrap, on simulated data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from keel.causal import regression_adjustment
from keel.causal.bootstrap import bootstrap_chunk, bootstrap_interval, chunks
from keel.causal.sensitivity import GRID, sensitivity_sweep
from keel.errors import InvalidInputError


def data(n: int = 600, seed: int = 0, ate: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    y = ate * t + x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "t": t, "y": y})


@pytest.fixture(scope="module")
def estimate() -> object:
    return regression_adjustment(data(), "t", "y", ["x0", "x1"], n_boot=50)


def test_no_confounding_leaves_the_estimate_and_more_moves_it_towards_zero(estimate: object) -> None:
    sweep = sensitivity_sweep(estimate)  # type: ignore[arg-type]
    assert sweep.r2_treatment == GRID and sweep.r2_outcome == GRID
    assert sweep.adjusted[0][0] == pytest.approx(sweep.estimate)
    assert sweep.estimate > 0
    row = sweep.adjusted[3]  # r2 with the treatment 0.05: the bias grows with r2 with the outcome
    assert all(a > b for a, b in zip(row, row[1:], strict=False))
    column = [r[4] for r in sweep.adjusted]
    assert all(a > b for a, b in zip(column, column[1:], strict=False))
    assert all(
        lo <= v <= hi
        for lo_r, v_r, hi_r in zip(sweep.ci_low, sweep.adjusted, sweep.ci_high, strict=True)
        for lo, v, hi in zip(lo_r, v_r, hi_r, strict=True)
    )


def test_a_confounder_as_strong_as_the_robustness_value_moves_the_estimate_to_zero(estimate: object) -> None:
    sweep = sensitivity_sweep(estimate)  # type: ignore[arg-type]
    rv = sweep.robustness_value
    assert 0 < sweep.robustness_value_ci < rv < 1
    at_rv = sensitivity_sweep(estimate, grid=[rv])  # type: ignore[arg-type]
    assert at_rv.adjusted[0][0] == pytest.approx(0.0, abs=1e-9 * abs(sweep.estimate) + 1e-9)
    assert sweep.robustness_value_ci > max(GRID) and sweep.sign_flip_at is None  # no grid cell reaches 0
    weak = sensitivity_sweep(regression_adjustment(data(ate=0.2), "t", "y", ["x0", "x1"], n_boot=50))
    assert weak.sign_flip_at is not None and 0 < sum(weak.sign_flip_at) <= 2 * weak.robustness_value_ci + 0.1


def test_to_dict_is_plain_json_and_bad_grids_are_refused(estimate: object) -> None:
    out = sensitivity_sweep(estimate).to_dict()  # type: ignore[arg-type]
    assert json.loads(json.dumps(out)) == out
    assert set(out) >= {
        "estimate",
        "adjusted",
        "ci_low",
        "ci_high",
        "robustness_value",
        "robustness_value_ci",
        "method",
    }
    with pytest.raises(InvalidInputError, match=r"\[0, 1\)"):
        sensitivity_sweep(estimate, grid=[0.0, 1.0])  # type: ignore[arg-type]


def test_the_chunked_bootstrap_does_not_depend_on_the_split() -> None:
    frame = data(300)
    args = (frame, "t", "y", ["x0", "x1"])
    whole = bootstrap_chunk(*args, estimator="regression", estimand="ate", seed=3, start=0, count=40)
    parts = [
        v
        for start, count in chunks(40, 3)
        for v in bootstrap_chunk(*args, estimator="regression", estimand="ate", seed=3, start=start, count=count)
    ]
    assert parts == whole and len(chunks(40, 3)) == 3
    interval = bootstrap_interval(*args, parts, estimator="regression", estimand="ate", seed=3)
    assert interval.ci_low < interval.value < interval.ci_high and interval.n_boot == 40
    assert interval.ci_low < 1.0 < interval.ci_high and math.isfinite(interval.stderr)
    with pytest.raises(InvalidInputError, match="too few"):
        chunks(10, 2)
