"""The web dashboard over HTTP (TestClient): every page, 404 pages, admin-only buttons, login."""

from __future__ import annotations

import html
import json
import re
import shutil
import warnings
from collections.abc import Iterator
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
from keel.server import create_app

MODEL = "cancer-risk"


# -- a small real workspace, built once and copied per test that writes -------------------------
def build_workspace(home: Path) -> dict[str, Any]:
    """Breast-cancer data (two versions), two boosted-tree runs with per-stage metrics, two model
    versions (champion on v1, challenger on v2). Returns the ids and names tests look for."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    frame["diagnosis"] = np.where(frame["target"] == 1, "benign", "malignant")
    shifted = frame.drop(columns=["worst fractal dimension"]).iloc[:400].copy()
    shifted["mean radius"] = shifted["mean radius"] * 1.4
    shifted["site"] = np.where(np.arange(len(shifted)) % 3 == 0, "clinic-b", "clinic-a")

    ws = keel.Workspace(Settings(home=home, author="tester"))
    try:
        v1 = ws.datasets.add("cancer", frame, description="Wisconsin breast cancer")
        ws.datasets.add("cancer", shifted, description="second site, rescaled radius")
        X = frame.drop(columns=["target", "diagnosis"])
        X_train, X_test, y_train, y_test = train_test_split(X, frame["target"], test_size=0.3, random_state=0)
        run_ids, versions = [], []
        for depth in (1, 3):
            est = GradientBoostingClassifier(n_estimators=12, max_depth=depth, random_state=0)
            with ws.runs.start(
                "cancer",
                name=f"gbm-depth{depth}",
                params={"max_depth": depth, "n_estimators": 12},
                tags={"team": "risk"},
                inputs=[v1],
            ) as run:
                est.fit(X_train, y_train)
                for step, proba in enumerate(est.staged_predict_proba(X_test)):
                    run.log_metric("auc", roc_auc_score(y_test, proba[:, 1]), step=step)
                    run.log_metric("log_loss", log_loss(y_test, proba), step=step)
                run.log_bytes(json.dumps({"depth": depth}).encode(), "notes/config.json")
            run_ids.append(run.id)
            versions.append(ws.models.register(MODEL, est, run=run, X=X_train).version)
        ws.models.set_alias(MODEL, "champion", version=versions[0], reason="first model")
        ws.models.set_alias(MODEL, "challenger", version=versions[1], reason="deeper trees")
        _monitor(ws, frame, X)
        return {"runs": run_ids, "run_names": ["gbm-depth1", "gbm-depth3"], "versions": versions}
    finally:
        ws.close()


def _monitor(ws: keel.Workspace, frame: pd.DataFrame, X: pd.DataFrame) -> None:
    """Two monitor checks of the champion: healthy traffic, then 'mean radius' 40% larger, with labels."""
    from keel.monitoring.predlog import new_prediction_ids

    ws.monitoring.watch(MODEL, window_rows=150, min_rows=50, target="target")
    champion = ws.models.load(f"{MODEL}@champion")
    for seed, scale in ((0, 1.0), (1, 1.4)):
        live = X.sample(150, random_state=seed)
        ids, at_ms = new_prediction_ids(len(live))
        logged = live.assign(**{"mean radius": live["mean radius"] * scale})
        proba = champion.predict_proba(logged)
        logged = logged.assign(
            __id=ids,
            __at=pd.Timestamp(at_ms, unit="ms", tz="UTC"),
            __prediction=champion.predict(logged),
            __proba_0=proba[:, 0],
            __proba_1=proba[:, 1],
        )
        ws.predictions.write(MODEL, 1, logged)
        ws.monitoring.feedback(MODEL, dict(zip(ids, frame.loc[live.index, "target"].tolist(), strict=True)))
        ws.monitoring.run(MODEL)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("dashboard-template") / "ws"
    return home, build_workspace(home)


def _open(template: tuple[Path, dict[str, Any]], dest: Path) -> keel.Workspace:
    shutil.copytree(template[0], dest)
    return keel.Workspace(Settings(home=dest, author="tester"))


@pytest.fixture(scope="module")
def site(template: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A read-only site without tokens: the TestClient is a local client, so it acts as admin."""
    ws = _open(template, tmp_path_factory.mktemp("dashboard-site") / "ws")
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as client:
        yield client
    ws.close()


