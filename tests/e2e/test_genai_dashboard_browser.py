"""The GenAI pages in a real headless Chromium: the index page's ask box lists passages with their
citations and the question's words marked, a passage holding a <script> tag shows it as text (no
injection), an answer from a language model marks the passages it cites (or says it is unsupported);
the language model page's prompt box streams its text piece by piece, ending equal to the whole
(unstreamed) generation under the same seed.

Served like test_dashboard_studies_browser.py: uvicorn in a thread on 127.0.0.1, Playwright driving the
Debian /usr/bin/chromium, a writer logged in through the login form (the keel_token cookie), so the
ask and generate POSTs pass the same auth and origin checks a real user's do.
"""

from __future__ import annotations

import importlib.util
import re
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
    """tests/server/test_genai_dashboard.py's workspace builder, loaded by path (tests/ is not a package)."""
    path = Path(__file__).parents[1] / "server" / "test_genai_dashboard.py"
    spec = importlib.util.spec_from_file_location("_genai_dashboard_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_F = _fixtures()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(url, a writer token) of a live server over the GenAI workspace (writers read and predict)."""
    home = tmp_path_factory.mktemp("genai-browser") / "ws"
    _F.build_genai_workspace(home)
    ws = keel.Workspace(Settings(home=home, author="tester"))
    writer, _ = ws.tokens.create("dev", "writer")
    with live_server(create_app(ws), lifespan="off") as live:
        yield live.url, writer
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
        pg.goto(f"{url}/genai")
        pg.fill("#token", token)
        pg.click("button[type=submit]")
        pg.wait_for_url(f"{url}/genai")
        yield pg, errors
        context.close()
        browser.close()


def _ask(pg: Page, question: str, model: str = "") -> dict[str, Any]:
    pg.fill("#ask-question", question)
    pg.select_option("#ask-model", model)
    with pg.expect_response(lambda r: "/ask?version=1" in r.url) as answered:
        pg.click("#ask-form button[type=submit]")
    assert answered.value.ok, answered.value.text()
    pg.wait_for_function("() => /passages from/.test(document.getElementById('ask-status').textContent)")
    body: dict[str, Any] = answered.value.json()
    return body


def test_the_ask_box_marks_the_question_words_and_keeps_markup_as_text(page: Any, site: Any) -> None:
    pg, errors = page
    pg.goto(f"{site[0]}/genai/indexes/kb")
    body = _ask(pg, "Which foxes of the tundra grow a white coat?")
    items = pg.locator("#ask-passages li.passage")
    assert items.count() == len(body["passages"]) == 5
    first = body["passages"][0]
    assert "<script>" in first["text"]  # the tundra passage is the best match
    citation = pg.locator("#ask-passages li.passage").first.locator(".citation").inner_text()
    assert citation.startswith(f"[1] {first['document']} · position {first['position']} · score ")
    text = pg.locator("#ask-passages li.passage").first.locator(".passage-text")
    assert text.inner_text() == first["text"]  # the tag shown as text, whole
    assert pg.evaluate("document.querySelectorAll('#ask-passages script').length") == 0
    assert pg.evaluate("window.__pwned") is None
    marks = text.locator("mark").all_inner_texts()
    assert {m.lower() for m in marks} == {"foxes", "tundra", "grow", "white", "coat"}
    assert "of" not in {m.lower() for m in marks} and "which" not in {m.lower() for m in marks}
    assert pg.locator("#ask-answer").is_hidden()
    assert errors == []


def test_an_answer_from_a_language_model_marks_its_citations_or_says_unsupported(page: Any, site: Any) -> None:
    pg, errors = page
    pg.goto(f"{site[0]}/genai/indexes/kb")
    body = _ask(pg, "Where does the red fox sleep?", model="coder@2")
    assert body["model"] == "coder@2" and isinstance(body["answer"], str)
    assert pg.locator("#ask-answer").is_visible()
    assert pg.evaluate("document.querySelector('#ask-answer .answer-text').textContent") == body["answer"]
    assert "from coder@2" in pg.locator("#ask-answer").inner_text()
    cited = pg.eval_on_selector_all("#ask-passages li.cited", "items => items.map(i => Number(i.dataset.rank))")
    assert sorted(cited) == sorted(body["citations"])
    assert pg.locator("#ask-unsupported").count() == (1 if body["supported"] is False else 0)
    assert errors == []


def test_the_prompt_box_streams_the_same_text_as_the_whole_generation(page: Any, site: Any) -> None:
    pg, errors = page
    pg.goto(f"{site[0]}/genai/models/coder")
    prompt = "def add_3(x, y):\n"
    whole = pg.request.post(
        f"{site[0]}/api/v1/models/coder/generate?version=2",
        data={"prompt": prompt, "max_tokens": 12, "temperature": 0.7, "seed": 5},
    )
    assert whole.ok, whole.text()
    expected = whole.json()
    pg.fill("#generate-prompt", prompt)
    pg.fill("#generate-max-tokens", "12")
    pg.fill("#generate-temperature", "0.7")
    pg.fill("#generate-seed", "5")
    pg.click("#generate-form button[type=submit]")
    pg.wait_for_function("() => document.getElementById('generate-status').textContent.startsWith('Done:')")
    shown = pg.evaluate("document.getElementById('generate-output').textContent")
    assert shown == prompt + expected["text"]
    pieces = pg.evaluate("document.getElementById('generate-output').childNodes.length - 1")  # less the prompt
    assert 1 < pieces <= expected["completion_tokens"]  # appended piece by piece as the events arrived
    status = pg.locator("#generate-status").inner_text()
    assert re.fullmatch(
        rf"Done: {expected['finish_reason']} · {expected['completion_tokens']} tokens · [\d,.]+ tokens/s", status
    ), status
    assert errors == []
