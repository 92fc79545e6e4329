"""The dashboard in a real headless Chromium: pages load cleanly, charts draw, nav works, and an
admin moves the champion alias with the model page's buttons.

The app is served by uvicorn in a thread on 127.0.0.1 (port 0); Playwright drives the Debian
/usr/bin/chromium (see RECIPES.md), so no browser download is needed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browsertools import CHROMIUM, CHROMIUM_ARGS, chromium_problem

import keel
from keel import Settings
from keel.server import create_app

_PROBLEM = chromium_problem()
if _PROBLEM:
    print(f"\nskipping the dashboard browser tests: {_PROBLEM}")
    pytest.skip(_PROBLEM, allow_module_level=True)

from liveserver import live_server  # noqa: E402
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright  # noqa: E402


def _fixtures() -> Any:
    """test_dashboard.py's workspace builder, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_dashboard_fixtures", Path(__file__).with_name("test_dashboard.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_F = _fixtures()
MODEL = _F.MODEL


class Site:
    def __init__(self, url: str, info: dict[str, Any], admin: str, ws: keel.Workspace) -> None:
        self.url, self.info, self.admin, self.ws = url, info, admin, ws


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("dashboard-browser") / "ws"
    info = _F.build_workspace(home)
    ws = keel.Workspace(Settings(home=home, author="tester"))
    admin, _ = ws.tokens.create("ops", "admin")
    with live_server(create_app(ws), lifespan="off") as live:
        yield Site(live.url, info, admin, ws)
    ws.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def admin_context(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    """A browser session logged in as admin through the login form."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(f"{site.url}/models")
    assert page.url.startswith(f"{site.url}/login?next=")  # no cookie yet: sent to the login page
    page.fill("#token", site.admin)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/models")
    page.close()
    yield context
    context.close()


class Watched:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture
def watched(admin_context: BrowserContext) -> Iterator[Watched]:
    page = admin_context.new_page()
    page.set_default_timeout(15_000)
    yield Watched(page)
    page.close()


def _open(w: Watched, url: str) -> None:
    response = w.page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    w.page.wait_for_load_state("load")


def _charts(page: Page) -> int:
    return int(page.evaluate("Object.keys(Chart.instances).length"))


# -- tests --------------------------------------------------------------------------------------
def test_every_page_loads_without_console_errors_and_draws_its_charts(watched: Watched, site: Site) -> None:
    a, b = site.info["runs"]
    pages = {  # url -> canvases that must each hold a chart
        "/": 0,
        "/datasets": 0,
        "/datasets/cancer": 0,
        "/datasets/cancer/1": 32,
        "/datasets/cancer/2": 32,
        "/datasets/cancer/diff?a=1&b=2": 1,
        "/runs": 0,
        f"/runs/{a}": 2,
        f"/runs/compare?ids={a},{b}": 2,
        "/models": 0,
        f"/models/{MODEL}": 1,
        f"/models/{MODEL}/monitoring": 7,
        "/alerts": 0,
        f"/models/{MODEL}/explain": 2,
    }
    for path, expected in pages.items():
        _open(watched, site.url + path)
        assert watched.page.locator("nav.topnav a.brand").is_visible(), path
        assert watched.page.locator("canvas").count() == expected, path
        if expected:
            # Run pages fetch their series from the API before drawing: wait for every canvas.
            watched.page.wait_for_function(f"() => Object.keys(Chart.instances).length === {expected}")
            drawn = watched.page.evaluate(
                "Object.values(Chart.instances).every(c => c.data.datasets[0].data.length > 0)"
            )
            assert drawn, path
        assert watched.errors == [], (path, watched.errors)


def test_run_page_charts_show_every_logged_step(watched: Watched, site: Site) -> None:
    _open(watched, f"{site.url}/runs/{site.info['runs'][0]}")
    watched.page.wait_for_function("() => Object.keys(Chart.instances).length === 2")
    lengths = watched.page.evaluate(
        "Object.fromEntries(Object.values(Chart.instances).map(c => [c.canvas.dataset.metric, c.data.datasets[0].data.length]))"
    )
    assert lengths == {"auc": 12, "log_loss": 12}
    box = watched.page.locator("#metric-1").bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100  # drawn at a visible size


def test_nav_bar_moves_between_sections(watched: Watched, site: Site) -> None:
    _open(watched, site.url + "/")
    for label, path, heading in [
        ("Datasets", "/datasets", "Datasets"),
        ("Runs", "/runs", "Runs"),
        ("Models", "/models", "Models"),
        ("Overview", "/", "Overview"),
    ]:
        watched.page.click(f"nav.topnav >> text={label}")
        watched.page.wait_for_url(site.url + path)
        assert watched.page.locator("h1").first.inner_text().strip() == heading
        assert watched.page.locator("nav.topnav a.active").inner_text() == label
    watched.page.click(f"text={MODEL}")  # the overview's model table leads to the model page
    watched.page.wait_for_url(f"{site.url}/models/{MODEL}")
    assert watched.errors == []


def test_run_filter_updates_results_in_place_and_shows_errors_inline(watched: Watched, site: Site) -> None:
    _open(watched, site.url + "/runs")
    watched.page.evaluate("window.__sameDocument = true")  # survives only if htmx swaps instead of reloading
    watched.page.fill("#filter", "params.max_depth = 3")
    watched.page.press("#filter", "Enter")
    watched.page.wait_for_url("**/runs?filter=params.max_depth*")
    watched.page.locator("#run-results >> text=gbm-depth1").wait_for(state="detached")
    assert watched.page.locator("#run-results tbody tr").count() == 1
    assert watched.page.evaluate("window.__sameDocument") is True
    watched.page.fill("#filter", "metrics.auc >> 1")
    watched.page.press("#filter", "Enter")
    watched.page.locator("#filter-error").wait_for()
    assert watched.page.locator("#filter-error").inner_text().strip()
    assert watched.errors == []


def test_admin_promotes_and_rolls_back_the_champion_from_the_model_page(watched: Watched, site: Site) -> None:
    page = watched.page
    _open(watched, f"{site.url}/models/{MODEL}")
    button = page.locator('#v2 button[data-alias="champion"]')
    assert button.inner_text() == "Set champion"
    page.fill("#alias-reason", "depth 3 wins on auc")
    button.click()
    assert button.inner_text() == "Confirm: champion → v2"  # the first click only arms it
    with page.expect_navigation():  # the page reloads once the API accepted the move
        button.click()
    assert page.locator("#champion").inner_text().strip() == "v2"
    shown = page.request.get(f"{site.url}/api/v1/models/{MODEL}").json()  # the context's cookie is the admin's
    assert shown["version"] == 2 and "champion" in shown["aliases"]
    assert page.locator("#alias-history tbody tr").first.inner_text().count("depth 3 wins on auc") == 1

    rollback = page.locator("#rollback")
    assert rollback.inner_text() == "Roll back champion to v1"
    rollback.click()
    with page.expect_navigation():
        rollback.click()
    assert page.locator("#champion").inner_text().strip() == "v1"
    assert site.ws.models.get(f"{MODEL}@champion").version == 1
    assert "rolled back from the dashboard" in site.ws.models.alias_history(MODEL, "champion")[-1].reason
    assert watched.errors == []


def test_an_alert_is_acknowledged_then_resolved_from_the_monitoring_page(watched: Watched, site: Site) -> None:
    page = watched.page
    _open(watched, f"{site.url}/models/{MODEL}/monitoring")
    row = page.locator("#open-alerts tr", has_text="mean radius drifted")
    alert_id = int((row.get_attribute("id") or "").removeprefix("alert-"))
    with page.expect_navigation():  # reloaded once the API accepted it
        row.locator('button[data-action="ack"]').click()
    row = page.locator(f"#alert-{alert_id}")
    assert row.locator(".status").inner_text() == "acknowledged" and "by ops" in row.inner_text()
    assert site.ws.monitoring.alerts.get(alert_id).acked_by == "ops"
    with page.expect_navigation():
        row.locator('button[data-action="resolve"]').click()
    assert page.locator(f"#alert-{alert_id}").count() == 0  # resolved alerts leave the open list
    assert site.ws.monitoring.alerts.get(alert_id).status.value == "resolved"
    page.click("nav.topnav >> text=Alerts")
    page.wait_for_url(f"{site.url}/alerts")
    page.click("text=Resolved")
    page.wait_for_url(f"{site.url}/alerts?status=resolved")
    assert page.locator(f"#alert-{alert_id}").count() == 1
    assert watched.errors == []


def test_a_reader_session_has_no_promote_buttons(browser: Browser, site: Site) -> None:
    token, _ = site.ws.tokens.create("viewer", "reader")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{site.url}/login?next=/models/{MODEL}")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{site.url}/models/{MODEL}")
        assert page.locator("nav .who").inner_text() == "viewer · reader"
        assert page.locator("button[data-alias]").count() == 0
        page.click("nav >> text=Log out")
        page.wait_for_url(f"{site.url}/login")
        page.goto(f"{site.url}/runs")
        assert page.url.startswith(f"{site.url}/login?next=")  # the cookie is gone
    finally:
        context.close()


def test_unknown_model_page_is_a_friendly_404(watched: Watched, site: Site) -> None:
    response = watched.page.goto(f"{site.url}/models/no-such-model")
    assert response is not None and response.status == 404
    assert watched.page.locator("h1").inner_text() == "Not found"
    assert "no-such-model" in watched.page.locator(".error-detail").inner_text()


def test_a_twin_page_draws_its_cost_plot_learning_curve_and_trajectories(watched: Watched, site: Site) -> None:
    import numpy as np
    import pandas as pd

    demand = np.random.default_rng(0).poisson(10, size=120)
    site.ws.datasets.add("shop-sales", pd.DataFrame({"week": np.arange(120), "units": demand}))
    twin = site.ws.rl.twin("shop", "shop-sales@1", demand_column="units", time_column="week")
    baselines, _ = site.ws.rl.baselines(twin, periods=100, copies=16)
    curve = [[0, 20.0], [1000, 12.0], [2000, 10.5]]
    site.ws.rl.records.add_result(twin, "evaluation", {"model": "shop-policy@1", "learning_curve": curve})
    _open(watched, f"{site.url}/twins/shop")
    svg = watched.page.locator("svg.twin-costs")
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 50  # the server-side SVG is drawn
    assert svg.locator("g.interval").count() == len(baselines.payload["classic"])
    expected = 1 + len(baselines.payload["classic"])  # the learning curve and one trajectory per classic policy
    assert watched.page.locator("canvas").count() == expected
    watched.page.wait_for_function(f"() => Object.keys(Chart.instances).length === {expected}")
    assert watched.page.evaluate("Object.values(Chart.instances).every(c => c.data.datasets[0].data.length > 0)")
    assert watched.page.locator("nav.topnav a.active").inner_text() == "Twins"
    assert watched.errors == []