@pytest.fixture
def ws(template: tuple[Path, dict[str, Any]], tmp_path: Path) -> Iterator[keel.Workspace]:
    """A private copy of the workspace, for tests that write (tokens, alias moves)."""
    w = _open(template, tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture
def info(template: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return template[1]


def _specs(page: str) -> list[dict[str, Any]]:
    """The chart specs a page hands to dashboard.js."""
    return [json.loads(html.unescape(s)) for s in re.findall(r"data-spec='([^']*)'", page)]


def _page(client: TestClient, url: str, **kwargs: Any) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, (url, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return response.text


# -- pages --------------------------------------------------------------------------------------
def test_every_page_has_the_nav_bar_and_assets_from_static(site: TestClient, info: dict[str, Any]) -> None:
    a, b = info["runs"]
    for url in [
        "/",
        "/datasets",
        "/datasets/cancer",
        "/datasets/cancer/1",
        "/datasets/cancer/diff?a=1&b=2",
        "/runs",
        f"/runs/{a}",
        f"/runs/compare?ids={a},{b}",
        "/models",
        f"/models/{MODEL}",
        f"/models/{MODEL}/monitoring",
        "/alerts",
        "/login",
    ]:
        text = _page(site, url)
        for link in (
            'href="/datasets"',
            'href="/runs"',
            'href="/models"',
            'href="/alerts"',
            'src="/static/vendor/chart.umd.min.js"',
        ):
            assert link in text, (url, link)
        assert "://" not in re.sub(r'xmlns="http://www.w3.org/2000/svg"', "", text), f"{url} refers to another host"
    for asset in ("/static/dashboard.js", "/static/dashboard.css", "/static/favicon.svg", "/static/vendor/htmx.min.js"):
        assert site.get(asset).status_code == 200, asset


def test_overview_shows_champion_latest_version_and_recent_activity(site: TestClient, info: dict[str, Any]) -> None:
    text = _page(site, "/")
    row = re.search(rf'<tr>\s*<td><a href="/models/{MODEL}">{MODEL}</a></td>(.*?)</tr>', text, re.S)
    assert row is not None
    assert 'badge champion">v1<' in row.group(1)
    assert "@challenger v2" in row.group(1)
    assert 'v2 <span class="muted">of 2' in row.group(1)
    activity = text.split("Recent activity", 1)[1]
    for expected in ("Run gbm-depth3", "Dataset cancer@2", f"{MODEL}@champion: new → v1"):
        assert expected in activity
    assert 'class="active" aria-current="page">Overview' in text


def test_dataset_list_and_versions_table(site: TestClient) -> None:
    assert '<a href="/datasets/cancer">cancer</a>' in _page(site, "/datasets")
    text = _page(site, "/datasets/cancer")
    assert '<a href="/datasets/cancer/2">cancer@2</a>' in text and '<a href="/datasets/cancer/1">cancer@1</a>' in text
    rows = re.findall(r'<td class="num">([\d,]+)</td>', text)
    assert rows[:1] == ["400"] and "569" in rows  # newest first
    assert re.search(r'<code title="sha256:[0-9a-f]{64}">[0-9a-f]{12}</code>', text)
    assert "tester" in text


def test_dataset_version_has_schema_and_a_chart_per_column(site: TestClient) -> None:
    text = _page(site, "/datasets/cancer/1")
    assert "<td>mean radius</td>" in text and "<code>double</code>" in text
    specs = {s["title"]: s for s in _specs(text)}
    assert len(specs) == 32  # 30 features, target, diagnosis
    radius = specs["mean radius"]
    assert radius["type"] == "histogram" and sum(radius["datasets"][0]["data"]) == 569
    diagnosis = specs["diagnosis"]
    assert diagnosis["type"] == "hbar"
    assert dict(zip(diagnosis["labels"], diagnosis["datasets"][0]["data"], strict=True)) == {
        "benign": 357,
        "malignant": 212,
    }
    assert f'href="/models/{MODEL}#v1"' in text  # models trained on this version


def test_dataset_diff_shows_schema_changes_row_delta_and_drift(site: TestClient) -> None:
    text = _page(site, "/datasets/cancer/diff?a=1&b=2")
    assert "<code>worst fractal dimension</code> removed" in text
    assert "<code>site</code> added" in text
    assert "569 → 400" in text and "(-169)" in text
    radius = re.search(
        r"<td>mean radius</td>\s*<td>numeric</td>\s*<td>PSI</td>\s*<td class=\"num\">([\d.]+)</td>\s*"
        r"<td><span class=\"level level-(\w+)\">",
        text,
    )
    assert radius is not None and float(radius.group(1)) > 0.25 and radius.group(2) == "high"
    assert "JS distance" in text  # the categorical column
    assert _specs(text)[0]["labels"][0] == "mean radius"  # biggest change first
    assert "cancer@1" in _page(site, "/datasets/cancer/diff")  # defaults: the two newest versions


def test_runs_list_filters_with_the_search_language(site: TestClient, info: dict[str, Any]) -> None:
    text = _page(site, "/runs")
    assert all(f">{name}</a>" in text for name in info["run_names"])
    assert '<th class="num">auc</th>' in text
    deep = _page(site, "/runs", params={"filter": "params.max_depth = 3"})
    assert ">gbm-depth3</a>" in deep and ">gbm-depth1</a>" not in deep
    assert 'value="params.max_depth = 3"' in deep
    ordered = _page(site, "/runs", params={"order_by": "metrics.auc desc"})
    assert ordered.index(">gbm-depth3</a>") < ordered.index(">gbm-depth1</a>")


def test_a_bad_filter_is_explained_inline_not_a_server_error(site: TestClient) -> None:
    text = _page(site, "/runs", params={"filter": "metrics.auc >> 0.8"})
    error = re.search(r'<p class="notice error" role="alert" id="filter-error">(.*?)</p>', text, re.S)
    assert error is not None and error.group(1).strip()
    assert "<table>" not in text.split('id="run-results"', 1)[1]


def test_run_page_shows_params_tags_inputs_metric_charts_and_artifacts(site: TestClient, info: dict[str, Any]) -> None:
    run_id = info["runs"][1]
    text = _page(site, f"/runs/{run_id}")
    assert '<th scope="row">max_depth</th><td>3</td>' in text
    assert '<th scope="row">team</th><td>risk</td>' in text
    assert '<a href="/datasets/cancer/1">cancer@1</a>' in text
    assert f'data-run="{run_id}"' in text
    assert set(re.findall(r'data-metric="([^"]+)"', text)) == {"auc", "log_loss"}
    series = site.get(f"/api/v1/runs/{run_id}/metrics").json()  # what the charts fetch
    assert len(series["auc"]["steps"]) == 12
    link = f"/runs/{run_id}/artifacts/notes/config.json"
    assert f'href="{link}"' in text
    download = site.get(link)
    assert download.status_code == 200 and download.json() == {"depth": 3}
    assert "attachment" in download.headers["content-disposition"]


def test_compare_puts_runs_side_by_side_and_marks_differences(site: TestClient, info: dict[str, Any]) -> None:
    a, b = info["runs"]
    for url in (f"/runs/compare?ids={a},{b}", f"/runs/compare?ids={a}&ids={b}"):
        text = _page(site, url)
        assert ">gbm-depth1</a>" in text and ">gbm-depth3</a>" in text
        assert re.search(r'<tr class="differs"><th scope="row">max_depth</th><td>1</td><td>3</td></tr>', text)
        assert re.search(r'<tr><th scope="row">n_estimators</th><td>12</td><td>12</td></tr>', text)
        overlays = {s["title"]: s for s in _specs(text)}
        assert [d["label"] for d in overlays["auc"]["datasets"]] == ["gbm-depth1", "gbm-depth3"]
        assert len(overlays["auc"]["datasets"][0]["points"]) == 12


def test_model_page_shows_versions_aliases_history_and_lineage(site: TestClient, info: dict[str, Any]) -> None:
    assert f'<a href="/models/{MODEL}">{MODEL}</a>' in _page(site, "/models")
    text = _page(site, f"/models/{MODEL}")
    assert '<tr id="v2">' in text and '<tr id="v1" class="is-champion">' in text
    assert f'<a href="/runs/{info["runs"][0]}">' in text
    history = text.split('id="alias-history"', 1)[1].split("</table>", 1)[0]
    assert "first model" in history and "deeper trees" in history and "new → v1" in history
    lineage = text.split('<svg class="lineage"', 1)[1].split("</svg>", 1)[0]
    assert 'href="/datasets/cancer/1"' in lineage
    assert all(f'href="/runs/{r}"' in lineage for r in info["runs"])
    assert lineage.count('class="edge"') == 4  # dataset -> each run, each run -> its version
    assert "Set champion" in text  # a local client is admin when no token exists
    assert "Roll back" not in text  # champion was only ever set once


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/datasets/nope", "nope"),
        ("/datasets/cancer/99", "no version 99"),
        ("/datasets/nope/diff?a=1&b=2", "nope"),
        ("/models/nope", "nope"),
        ("/models/nope/monitoring", "nope"),
        ("/runs/0123456789abcdef", "0123456789abcdef"),
        ("/runs/compare?ids=0123456789abcdef", "0123456789abcdef"),
    ],
)
def test_unknown_names_get_a_friendly_404_page(site: TestClient, url: str, message: str) -> None:
    response = site.get(url)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text and message in html.unescape(response.text)
    assert 'href="/models"' in response.text and "Traceback" not in response.text


def test_malformed_names_are_a_400_page(site: TestClient) -> None:
    response = site.get("/models/bad%20name!")
    assert response.status_code == 400 and "<h1>Bad request</h1>" in response.text


def test_pages_forbid_inline_scripts(site: TestClient) -> None:
    response = site.get("/")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    assert "<script>" not in response.text and "onclick" not in response.text


def test_pages_work_on_an_empty_workspace_a_folder_dataset_and_a_model_without_run(tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier

    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester")) as w:
        with TestClient(create_app(w), base_url="http://127.0.0.1") as client:
            for url in ("/", "/datasets", "/runs", "/models", "/runs/compare"):
                assert "No " in _page(client, url) or "Pick at least two runs" in _page(client, url), url
            images = tmp_path / "images"
            for path in ("cats/a.png", "cats/b.png", "dogs/c.jpg"):
                (images / path).parent.mkdir(parents=True, exist_ok=True)
                (images / path).write_bytes(path.encode())
            folder = w.datasets.add("pets", images)
            specs = {s["title"]: s for s in _specs(_page(client, "/datasets/pets/1"))}
            assert dict(
                zip(
                    specs["Files by extension"]["labels"],
                    specs["Files by extension"]["datasets"][0]["data"],
                    strict=True,
                )
            ) == {".png": 2, ".jpg": 1}
            w.models.register("dummy", DummyClassifier().fit([[0], [1]], [0, 1]), trained_on=folder, flavor="pickle")
            with w.runs.start("bare", name="no-metrics"):
                pass
            model_page = _page(client, "/models/dummy")
            assert model_page.count('class="edge"') == 1 and "No alias has been set yet." in model_page
            assert 'href="/datasets/pets/1"' in model_page
            run_id = w.runs.list(limit=1)[0].id
            assert "No metrics logged." in _page(client, f"/runs/{run_id}")


# -- monitoring ---------------------------------------------------------------------------------
def test_monitoring_page_shows_drift_over_time_distributions_performance_quality_and_alerts(site: TestClient) -> None:
    text = _page(site, f"/models/{MODEL}/monitoring")
    assert 'class="health health-drift">mean radius<' in text
    specs = {s["title"]: s for s in _specs(text)}
    psi = specs["PSI by feature"]
    assert psi["datasets"][0]["label"] == "mean radius"  # the drifted feature first
    first, second = (p[1] for p in psi["datasets"][0]["points"])
    assert psi["datasets"][0]["points"][0][0] == 1 and first < 0.2 < second  # healthy check, then the shift
    assert "Wasserstein distance by feature" in specs
    dist = specs["mean radius: reference vs current"]
    assert [d["label"] for d in dist["datasets"]] == ["reference", "current window"]
    assert len(dist["labels"]) == len(dist["datasets"][0]["data"]) == len(dist["datasets"][1]["data"]) > 3
    assert sum(dist["datasets"][0]["data"]) == pytest.approx(1.0, abs=1e-6)
    assert "drift" in dist["note"] or "psi" in dist["note"]
    perf = specs["Performance on labelled traffic"]
    assert {d["label"] for d in perf["datasets"]} == {"accuracy", "roc_auc", "f1"}
    assert all(len(d["points"]) == 2 for d in perf["datasets"])
    assert "Rejected requests (schema violations)" in specs
    features = text.split('id="feature-table"', 1)[1].split("</table>", 1)[0]
    assert features.count("<tr") == 31 and '<tr class="drifted">' in features  # header + 30 features
    assert 'id="reference-performance"' in text
    alerts = text.split('id="open-alerts"', 1)[1].split("</section>", 1)[0]
    assert "mean radius drifted" in alerts and 'data-action="ack"' in alerts  # local client: admin
    checks = text.split('id="checks"', 1)[1].split("</table>", 1)[0]
    assert checks.count("<tr>") == 3


def test_overview_and_model_page_show_health_and_the_alerts_page_lists_alerts(site: TestClient) -> None:
    row = re.search(rf'<tr>\s*<td><a href="/models/{MODEL}">{MODEL}</a></td>(.*?)</tr>', _page(site, "/"), re.S)
    assert (
        row is not None
        and "health health-alert" in row.group(1)
        and f'href="/models/{MODEL}/monitoring"' in row.group(1)
    )
    assert 'class="health health-alert"' in _page(site, f"/models/{MODEL}")
    listed = _page(site, "/alerts")
    assert "mean radius drifted" in listed and f'href="/models/{MODEL}/monitoring"' in listed
    assert "No resolved alerts." in _page(site, "/alerts?status=resolved")
    assert site.get("/alerts?status=bogus").status_code in (400, 422)


def test_a_reader_sees_alerts_without_action_buttons(ws: keel.Workspace) -> None:
    reader, _ = ws.tokens.create("viewer", "reader")
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as client:
        page = _page(client, f"/models/{MODEL}/monitoring", headers={"Authorization": f"Bearer {reader}"})
        assert "mean radius drifted" in page and "data-action" not in page


def test_model_page_shows_the_retraining_timeline(ws: keel.Workspace) -> None:
    features = ["mean radius", "mean texture", "worst area", "mean smoothness"]
    project = keel.Project.from_dict(
        {
            "model": MODEL,
            "data": {"dataset": "cancer@1", "target": "target", "features": features},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 5000}},
        }
    )
    promoted = ws.retraining.train(project)
    ws.retraining.rollback(MODEL, reason="pager")
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as client:
        text = _page(client, f"/models/{MODEL}")
    timeline = text.split('id="timeline"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="outcome-(\w+)">', timeline)
    assert rows == ["rolled_back", "promoted"]
    assert f"v{promoted.version}" in timeline and "pager" in timeline and "roc_auc" in timeline


