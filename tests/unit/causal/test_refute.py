"""Refutation on simulated data with a known effect: a correct adjustment is robust, the same data with
a confounder left out is not; the caller's frame is untouched and a seed gives the same numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.causal.refute import Check, Refutation, _verdict, refute, robustness_value
from keel.errors import InvalidInputError

CHECKS = [
    "placebo_treatment",
    "random_common_cause",
    "data_subsets",
    "dummy_outcome",
    "sensitivity",
    "overlap",
    "estimator_agreement",
]
FAST = ("regression", "ipw", "aipw")  # dml is slower and adds nothing to these assertions


def confounded(seed: int, n: int = 1000, ate: float = 1.5) -> pd.DataFrame:
    """x1 raises the chance of treatment and lowers the outcome: leaving it out hides the effect."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    treat = rng.random(n) < 1 / (1 + np.exp(-(0.5 * x[:, 0] + 0.6 * x[:, 1])))
    y = ate * treat + 1.0 * x[:, 0] - 3.0 * x[:, 1] + 0.5 * x[:, 2] + rng.normal(size=n)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "t": treat.astype(int), "y": y})


@pytest.mark.parametrize("seed", [0, 1])
def test_a_correct_adjustment_is_robust_and_a_dropped_confounder_is_not(seed: int) -> None:
    data = confounded(seed)
    before = data.copy()
    clean = refute(data, "t", "y", ["x0", "x1", "x2"], seed=seed, agreement=FAST)
    assert [c.name for c in clean.checks] == CHECKS
    assert clean.verdict == "robust" and clean.robust, clean.reasons
    assert clean.estimate.covers(1.5)
    assert clean.reasons[0].startswith("every check holds")

    dropped = refute(data, "t", "y", ["x0", "x2"], seed=seed, agreement=FAST)
    assert dropped.verdict in ("fragile", "failed"), dropped.checks
    assert not dropped.estimate.covers(1.5)  # the estimate really is wrong
    failing = {c.name for c in dropped.checks if not c.passed}
    assert "sensitivity" in failing
    assert any("unobserved confounder" in reason for reason in dropped.reasons)
    pd.testing.assert_frame_equal(data, before)  # no check touched the caller's frame


def test_the_same_seed_gives_the_same_refutation_and_another_seed_other_draws() -> None:
    data = confounded(3, n=600)
    first = refute(data, "t", "y", ["x0", "x1", "x2"], seed=7, agreement=("aipw",), n_subsets=3)
    again = refute(data, "t", "y", ["x0", "x1", "x2"], seed=7, agreement=("aipw",), n_subsets=3)
    other = refute(data, "t", "y", ["x0", "x1", "x2"], seed=8, agreement=("aipw",), n_subsets=3)
    assert isinstance(first, Refutation) and all(isinstance(c, Check) for c in first.checks)
    assert first.checks == again.checks and first.verdict == again.verdict
    assert first.checks[0].value != other.checks[0].value  # the placebo permutations follow the seed


def test_the_verdict_grades_the_failing_checks() -> None:
    held = [Check(name, True, 0.0, "holds") for name in CHECKS]
    assert _verdict(held) == ("robust", ("every check holds: " + ", ".join(n.replace("_", " ") for n in CHECKS),))
    subsets = [Check(c.name, c.name != "data_subsets", c.value, "moves") for c in held]
    assert _verdict(subsets) == ("fragile", ("data subsets: moves",))
    # An effect of a permuted treatment means the pipeline invents effects: failed, not fragile.
    placebo = [Check(c.name, c.name not in ("placebo_treatment", "overlap"), c.value, "no") for c in held]
    verdict, reasons = _verdict(placebo)
    assert verdict == "failed" and len(reasons) == 2


def test_robustness_value_matches_cinelli_hazlett() -> None:
    # f = t / sqrt(dof) = 1: RV = (sqrt(5) - 1) / 2.
    assert robustness_value(10.0, 100) == pytest.approx((5**0.5 - 1) / 2)
    assert robustness_value(1.0, 100, alpha=0.05) == 0.0  # the interval already covers 0
    assert 0 < robustness_value(10.0, 100, alpha=0.05) < robustness_value(10.0, 100)


@pytest.mark.parametrize(
    ("kwargs", "contains"),
    [
        ({"estimator": "matching"}, "Unknown estimator"),
        ({"n_placebo": 0}, "at least 1"),
        ({"subset_fraction": 1.0}, "subset_fraction"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs: dict[str, object], contains: str) -> None:
    with pytest.raises(InvalidInputError, match=contains):
        refute(confounded(0, n=200), "t", "y", ["x0"], **kwargs)  # type: ignore[arg-type]
