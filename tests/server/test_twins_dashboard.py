"""The Twins pages over HTTP: the list (empty, before and after baselines), a twin page before and
after its baselines (the fit, the classic costs with error bars against the optimum, a simulated
trajectory per classic policy), a scored policy read from a stored 'evaluation' result, a seasonal
twin's factors, versions, and friendly 404s."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel.server.dashboard.base import num

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def poisson_history(n: int = 240, mean: int = 10) -> pd.DataFrame:
    """Poisson demand whose sample mean is exactly `mean` (so the fitted rate is exactly 10)."""
    for seed in range(5000):
        y = np.random.default_rng(seed).poisson(mean, size=n)
        if int(y.sum()) == mean * n:
            return pd.DataFrame({"week": np.arange(n), "units": y})
    raise AssertionError("no seed gave an exact mean")


@pytest.fixture
def rws(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("sales", poisson_history())
    return ws


@pytest.fixture
def client(rws: keel.Workspace) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(rws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def _page(client: Any, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:500])
    return response.text


def _specs(page: str) -> dict[str, dict[str, Any]]:
    """The chart specs a page hands to dashboard.js, by canvas id."""
    return {
        i: json.loads(html.unescape(s)) for i, s in re.findall(r"<canvas id=\"([^\"]+)\" data-spec='([^']*)'", page)
    }


def _twin(ws: keel.Workspace) -> Any:
    return ws.rl.twin("shop", "sales@1", demand_column="units", time_column="week", costs={"holding": 1, "penalty": 9})


def test_the_list_shows_every_twin_with_its_best_classic_cost_and_optimum(client: Any, rws: keel.Workspace) -> None:
    empty = _page(client, "/twins")
    assert 'id="no-twins"' in empty and "keel rl twin NAME DATASET@V --demand COLUMN" in empty
    assert '<a href="/twins" class="active" aria-current="page">Twins</a>' in empty  # the nav link

    twin = _twin(rws)
    before = _page(client, "/twins")
    row = re.search(r'<tr data-twin="shop">(.*?)</tr>', before, re.S)
    assert row is not None
    assert 'href="/twins/shop"' in row[1] and 'href="/datasets/sales/1"' in row[1]
    assert "poisson, rate 10" in row[1] and "holding 1 · penalty 9" in row[1]
    assert "keel rl baselines shop" in row[1]

    baselines, optimum = rws.rl.baselines(twin, periods=200, copies=32)
    after = re.search(r'<tr data-twin="shop">(.*?)</tr>', _page(client, "/twins"), re.S)
    assert after is not None and "keel rl baselines" not in after[1]
    best = baselines.payload["best"]
    assert (
        f'{num(baselines.payload["classic"][best]["evaluation"]["cost"])} <span class="muted">{best}</span>' in after[1]
    )
    assert num(optimum.payload["cost"]) in after[1] and optimum.payload["cost"] == pytest.approx(9.953, abs=5e-4)


def test_a_twin_page_before_baselines_shows_the_system_the_fit_and_what_to_run(
    client: Any, rws: keel.Workspace
) -> None:
    _twin(rws)
    page = _page(client, "/twins/shop")
    assert '<h1>shop <span class="muted">v1</span></h1>' in page
    assert "2 period(s)" in page and "backordered" in page and "240 periods, mean 10, max" in page
    families = re.findall(r'<tr(?: class="is-champion")? data-family="([^"]+)">', page)
    assert sorted(families) == ["empirical", "negbin", "poisson"]  # the fit's candidates
    assert '<tr class="is-champion" data-family="poisson">' in page and "AIC" in page
    for section in ("no-baselines", "no-trajectory", "no-policies"):
        assert f'id="{section}"' in page, section
    assert "keel rl baselines shop@1" in page
    assert _specs(page) == {}  # Poisson demand, not seasonal: no chart yet


def test_a_twin_page_after_baselines_plots_the_costs_against_the_optimum_and_the_trajectories(
    client: Any, rws: keel.Workspace
) -> None:
    twin = _twin(rws)
    baselines, optimum = rws.rl.baselines(twin, periods=200, copies=32)
    classic, best = baselines.payload["classic"], baselines.payload["best"]
    page = _page(client, "/twins/shop")
    assert 'id="no-baselines"' not in page and 'id="no-trajectory"' not in page
    svg = re.search(r'<svg class="interval-plot twin-costs".*?</svg>', page, re.S)
    assert svg is not None
    bars = re.findall(
        r'data-family="([^"]+)">.*?<line x1="([\d.]+)" x2="([\d.]+)".*?<circle cx="([\d.]+)"', svg[0], re.S
    )
    assert {b[0] for b in bars} == set(classic)
    optimum_x = float(re.findall(r'class="zero optimum" x1="([\d.]+)"', svg[0])[0])
    for family, lo, hi, x in bars:  # each cost sits inside its error bar, on the optimum's side it lies
        assert float(lo) < float(x) < float(hi), family
        assert (float(x) > optimum_x) == (classic[family]["evaluation"]["cost"] > optimum.payload["cost"]), family
    gap = classic["base-stock"]["gap"]
    assert f"{100 * gap:+.2f}%" in page and f"<strong>{num(optimum.payload['cost'])}</strong>" in page

    charts = _specs(page)
    paths = [charts[f"trajectory-{i}"] for i in range(1, len(classic) + 1)]
    assert paths[0]["title"] == f"{best} (best classic)"
    assert sorted(p["title"] for p in paths[1:]) == sorted(set(classic) - {best})
    for spec in paths:
        assert [d["label"] for d in spec["datasets"]] == ["stock (on hand − backlog)", "orders", "demand"]
        assert all(len(d["points"]) == 52 for d in spec["datasets"])
    assert len({json.dumps(p["datasets"][2]["points"]) for p in paths}) == 1  # the same demand for every policy


def test_a_scored_policy_shows_its_difference_gap_and_learning_curve(client: Any, rws: keel.Workspace) -> None:
    twin = _twin(rws)
    baselines, optimum = rws.rl.baselines(twin, periods=200, copies=32)
    best = baselines.payload["best"]
    best_eval = baselines.payload["classic"][best]["evaluation"]
    evaluation = {**best_eval, "cost": 10.12, "se": 0.03}
    rws.rl.records.add_result(
        twin,
        "evaluation",
        {
            "model": "shop-policy@2",
            "policy": {"kind": "ppo", "action": "order_up_to", "steps": 200000, "seed": 0},
            "evaluation": evaluation,
            "baseline": {"family": best, "evaluation": best_eval},
            "difference": {"value": -0.0312, "se": 0.0101},
            "gap": 0.0168,
            "learning_curve": [[0, 25.0], [50000, 12.5], [100000, 10.6], [200000, 10.12]],
            "run": None,
        },
    )
    page = _page(client, "/twins/shop")
    row = re.search(r'<tr data-result="\d+">(.*?)</tr>', page, re.S)
    assert row is not None and 'id="no-policies"' not in page
    assert '<a href="/models/shop-policy">shop-policy@2</a>' in row[1]
    assert '10.12 <span class="muted">± 0.03</span>' in row[1]
    assert '-0.0312 <span class="muted">± 0.0101</span>' in row[1] and "+1.68%" in row[1]
    assert "ppo · order_up_to" in row[1] and "200,000 steps" in row[1]
    curve = _specs(page)["learning-curve-1"]
    assert curve["xTitle"] == "training steps"
    policy, classic, opt = curve["datasets"]
    assert policy["points"] == [[0.0, 25.0], [50000.0, 12.5], [100000.0, 10.6], [200000.0, 10.12]]
    assert classic["label"] == f"best classic ({best})"
    assert classic["points"] == [[0.0, best_eval["cost"]], [200000.0, best_eval["cost"]]]
    assert opt["points"] == [[0.0, optimum.payload["cost"]], [200000.0, optimum.payload["cost"]]]


def test_a_seasonal_twin_shows_its_factors_and_versions_are_browsable(client: Any, rws: keel.Workspace) -> None:
    t = np.arange(120)
    units = np.random.default_rng(0).poisson(20 * (1 + 0.5 * np.sin(2 * np.pi * t / 12)))
    rws.datasets.add("seasonal", pd.DataFrame({"month": t, "units": units}))
    first = rws.rl.twin("shop", "seasonal@1", demand_column="units", time_column="month", season=12)
    assert first.spec["fit"]["seasonal"]
    _twin(rws)  # shop@2: the Poisson history
    page = _page(client, "/twins/shop?version=1")
    factors = _specs(page)["seasonal-factors"]
    assert factors["labels"] == [str(i) for i in range(1, 13)]
    assert factors["datasets"][0]["data"] == pytest.approx(first.spec["fit"]["seasonal_factors"])
    assert '<strong>v1</strong> <a href="/twins/shop?version=2">v2</a>' in page
    latest = _page(client, "/twins/shop")
    assert "seasonal-factors" not in latest and '<a href="/twins/shop?version=1">v1</a> <strong>v2</strong>' in latest


def test_unknown_twins_and_versions_are_friendly_404s(client: Any, rws: keel.Workspace) -> None:
    _twin(rws)
    for url in ("/twins/nope", "/twins/shop?version=7"):
        response = client.get(url)
        assert response.status_code == 404 and "<nav" in response.text, url