def test_the_timeline_shows_each_versions_edge_builds(ws: keel.Workspace) -> None:
    features = ["mean radius", "mean texture", "worst area", "mean smoothness"]
    project = keel.Project.from_dict(
        {
            "model": MODEL,
            "data": {"dataset": "cancer@1", "target": "target", "features": features},
            "estimator": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 5000},
                "preprocess": "none",
            },
            "edge": {"targets": [{"mcu": "host"}, {"mcu": "cortex-m0", "quantize": "int8"}], "qemu": False},
        }
    )
    decision = ws.retraining.train(project)
    assert decision.outcome == "rejected"  # a logistic model takes no int8 build: the gate says so
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as client:
        text = _page(client, f"/models/{MODEL}")
    timeline = text.split('id="timeline"', 1)[1].split("</table>", 1)[0]
    assert "<th>Edge builds</th>" in timeline
    assert f'href="/edge?model={MODEL}%40{decision.version}"' in timeline and "c/float32/host 100.0%" in timeline
    assert "c/int8/cortex-m0 not built" in timeline


# -- auth ---------------------------------------------------------------------------------------
def test_admin_sees_promote_buttons_and_a_reader_does_not(ws: keel.Workspace) -> None:
    admin, _ = ws.tokens.create("ops", "admin")
    reader, _ = ws.tokens.create("viewer", "reader")
    ws.models.set_alias(MODEL, "champion", version=2, reason="better auc")
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as client:
        as_admin = _page(client, f"/models/{MODEL}", headers={"Authorization": f"Bearer {admin}"})
        assert re.search(
            r'data-alias="champion"\s+data-version="1" data-reason="set from the dashboard">Set champion', as_admin
        )
        assert 'id="rollback"' in as_admin and 'data-version="1"' in as_admin.split('id="rollback"', 1)[1][:200]
        assert "Roll back champion to v1" in as_admin and "ops · admin" in as_admin
        as_reader = _page(client, f"/models/{MODEL}", headers={"Authorization": f"Bearer {reader}"})
        assert "Set champion" not in as_reader and "Roll back" not in as_reader and 'id="alias-reason"' not in as_reader
        assert "viewer · reader" in as_reader and '<tr id="v2" class="is-champion">' in as_reader


