"""The GenAI pages over HTTP: the list (empty, then a language model and an index), a language model
version's page (loss curves from its run, the perplexity table from its metrics or from
ws.genai.evaluation, the prompt box for a role that may generate), an index version's page (corpus
lineage, dedupe counts, retrieval metrics per mode, the ask box), the model page's link, roles and
friendly 404s. The workspace is built once for the module (a tiny LM trained for 30 steps, an index
over 13 short documents with the shipped embedder)."""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import keel
from keel import Settings
from keel.server.dashboard.base import num
from keel.workspace.genai import GenAI

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "genai"))
from _lm_fixtures import train_tiny  # noqa: E402

METRICS = {
    "val_perplexity": 12.5,
    "ngram_perplexity": 9.0,
    "bigram_perplexity": 15.0,
    "general_perplexity": 40.0,
    "val_bits_per_byte": 1.9,  # per byte, the general model (its own tokenizer) is the better one
    "general_bits_per_byte": 1.5,
    "held_out_documents": 3.0,
    "parameters": 31_232.0,
    "tokens_per_s": 2_500.0,
}
SCRIPT = "<script>window.__pwned = 1</script>"


def documents() -> list[str]:
    """Twelve short documents and one exact duplicate; one passage carries markup that must stay text."""
    topics = ["forests", "rivers", "deserts", "mountains", "oceans", "glaciers"]
    docs = [
        f"Document {i} is about {topics[i % 6]}. The red fox number {i} hunts near the {topics[(i + 1) % 6]}, "
        f"sleeps in a den and eats berries in season {i % 4}."
        for i in range(12)
    ]
    docs[3] = f"Foxes of the tundra {SCRIPT} grow a white coat in winter and hunt lemmings under snow."
    return [*docs, docs[5]]


def build_genai_workspace(home: Path) -> dict[str, Any]:
    """Corpus 'code@1', language model 'coder' v1 and v2 (v2 with the run's curves and the metrics
    above), a sklearn model 'plain', corpus 'docs@1' and index 'kb' v1 over it. Returns what was made."""
    from sklearn.linear_model import LogisticRegression

    ws = keel.Workspace(Settings(home=home, author="tester"))
    try:
        ws.datasets.add("code", pd.DataFrame({"text": ["def f(x):\n    return x\n"] * 3}))
        lm = train_tiny(steps=30)
        ws.models.register("coder", lm, trained_on="code@1", metrics={"val_perplexity": 20.0})
        with ws.runs.start("genai-coder", inputs=["code@1"]) as run:
            for step, value in lm.loss_curve:
                run.log_metric("train_loss", value, step=step)
            for step, value in lm.val_curve:
                run.log_metric("val_loss", value, step=step)
        tags = {"keel.genai": "train", "keel.corpus": "code@1", "keel.general": "general@1"}
        ws.models.register("coder", lm, run=run.id, trained_on="code@1", metrics=METRICS, tags=tags)
        frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1]})
        ws.models.register("plain", LogisticRegression().fit(frame[["x"]], frame["y"]), X=frame[["x"]])
        ws.datasets.add("docs", pd.DataFrame({"text": documents()}))
        index = ws.genai.index("kb", "docs@1", questions=10)
        return {"lm": lm, "index": index, "run": run.id}
    finally:
        ws.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, keel.Workspace, dict[str, Any]]]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    home = tmp_path_factory.mktemp("genai-dashboard") / "ws"
    made = build_genai_workspace(home)
    ws = keel.Workspace(Settings(home=home, author="tester"))
    made["writer"] = ws.tokens.create("dev", "writer")[0]
    made["reader"] = ws.tokens.create("analyst", "reader")[0]
    with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c, ws, made
    ws.close()


def _page(site: Any, url: str, role: str = "writer", status: int = 200) -> str:
    client, _, made = site
    response = client.get(url, headers={"Authorization": f"Bearer {made[role]}"})
    assert response.status_code == status, (url, response.status_code, response.text[:500])
    return response.text


def test_an_empty_workspace_says_how_to_make_a_model_and_an_index(ws: keel.Workspace) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        page = c.get("/genai").text
    assert '<a href="/genai" class="active" aria-current="page">GenAI</a>' in page  # the nav link
    assert 'id="no-language-models"' in page and "keel genai train NAME CORPUS@V" in page
    assert 'id="no-indexes"' in page and "keel genai index NAME CORPUS@V" in page


