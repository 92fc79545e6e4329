"""What-if answers against the exact answer of a simulated structural model (same noise, true equations)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from keel.causal.whatif import fit_scm
from keel.errors import InvalidInputError

GRAPH = {"z": [], "x": ["z"], "m": ["x", "z"], "y": ["m", "z"]}


def _simulate(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    noise = {k: rng.normal(size=n) for k in ("z", "x", "m", "y")}
    return _push(noise, None), noise


def _push(noise: dict[str, np.ndarray], scale_x: float | None) -> dict[str, np.ndarray]:
    """The true equations; `scale_x` applies do(x := scale * natural x)."""
    z = noise["z"]
    x = 1 + 0.8 * z + noise["x"]
    if scale_x is not None:
        x = scale_x * x
    m = 0.5 * x + 0.3 * z**2 + 0.5 * noise["m"]
    y = 2 * m - z + noise["y"]
    return {"z": z, "x": x, "m": m, "y": y}


@pytest.mark.parametrize("kind", ["counterfactual", "interventional"])
def test_what_if_matches_the_exact_answer_and_covers_it(kind: str) -> None:
    errors, covered = [], 0
    for seed in range(4):
        data, noise = _simulate(2_000, seed)
        truth = float(np.mean(_push(noise, 1.5)["y"] - data["y"]))
        scm = fit_scm(data, GRAPH, n_resamples=30, seed=seed)
        res = scm.what_if({"x": "*1.5"}, "y", kind=kind)  # type: ignore[arg-type]
        errors.append(abs(res.mean_effect - truth) / abs(truth))
        covered += res.interval[0] <= truth <= res.interval[1]
        assert res.n_resamples == 30 and res.intervene == {"x": "scaled by 1.5"}
    assert np.median(errors) < 0.1, (errors, covered)  # n = 2,000: a few standard errors is ~5 %
    assert covered >= 3, (covered, errors)


def test_counterfactual_rows_follow_the_same_noise() -> None:
    data, noise = _simulate(2_000, 7)
    scm = fit_scm(data, GRAPH, n_resamples=0, seed=7)
    res = scm.what_if({"x": "+1"}, "y", kind="counterfactual")
    truth = data["y"] + 2 * 0.5 * 1.0  # y moves by 2 * 0.5 per unit of x for every unit
    assert res.values is not None and res.effects is not None
    assert np.sqrt(np.mean((res.values - truth) ** 2)) < 0.1
    assert res.mean_effect == pytest.approx(1.0, abs=0.05)


def test_set_and_function_interventions_and_speed() -> None:
    data, _ = _simulate(10_000, 1)
    scm = fit_scm(data, GRAPH, mechanism="linear", n_resamples=50, seed=1)
    start = time.perf_counter()
    res = scm.what_if({"x": 3.0}, "y", kind="counterfactual")
    assert time.perf_counter() - start < 1.0
    assert res.values is not None and len(res.values) == 10_000
    doubled = scm.what_if({"x": lambda v: 2 * v}, "y", kind="counterfactual")
    shifted = scm.what_if({"x": "+1.8"}, "y", kind="counterfactual")  # mean x is 1.0: 2x ~ x + 1 on average
    assert doubled.mean_effect == pytest.approx(np.mean(data["x"]), rel=0.1)
    assert shifted.mean_effect == pytest.approx(1.8, rel=0.1)
    assert scm.mechanisms["z"] == "root"


def test_same_seed_same_answer() -> None:
    data, _ = _simulate(1_000, 3)
    a = fit_scm(data, GRAPH, n_resamples=10, seed=3).what_if({"x": "*1.1"}, "y")
    b = fit_scm(data, GRAPH, n_resamples=10, seed=3).what_if({"x": "*1.1"}, "y")
    assert (a.mean_effect, a.interval) == (b.mean_effect, b.interval)


@pytest.mark.parametrize(
    ("graph", "intervene", "outcome", "message"),
    [
        (GRAPH, {"w": 1.0}, "y", "unknown node"),
        (GRAPH, {"x": 1.0}, "nope", "unknown node"),
        ({"x": ["y"], "y": ["x"]}, {"x": 1.0}, "y", "cycle"),
        (GRAPH, {"y": 1.0}, "x", "not downstream"),
        ({**GRAPH, "q": ["x"]}, {"x": 1.0}, "y", "not columns"),
        (GRAPH, {"x": "times two"}, "y", "must be a number"),
    ],
)
def test_bad_inputs_raise_one_clear_error(
    graph: dict[str, list[str]], intervene: dict[str, object], outcome: str, message: str
) -> None:
    data, _ = _simulate(200, 0)
    with pytest.raises(InvalidInputError, match=message):
        fit_scm(data, graph, n_resamples=0).what_if(intervene, outcome)  # type: ignore[arg-type]