def test_pages_send_browsers_without_a_token_to_login(ws: keel.Workspace) -> None:
    ws.tokens.create("ops", "admin")
    with TestClient(create_app(ws), follow_redirects=False, base_url="http://127.0.0.1") as client:
        response = client.get("/runs?filter=metrics.auc%20%3E%200.5")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fruns%3Ffilter%3Dmetrics.auc%2520%253E%25200.5"
        htmx = client.get("/models", headers={"HX-Request": "true"})
        assert htmx.status_code == 204 and htmx.headers["hx-redirect"].startswith("/login?next=")
        assert client.get("/models", headers={"Authorization": "Bearer keel_nope_x"}).status_code == 303
        assert client.get("/api/v1/models").status_code == 401  # the API still answers JSON
        login = _page(client, "/login?next=/models")
        assert 'name="token"' in login and 'value="/models"' in login


def test_login_sets_an_http_only_strict_cookie_that_opens_pages(ws: keel.Workspace) -> None:
    token, _ = ws.tokens.create("viewer", "reader")
    with TestClient(create_app(ws), follow_redirects=False, base_url="http://127.0.0.1") as client:
        response = client.post("/login", data={"token": token, "next": f"/models/{MODEL}"})
        assert response.status_code == 303 and response.headers["location"] == f"/models/{MODEL}"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"keel_token={token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        page = _page(client, f"/models/{MODEL}")  # the client now sends the cookie
        assert "viewer · reader" in page and 'action="/logout"' in page
        out = client.post("/logout")
        assert out.status_code == 303 and 'keel_token=""' in out.headers["set-cookie"]
        client.cookies.clear()
        assert client.get("/").status_code == 303


