"""CATE meta-learners on the issue's simulated DGP with known heterogeneous effects."""

from __future__ import annotations

import numpy as np
import pytest

from keel.causal.cate import estimate_cate
from keel.errors import InvalidInputError


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """X ~ N(0, I_10), propensity logistic in X0 and X1, tau(X) = 1 + X0 + 0.5 X1^2."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    e = 1 / (1 + np.exp(-(0.8 * X[:, 0] - 0.6 * X[:, 1])))
    t = (rng.random(n) < e).astype(int)
    tau = 1 + X[:, 0] + 0.5 * X[:, 1] ** 2
    baseline = np.sin(X[:, 2]) + 0.5 * X[:, 0] + np.maximum(X[:, 3], 0) + 0.5 * X[:, 1]
    return X, t, baseline + tau * t + rng.normal(size=n), tau


def test_pehe_and_ate_coverage_on_the_simulated_dgp() -> None:
    covered, pehes = 0, []
    for seed in range(3):
        X, t, y, tau = simulate(2_000, seed)
        res = estimate_cate(X, t, y, n_folds=3, seed=seed)
        pehes.append(float(np.sqrt(np.mean((res.cate - tau) ** 2))))
        covered += res.ate_interval[0] <= tau.mean() <= res.ate_interval[1]
        assert res.learner in ("T", "S", "X", "DR") and f"{res.learner}/{res.model}" in res.scores
        best = min(res.scores, key=res.scores.__getitem__)  # the one-standard-error rule picks among the near-best
        assert best in res.near_best and f"{res.learner}/{res.model}" in res.near_best
        assert len(res.scores) == 8 and set(res.nuisance) == {"mu0", "mu1", "propensity"}
        assert res.n_clipped == 0 and 0 < res.propensity_range[0] < res.propensity_range[1] < 1
    assert max(pehes) < 0.6, pehes
    assert covered >= 2, covered


def test_predict_on_new_rows_and_determinism() -> None:
    X, t, y, tau = simulate(600, 5)
    a = estimate_cate(X, t, y, learners=("T", "DR"), n_folds=3, seed=5, selection="dr")
    b = estimate_cate(X, t, y, learners=("T", "DR"), n_folds=3, seed=5, selection="dr")
    assert a.ate == b.ate and np.array_equal(a.cate, b.cate) and a.scores == b.scores
    new = simulate(100, 6)[0]
    assert a.predict(new).shape == (100,)
    assert np.allclose(a.predict(X), a.cate)
    assert a.selection == "dr" and a.scores == a.dr_score


@pytest.mark.parametrize(
    ("t_values", "y_values", "kwargs", "message"),
    [
        ("multi", "ok", {}, "binary treatment"),
        ("constant", "ok", {}, "needs variation"),
        ("ok", "nan", {}, "missing or infinite"),
        ("ok", "ok", {"learners": ("Z",)}, "unknown learner"),
        ("ok", "ok", {"propensity_bounds": (0.9, 0.1)}, "propensity_bounds"),
    ],
)
def test_bad_inputs_raise_a_clear_error(t_values: str, y_values: str, kwargs: dict[str, object], message: str) -> None:
    X, t, y, _ = simulate(200, 0)
    if t_values == "multi":
        t = t * 2 + (X[:, 0] > 1)
    elif t_values == "constant":
        t = np.ones_like(t)
    if y_values == "nan":
        y = y.copy()
        y[3] = np.nan
    with pytest.raises(InvalidInputError, match=message):
        estimate_cate(X, t, y, **kwargs)  # type: ignore[arg-type]