def test_the_list_shows_the_latest_language_model_and_every_index(site: Any) -> None:
    made = site[2]
    page = _page(site, "/genai", role="reader")
    row = re.search(r'<tr data-model="coder">(.*?)</tr>', page, re.S)
    assert row is not None and 'href="/genai/models/coder?version=2"' in row[1]
    assert 'href="/datasets/code/1"' in row[1] and '<td class="num">12.5</td>' in row[1]
    assert "Not below " in row[1] and "general@1" in row[1]  # the n-gram and, per byte, the general model
    assert 'data-model="plain"' not in page  # not a language model
    index = re.search(r'<tr data-index="kb">(.*?)</tr>', page, re.S)
    assert index is not None and 'href="/genai/indexes/kb?version=1"' in index[1]
    hybrid = made["index"].spec["evaluation"]["hybrid"]
    assert f'<td class="num">{num(made["index"].spec["chunks"])}</td>' in index[1]
    assert f'<td class="num">{num(hybrid["mrr"])}</td>' in index[1]


def test_a_language_model_page_draws_its_loss_curves_from_the_run(site: Any) -> None:
    lm = site[2]["lm"]
    page = _page(site, "/genai/models/coder")
    assert '<h1>coder <span class="muted">v2</span>' in page
    svg = re.search(r'<svg class="interval-plot loss-curves".*?</svg>', page, re.S)
    assert svg is not None
    curves = dict(re.findall(r'<g class="curve" data-series="([^"]+)"><title>([^<]*)</title>', svg[0]))
    assert set(curves) == {"train_loss", "val_loss"}
    last_train, last_val = lm.loss_curve[-1], lm.val_curve[-1]
    assert curves["train_loss"] == f"train_loss: {num(last_train[1])} at step {num(last_train[0])}"
    assert curves["val_loss"] == f"val_loss: {num(last_val[1])} at step {num(last_val[0])}"
    paths = re.findall(r'<path d="([^"]+)"', svg[0])
    assert [p.count("L") + 1 for p in paths] == [len(lm.loss_curve), len(lm.val_curve)]
    assert f'href="/runs/{site[2]["run"]}"' in page
    # v1 has no run: no curves, and says why
    assert 'id="no-curves"' in _page(site, "/genai/models/coder?version=1")