def test_login_rejects_unknown_tokens_and_foreign_redirects(ws: keel.Workspace) -> None:
    token, _ = ws.tokens.create("viewer", "reader")
    with TestClient(create_app(ws), follow_redirects=False, base_url="http://127.0.0.1") as client:
        bad = client.post("/login", data={"token": "keel_0000_nope", "next": "/"})
        assert bad.status_code == 401 and "unknown or revoked" in bad.text and "set-cookie" not in bad.headers
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            response = client.post("/login", data={"token": token, "next": target})
            assert response.status_code == 303 and response.headers["location"] == "/"


def test_login_page_says_no_login_is_needed_without_tokens(site: TestClient) -> None:
    text = _page(site, "/login")
    assert "no API tokens yet" in text and 'name="token"' not in text


def test_explain_page_shows_global_importance_and_one_rows_attributions(site: TestClient) -> None:
    pytest.importorskip("shap")
    text = _page(site, f"/models/{MODEL}/explain?row=2")
    specs = {s["title"]: s for s in _specs(text)}
    importance = specs[f"Global importance of {MODEL}@1"]
    values = importance["datasets"][0]["data"]
    assert len(importance["labels"]) == 15 and values == sorted(values, reverse=True) and values[0] > 0
    row = specs["Attributions of row 2"]
    assert {c for c in row["datasets"][0]["colors"]} <= {"#dc2626", "#2563eb"}
    assert "tree (shap TreeExplainer, exact)" in text and "pushed toward" in text
    assert 'href="?row=3&version=1"' in text or 'href="?row=3&amp;version=1"' in text
    assert f'href="/models/{MODEL}/explain"' in _page(site, f"/models/{MODEL}")
    assert site.get("/models/nope/explain").status_code == 404


