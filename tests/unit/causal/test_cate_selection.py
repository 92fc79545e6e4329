"""CATE model selection by the one-standard-error rule: near-ties go to the simpler base model."""

from __future__ import annotations

import numpy as np

from keel.causal.cate import _within_one_se, estimate_cate

from .test_cate import simulate


def test_within_one_se_keeps_the_candidates_the_data_cannot_tell_apart() -> None:
    rng = np.random.default_rng(0)
    shared = rng.exponential(size=5_000)  # the noise every candidate pays on the same rows
    wobble = np.where(np.arange(5_000) % 2 == 0, 0.05, -0.05)  # paired SE of a difference: 0.0007
    near = {"best": shared, "tied": shared + 0.0005 + wobble, "worse": shared + 0.05 + wobble}
    assert _within_one_se(near) == ("best", "tied")


def test_worst_seed_of_the_bench_no_longer_takes_the_noisier_learner() -> None:
    # Seed 3 of bench/causal.py's CATE section: the bare minimum R-loss took X/lgbm (sqrt PEHE 0.304)
    # by 0.0002 over X/ridge_poly2 (0.154); the one-standard-error rule takes the simpler model.
    X, t, y, tau = simulate(10_000, 3)
    res = estimate_cate(X, t, y, learners=("X",), seed=3)
    assert set(res.near_best) == {"X/ridge_poly2", "X/lgbm"}
    assert res.model == "ridge_poly2"
    assert float(np.sqrt(np.mean((res.cate - tau) ** 2))) < 0.25
