"""Edge builds over HTTP and on the dashboard: build (writer), list, show, download the zip (readers),
errors naming the limit, and the Edge page with size bars and a download link."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

import keel
from keel.entities import Role

JSON = {"content-type": "application/json"}


@pytest.fixture
def edge_ws(ws: keel.Workspace) -> keel.Workspace:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 17, size=(300, 6)), columns=[f"p{i}" for i in range(6)])
    frame["label"] = (frame["p0"] + frame["p1"] > 16).astype(int)
    ws.datasets.add("pixels", frame)
    X = frame.drop(columns=["label"])
    model = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, frame["label"])
    ws.models.register("pixels-forest", model, trained_on="pixels@1", X=X)
    return ws


@pytest.fixture
def client(edge_ws: keel.Workspace) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(edge_ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def test_build_list_show_download_and_the_page(client: Any) -> None:
    body = {"model": "pixels-forest@1", "target": "c", "quantize": "int16", "mcu": "cortex-m4", "qemu": False}
    made = client.post("/api/v1/edge/builds", json=body, headers=JSON)
    assert made.status_code == 201, made.text
    build = made.json()
    assert build["model"] == "pixels-forest@1" and build["quantize"] == "int16"
    assert build["report"]["class_agreement"] == 1.0  # integer pixels: the int16 tables are lossless
    listed = client.get("/api/v1/edge/builds?model=pixels-forest@1").json()
    assert [b["id"] for b in listed] == [build["id"]]
    assert client.get(f"/api/v1/edge/builds/{build['id']}").json()["digest"] == build["digest"]

    download = client.get(f"/api/v1/edge/builds/{build['id']}/download")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert any(n.endswith(".c") for n in names) and any(n.endswith(".h") for n in names)
    assert "README.md" in names and "report.json" in names

    page = client.get("/edge")
    assert page.status_code == 200 and "pixels-forest@1" in page.text
    assert f'href="/api/v1/edge/builds/{build["id"]}/download"' in page.text
    assert "100.00%" in page.text  # the agreement


def test_a_build_can_run_as_a_job(client: Any, edge_ws: keel.Workspace) -> None:
    body = {"model": "pixels-forest@latest", "quantize": "int16", "mcu": "host", "qemu": False}
    queued = client.post("/api/v1/edge/builds?queue=true", json=body, headers=JSON)
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert job["kind"] == "edge_build" and queued.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["payload"] == {
        "model": "pixels-forest@1",
        "target": "c",
        "quantize": "int16",
        "mcu": "host",
        "qemu": False,
    }
    deadline = time.monotonic() + 60
    while (state := client.get(job["url"]).json())["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state["status"] == "succeeded", state
    assert client.get(f"/api/v1/edge/builds/{state['result']['build']}").json()["quantize"] == "int16"
    unknown = client.post("/api/v1/edge/builds?queue=true", json={"model": "nothing@1"}, headers=JSON)
    assert unknown.status_code == 404  # refused now, not as a failed job later


def test_bad_builds_are_refused_naming_the_problem(client: Any) -> None:
    forest_int8 = {"model": "pixels-forest@1", "target": "c", "quantize": "int8"}
    refused = client.post("/api/v1/edge/builds", json=forest_int8, headers=JSON)
    assert 400 <= refused.status_code < 500 and "int8" in refused.text
    assert (
        client.post("/api/v1/edge/builds", json={"model": "pixels-forest@1", "mcu": "z80"}, headers=JSON).status_code
        == 422
    )
    assert client.post("/api/v1/edge/builds", json={"model": "nothing@1"}, headers=JSON).status_code == 404
    assert client.get("/api/v1/edge/builds").json() == []  # nothing stored by a refused build
    assert client.get("/api/v1/edge/builds/99/download").status_code == 404


def test_building_needs_a_writer(client: Any, edge_ws: keel.Workspace) -> None:
    reader = {"Authorization": f"Bearer {edge_ws.tokens.create('r', Role.READER)[0]}", **JSON}
    assert client.post("/api/v1/edge/builds", json={"model": "pixels-forest@1"}, headers=reader).status_code == 403
    assert client.get("/api/v1/edge/builds", headers=reader).status_code == 200