def test_explain_page_highlights_words_and_draws_pixel_heat_maps(tmp_path: Path) -> None:
    pytest.importorskip("shap")
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_digits
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["great tasty food", "awful bland food", "great service", "awful slow service"] * 25
    frame = pd.DataFrame({"review": texts, "label": ["good", "bad", "good", "bad"] * 25})
    digits = load_digits()
    pixels = pd.DataFrame(digits.data[:300], columns=[f"p{i}" for i in range(64)]).assign(digit=digits.target[:300])
    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester")) as w:
        text_model = make_pipeline(ColumnTransformer([("tfidf", TfidfVectorizer(), "review")]), LogisticRegression())
        text_model.fit(frame[["review"]], frame["label"])
        w.models.register("reviews", text_model, trained_on=w.datasets.add("reviews", frame), X=frame[["review"]])
        image_model = LogisticRegression(max_iter=3000).fit(pixels.drop(columns="digit"), pixels["digit"])
        w.models.register(
            "digits", image_model, trained_on=w.datasets.add("digits", pixels), X=pixels.drop(columns="digit")
        )
        with TestClient(create_app(w), base_url="http://127.0.0.1") as client:
            page = _page(client, "/models/reviews/explain?row=0")
            words = re.findall(
                r'<span class="word" style="background: rgba\((\d+), [^"]*" title="([^"]+)">(\w+)</span>', page
            )
            assert words and {w_ for _, _, w_ in words} <= {
                "great",
                "tasty",
                "food",
                "awful",
                "bland",
                "service",
                "slow",
            }
            assert any(float(t) != 0.0 for _, t, _ in words)
            heat = _page(client, "/models/digits/explain?row=0&image=8x8")
            assert heat.count('class="cell"') == 64
            assert client.get("/models/digits/explain?image=7x7").status_code == 400
