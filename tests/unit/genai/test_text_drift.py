"""text_drift on synthetic Gaussian "embeddings" (384 dims, the MiniLM width), where the truth is known.

Statistical tolerances are stated where a random outcome is asserted; the seeds are fixed, so each
test is deterministic, and the bounds are ones a correct method passes with the probability given.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keel.errors import InvalidInputError
from keel.genai.text_drift import DEFAULT_THRESHOLDS, LengthStats, TextDrift, length_stats, text_drift

D = 384


def _pair(seed: int, n: int, shift: float = 0.0, dims: int = D) -> tuple[np.ndarray, np.ndarray]:
    """Two samples of N(0, I); `current` shifted by `shift` standard deviations in its first `dims` coordinates."""
    rng = np.random.default_rng(seed)
    reference = rng.standard_normal((n, D))
    current = rng.standard_normal((n, D))
    current[:, :dims] += shift
    return reference, current


@pytest.mark.parametrize("method", ["mmd", "classifier"])
def test_same_distribution_is_not_flagged(method: str) -> None:
    results = [text_drift(*_pair(100 + s, 400), method=method, seed=s) for s in range(20)]
    # The verdict: at most 1 of 20 (the brief's >= 95 %). With the effect-size threshold, a false
    # alarm needs a null effect size at the threshold, which is several standard errors away, so
    # the honest bound is tighter still: every null effect size stays below 60 % of the threshold.
    assert sum(r.drifted for r in results) <= 1
    assert max(r.effect_size for r in results) < 0.6 * DEFAULT_THRESHOLDS[method]
    # The p-value alone is calibrated: significant at 5 % in Binomial(20, 0.05) of the seeds, so 5 or
    # more would happen with probability 0.003 for a valid test.
    assert sum(r.p_value < 0.05 for r in results) <= 4


@pytest.mark.parametrize("method", ["mmd", "classifier"])
def test_moderate_mean_shift_is_flagged_in_every_seed(method: str) -> None:
    # A quarter of a standard deviation in every coordinate: MMD effect about 0.19, classifier about 1.0.
    results = [text_drift(*_pair(200 + s, 300, shift=0.25), method=method, seed=s) for s in range(20)]
    assert all(r.drifted for r in results)
    assert all(r.p_value < 0.01 for r in results)


def test_mmd_statistic_matches_the_textbook_formula() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 6)), rng.standard_normal((30, 6)) + 0.3
    z = np.vstack([x, y])
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / np.median(d2[np.triu_indices(70, k=1)]))
    kxx, kyy, kxy = k[:40, :40], k[40:, 40:], k[:40, 40:]
    within_x = (kxx.sum() - 40) / (40 * 39)
    within_y = (kyy.sum() - 30) / (30 * 29)
    mmd2 = within_x + within_y - 2 * kxy.mean()
    r = text_drift(x, y, seed=0)
    assert r.statistic == pytest.approx(mmd2, rel=1e-9)
    assert r.effect_size == pytest.approx(np.sqrt(mmd2 / (1 - (within_x + within_y) / 2)), rel=1e-9)


def test_mmd_effect_size_is_a_kernel_cohens_d() -> None:
    # For an isotropic shift of delta standard deviations the kernel d is close to delta / sqrt(2)
    # (derived for the median-heuristic RBF kernel in 384 dims; within 15 % measured).
    for delta in (0.1, 0.2, 0.3):
        r = text_drift(*_pair(7, 500, shift=delta), seed=0)
        assert r.effect_size == pytest.approx(delta / np.sqrt(2), rel=0.15)
    # ...and it does not grow with the sample, unlike the evidence against the null.
    small, large = (text_drift(*_pair(8, n, shift=0.1), seed=0) for n in (300, 1000))
    assert small.effect_size == pytest.approx(large.effect_size, abs=0.02)


def test_tiny_shift_on_a_large_sample_is_significant_but_not_drift_mmd() -> None:
    for s in range(2):
        r = text_drift(*_pair(300 + s, 1500, shift=0.03), method="mmd", seed=s)
        assert r.p_value < 0.01  # real and detected...
        assert r.effect_size < 0.05  # ...but a fraction of the threshold 0.1
        assert not r.drifted
        assert "below the threshold" in r.reason and "although p" in r.reason


def test_tiny_shift_on_a_large_sample_is_significant_but_not_drift_classifier() -> None:
    # 0.3 standard deviations along one of 384 directions: the best possible AUC is
    # Phi(0.3 / sqrt(2)) = 0.584 (effect 0.17); a fitted classifier measured 0.525-0.552.
    for s in range(3):
        r = text_drift(*_pair(400 + s, 2000, shift=0.3, dims=1), method="classifier", seed=s)
        assert r.p_value < 0.05
        assert 0.5 < r.statistic < 0.584
        assert not r.drifted


def test_both_methods_agree_on_clear_cases() -> None:
    for seed, shift, expected in ((11, 0.0, False), (12, 0.5, True), (13, 0.0, False), (14, 0.3, True)):
        reference, current = _pair(seed, 300, shift=shift)
        verdicts = {m: text_drift(reference, current, method=m, seed=seed).drifted for m in ("mmd", "classifier")}
        assert verdicts == {"mmd": expected, "classifier": expected}


def test_result_fields_and_determinism() -> None:
    reference, current = _pair(21, 300, shift=0.5)
    a = text_drift(reference, current, method="classifier", seed=3, permutations=99)
    b = text_drift(reference, current, method="classifier", seed=3, permutations=99)
    assert a == b
    assert isinstance(a, TextDrift)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.drifted = False  # type: ignore[misc]
    assert a.effect_size == pytest.approx(2 * abs(a.statistic - 0.5))
    assert a.p_value == pytest.approx(1 / 100)  # nothing in 99 permutations beats a clear shift
    assert (a.n_reference, a.n_current, a.threshold, a.alpha) == (300, 300, 0.2, 0.05)
    assert a.reason.startswith("Drifted:") and a.reason.count(".") >= 1


def test_subsampling_caps_the_rows_and_threshold_overrides() -> None:
    reference, current = _pair(31, 600, shift=0.25)
    r = text_drift(reference, current[:150], max_rows=200, seed=0)
    assert (r.n_reference, r.n_current) == (200, 150)
    strict = text_drift(reference, current[:150], max_rows=200, seed=0, threshold=5.0)
    assert strict.p_value < 0.05 and not strict.drifted  # same evidence, higher bar
    assert strict.statistic == r.statistic


def test_unequal_sizes_and_normalised_embeddings() -> None:
    # Sentence embedders return unit vectors; the median heuristic adapts to that scale.
    rng = np.random.default_rng(41)
    reference = rng.standard_normal((500, D))
    current = rng.standard_normal((200, D))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    assert not text_drift(unit(reference), unit(current)).drifted
    assert text_drift(unit(reference), unit(current + 0.4)).drifted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "ks"}, "not one of"),
        ({"permutations": 5}, "permutations"),
        ({"alpha": 1.5}, "alpha"),
        ({"threshold": -1.0}, "threshold"),
        ({"max_rows": 3}, "max_rows"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    reference, current = _pair(0, 20)
    with pytest.raises(InvalidInputError, match=message):
        text_drift(reference, current, **kwargs)  # type: ignore[arg-type]


def test_bad_arrays_say_what_is_wrong() -> None:
    reference, current = _pair(0, 20)
    with pytest.raises(InvalidInputError, match="same model"):
        text_drift(reference, current[:, :10])
    with pytest.raises(InvalidInputError, match="2-D"):
        text_drift(reference[0], current)
    with pytest.raises(InvalidInputError, match="at least 10"):
        text_drift(reference, current[:5])
    bad = current.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        text_drift(reference, bad)


def test_length_stats() -> None:
    stats = length_stats(["a b c", "hello", "", "one two three four five six"])
    assert stats == LengthStats(
        n=4,
        mean_chars=(5 + 5 + 0 + 27) / 4,
        mean_tokens=(3 + 1 + 0 + 6) / 4,
        median_tokens=2.0,
        p95_tokens=float(np.percentile([3, 1, 0, 6], 95)),
        max_tokens=6,
    )
    assert length_stats([]).n == 0
    with pytest.raises(InvalidInputError, match="wrap it"):
        length_stats("just one string")
