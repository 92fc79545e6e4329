"""Uplift and Qini curves: the true CATE targets better than random, a useless score does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keel.causal import uplift_curve
from keel.errors import InvalidInputError


def experiment(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A randomised experiment whose effect is tau(x) = 2 x (positive for half the units)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.integers(0, 2, n)
    tau = 2 * x
    return tau, t, x + tau * t + rng.normal(size=n)


def test_true_cate_beats_random_targeting() -> None:
    tau, t, y = experiment(4000, 0)
    curve = uplift_curve(tau, t, y)
    assert curve.method == "outcomes" and curve.n == 4000
    assert len(curve.shares) == len(curve.uplift) == len(curve.qini) == 101
    assert curve.shares[0] == 0.0 and curve.shares[-1] == 1.0 and curve.uplift[0] == 0.0
    assert curve.auuc_lift > 0.4 and curve.qini_coefficient > 0.2  # Qini counts the treated half only
    # The best share to target is about half (the units with a positive effect): E[2x | x > 0] / 2 = 0.8.
    peak = int(np.argmax(curve.uplift))
    assert 0.4 <= curve.shares[peak] <= 0.6 and curve.uplift[peak] == pytest.approx(0.8, abs=0.15)
    json.dumps(curve.to_dict())


def test_random_score_is_about_random_and_reversed_is_worse() -> None:
    tau, t, y = experiment(4000, 1)
    noise = np.random.default_rng(9).normal(size=tau.size)
    assert abs(uplift_curve(noise, t, y).qini_coefficient) < 0.1
    assert uplift_curve(-tau, t, y).qini_coefficient < -0.2


def test_dr_scores_give_the_same_picture() -> None:
    tau, t, y = experiment(4000, 2)
    psi = tau + np.random.default_rng(3).normal(size=tau.size)  # noisy unbiased per-unit effects
    curve = uplift_curve(tau, dr_scores=psi)
    assert curve.method == "dr_scores" and curve.uplift == curve.qini
    assert curve.uplift[-1] == pytest.approx(float(psi.mean()))
    assert curve.auuc_lift > 0.3


def test_one_action_versus_the_baseline() -> None:
    tau, t, y = experiment(3000, 4)
    t3 = np.where(np.arange(t.size) % 5 == 0, 2, t)  # a third action, left out
    curve = uplift_curve(tau, t3, y, treated=1, control=0)
    assert curve.n == int(np.sum(t3 != 2)) and curve.auuc_lift > 0.2


def test_bad_input() -> None:
    tau, t, y = experiment(100, 5)
    with pytest.raises(InvalidInputError, match="missing or infinite"):
        uplift_curve(tau, t, np.where(np.arange(100) == 3, np.nan, y))
    with pytest.raises(InvalidInputError, match="length"):
        uplift_curve(tau[:50], t, y)
    with pytest.raises(InvalidInputError, match="found 100 and 0"):
        uplift_curve(tau, np.ones(100), y)
    with pytest.raises(InvalidInputError, match="not both"):
        uplift_curve(tau, t, y, dr_scores=tau)
    with pytest.raises(InvalidInputError, match="needs treatment"):
        uplift_curve(tau)