def test_the_perplexity_table_reads_the_metrics_without_an_evaluation(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(GenAI, "evaluation", raising=False)
    page = _page(site, "/genai/models/coder")
    table = re.search(r'<table id="perplexity-table">.*?</table>', page, re.S)
    assert table is not None
    cell = r'\s*<td class="num">([^<]*)</td>'
    rows = re.findall(r'<tr data-kind="([^"]+)"[^>]*>\s*<td>(.*?)</td>.*?</td>' + cell * 3, table[0], re.S)
    assert [(k, re.sub(r"\s*<span.*", "", n), p, b, r) for k, n, p, b, r in rows] == [
        ("domain", "coder@2 (this model)", "12.5", "1.9", "1.00"),
        ("ngram-3", "Kneser-Ney trigram", "9", "–", "0.72"),
        ("ngram-2", "Kneser-Ney bigram", "15", "–", "1.20"),
        ("general", "general@1 (general model)", "40", "1.5", "3.20"),
    ]
    assert 'Kneser-Ney trigram <span class="badge champion">lowest</span>' in table[0]
    verdict = "Not below Kneser-Ney trigram, general@1 (general model); below Kneser-Ney bigram."
    assert f'<p id="verdict"><strong>{verdict}</strong></p>' in page
    assert "this version&#39;s metrics" in page and "of code@1" in page


def test_the_perplexity_table_prefers_the_workspace_evaluation(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def evaluation(self: GenAI, ref: str) -> dict[str, Any]:
        asked.append(ref)
        rows = [
            {"name": ref, "kind": "domain", "perplexity": 8.0},
            {"name": "kn3", "kind": "ngram-3", "perplexity": 10.0},
            {"name": "general@1 + lora", "kind": "general+lora", "perplexity": 16.0},
        ]
        return {"model": ref, "corpus": "code@1", "held_out_documents": 7, "rows": rows}

    monkeypatch.setattr(GenAI, "evaluation", evaluation)
    page = _page(site, "/genai/models/coder?version=2")
    assert asked == ["coder@2"]
    kinds = re.findall(r'<tr data-kind="([^"]+)"', page)
    assert kinds == ["domain", "ngram-3", "general+lora"]
    assert "(7 documents)" in page and "From ws.genai.evaluation." in page
    assert "Lower perplexity than every baseline (kn3, general@1 + lora)." in html.unescape(page)


def test_the_perplexity_table_of_a_trained_version_comes_from_ws_genai_evaluation(site: Any) -> None:
    page = _page(site, "/genai/models/coder")
    assert "From ws.genai.evaluation." in page and "(3 documents)" in page
    assert sorted(re.findall(r'<tr data-kind="([^"]+)"', page)) == ["domain", "general", "ngram-2", "ngram-3"]
    # v1 has no corpus tag: the evaluation refuses it, and its metrics make the table
    v1 = _page(site, "/genai/models/coder?version=1")
    assert "this version&#39;s metrics" in v1 and re.findall(r'<tr data-kind="([^"]+)"', v1) == ["domain"]


def test_the_prompt_box_is_for_roles_that_may_generate(site: Any) -> None:
    page = _page(site, "/genai/models/coder")
    form = re.search(r'<form id="generate-form" data-generate="coder" data-version="2">', page)
    assert form is not None and '<script src="/static/genai.js" defer></script>' in page
    for field in ("prompt", "max_tokens", "temperature", "seed"):
        assert f'name="{field}"' in page, field
    as_reader = _page(site, "/genai/models/coder", role="reader")
    assert (
        'id="generate-form"' not in as_reader
        and 'id="no-prompt"' in as_reader
        and "this session is reader" in as_reader
    )
    assert (
        "script-src 'self'"
        in site[0]
        .get("/genai", headers={"Authorization": f"Bearer {site[2]['reader']}"})
        .headers["content-security-policy"]
    )


def test_an_index_page_shows_lineage_dedupe_and_retrieval_per_mode(site: Any) -> None:
    index = site[2]["index"]
    page = _page(site, "/genai/indexes/kb")
    assert '<h1>kb <span class="muted">v1</span></h1>' in page and 'href="/datasets/docs/1"' in page
    assert index.spec["embedder"] in page and f"{num(index.spec['chunks'])} <span" in page
    dedupe = index.spec["dedupe"]
    assert dedupe["exact_removed"] == 1 and dedupe["kept"] == 12  # the repeated document
    assert '<strong id="dedupe-exact">1</strong>' in page and '<strong id="dedupe-kept">12</strong>' in page
    modes = re.findall(
        r'<tr data-mode="([^"]+)"[^>]*>.*?<td class="num">([^<]*)</td>\s*<td class="num">([^<]*)</td>\s*'
        r'<td class="num">([^<]*)</td>\s*<td class="num">([^<]*)</td>',
        page,
        re.S,
    )
    evaluation = index.spec["evaluation"]
    assert [m[0] for m in modes] == ["hybrid", "dense", "bm25"]
    for mode, n, r1, r5, mrr in modes:
        e = evaluation[mode]
        assert (n, r1, r5, mrr) == (num(e["n"]), num(e["recall@1"]), num(e["recall@5"]), num(e["mrr"])), mode
    assert '<form id="ask-form" data-ask="kb" data-version="1">' in page
    assert '<option value="coder@2">coder@2</option>' in page  # an answer model to choose
    as_reader = _page(site, "/genai/indexes/kb", role="reader")
    assert 'id="ask-form"' not in as_reader and 'id="no-ask"' in as_reader


def test_the_model_page_links_its_language_model_page_and_unknowns_are_friendly_404s(site: Any) -> None:
    assert 'href="/genai/models/coder" id="lm-link"' in _page(site, "/models/coder")
    assert 'id="lm-link"' not in _page(site, "/models/plain")
    assert "no language model version" in _page(site, "/genai/models/plain", status=404)
    assert "Not found" in _page(site, "/genai/models/nothing", status=404)
    assert "coder@9 is not a language model version" in _page(site, "/genai/models/coder?version=9", status=404)
    assert "Not found" in _page(site, "/genai/indexes/nothing", status=404)
    assert "Not found" in _page(site, "/genai/indexes/kb?version=4", status=404)
    anonymous = site[0].get("/genai/indexes/kb", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")


def test_the_best_retrieval_mode_is_the_highest_mrr_and_a_tie_goes_to_hybrid() -> None:
    from keel.server.dashboard.genai import _best_mode

    assert _best_mode({"dense": {"mrr": 0.4}, "bm25": {"mrr": 1.0}, "hybrid": {"mrr": 1.0}}) == "hybrid"
    assert _best_mode({"dense": {"mrr": 0.9}, "bm25": {"mrr": 0.5}, "hybrid": {"mrr": float("nan")}}) == "dense"
    assert _best_mode({"dense": {}}) is None
