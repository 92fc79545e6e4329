"""The causal study page in a real headless Chromium: it loads without console errors, the SVG graph
holds every node, the overlap histogram draws, and the what-if panel answers in the page (no reload).

Served like test_dashboard_browser.py: uvicorn in a thread on 127.0.0.1, Playwright driving the
Debian /usr/bin/chromium, a session logged in through the login form (the keel_token cookie), so
the what-if POST passes the same auth and origin checks a real user's does.
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

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

_PROBLEM = chromium_problem()
if _PROBLEM:
    pytest.skip(_PROBLEM, allow_module_level=True)

from liveserver import live_server  # noqa: E402
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


def _fixtures() -> Any:
    """test_dashboard_studies.py's workspace builder, loaded by path (tests/ is not a package)."""
    path = Path(__file__).with_name("test_dashboard_studies.py")
    spec = importlib.util.spec_from_file_location("_dashboard_studies_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_F = _fixtures()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(url, a reader token) of a live server over the studies workspace."""
    home = tmp_path_factory.mktemp("dashboard-studies-browser") / "ws"
    _F.build_causal_workspace(home)
    ws = keel.Workspace(Settings(home=home, author="tester"))
    reader, _ = ws.tokens.create("analyst", "reader")  # a reader may ask what-if questions
    with live_server(create_app(ws), lifespan="off") as live:
        yield live.url, reader
    ws.close()


@pytest.fixture(scope="module")
def page(site: tuple[str, str]) -> Iterator[tuple[Page, list[str]]]:
    """A logged-in page and the console errors and uncaught exceptions it records."""
    url, token = site
    errors: list[str] = []
    with sync_playwright() as p:
        browser: Browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(20_000)
        pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        pg.goto(f"{url}/studies")
        pg.fill("#token", token)
        pg.click("button[type=submit]")
        pg.wait_for_url(f"{url}/studies")
        yield pg, errors
        context.close()
        browser.close()


def test_the_study_page_draws_graph_and_charts_without_console_errors(page: tuple[Page, list[str]], site: Any) -> None:
    pg, errors = page
    pg.click("text=training")
    pg.wait_for_url(f"{site[0]}/studies/training")
    nodes = pg.eval_on_selector_all("svg.causal-graph g.node", "gs => gs.map(g => g.dataset.node)")
    assert sorted(nodes) == sorted([*_F.COVARIATES, "treat", "re78"])
    box = pg.locator("svg.causal-graph").bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 100
    pg.wait_for_function("() => Chart.getChart(document.getElementById('overlap-histogram')) !== undefined")
    bars = pg.evaluate(
        "Chart.getChart(document.getElementById('overlap-histogram')).data.datasets.map(d => d.data.reduce((a, b) => a + b, 0))"
    )
    assert bars == [185, 260]
    # overlap, policy value, and the uplift and Qini curves of the one action against the baseline
    assert pg.evaluate("Object.keys(Chart.instances).length") == 4
    qini = pg.evaluate("Chart.getChart(document.getElementById('uplift-2')).data.datasets.map(d => d.label)")
    assert qini == ["policy order", "random order"]
    assert errors == []


def test_the_whatif_panel_answers_in_the_page_without_a_reload(page: tuple[Page, list[str]], site: Any) -> None:
    pg, errors = page
    pg.goto(f"{site[0]}/studies/training")
    pg.evaluate("window.__sameDocument = true")  # survives only if the page is not reloaded
    pg.select_option("#whatif-node", "treat")
    pg.fill("#whatif-expr", "=1")
    pg.click("#whatif-form button[type=submit]")
    pg.locator("#whatif-effect").wait_for()
    answer = pg.locator("#whatif-answer").inner_text()
    assert "Mean effect on re78 of treat =1" in answer and "95% [" in answer, answer
    assert float(pg.locator("#whatif-effect").inner_text().replace(",", "")) > 0
    assert pg.evaluate("window.__sameDocument") is True and pg.url == f"{site[0]}/studies/training"
    pg.fill("#whatif-expr", "*banana")  # a bad expression: the server's reason, shown in the panel
    pg.click("#whatif-form button[type=submit]")
    pg.locator("#whatif-answer.error").wait_for()
    assert "must be a number" in pg.locator("#whatif-answer").inner_text()
    assert [e for e in errors if "400" not in e and "422" not in e] == []
