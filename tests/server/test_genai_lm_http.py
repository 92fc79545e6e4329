"""Training and tuning language models over HTTP: queued as jobs (202 + Location), the writer role
required, and unknown references or bad options refused before anything is queued."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

import keel
from keel.entities import Role

JSON = {"content-type": "application/json"}
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 400}


@pytest.fixture
def client(ws: keel.Workspace) -> Iterator[Any]:
    from pydoc_data.topics import topics

    from fastapi.testclient import TestClient

    from keel.server import create_app

    ws.datasets.add("docs", pd.DataFrame({"text": [topics[t] for t in sorted(topics)[:12]]}))
    with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def test_training_is_a_job_for_writers(client: Any, ws: keel.Workspace) -> None:
    body = {"name": "code", "corpus": "docs@1", "config": TINY, "steps": 5, "batch": 4}
    predictor = {"Authorization": f"Bearer {ws.tokens.create('p', Role.PREDICTOR)[0]}", **JSON}
    writer = {"Authorization": f"Bearer {ws.tokens.create('w', Role.WRITER)[0]}", **JSON}  # tokens switch auth on
    assert client.post("/api/v1/genai/models", json=body, headers=predictor).status_code == 403
    started = client.post("/api/v1/genai/models", json=body, headers=writer)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["kind"] == "genai_train" and started.headers["location"] == job["url"] == f"/api/v1/jobs/{job['id']}"
    assert job["payload"]["config"] == TINY and job["payload"]["corpus"] == "docs@1"
    ws.jobs.wait(timeout=120)
    finished = ws.jobs.get(job["id"])
    assert finished.status == "succeeded", finished.error
    assert finished.result["model"] == "code@1"
    tune = {"base": "code@1", "corpus": "docs@1", "method": "full", "steps": 2, "batch": 2}
    assert client.post("/api/v1/genai/tune", json=tune, headers=predictor).status_code == 403
    tuned = client.post("/api/v1/genai/tune", json=tune, headers=writer)
    assert tuned.status_code == 202 and tuned.json()["kind"] == "genai_tune", tuned.text
    assert tuned.json()["payload"]["model"] == "code@1"
    ws.jobs.wait(timeout=120)
    assert ws.jobs.get(tuned.json()["id"]).result["model"] == "code@2"


def test_bad_requests_queue_nothing(client: Any, ws: keel.Workspace) -> None:
    assert (
        client.post("/api/v1/genai/models", json={"name": "m", "corpus": "nothing@1"}, headers=JSON).status_code == 404
    )
    assert (
        client.post("/api/v1/genai/tune", json={"base": "nothing@1", "corpus": "docs@1"}, headers=JSON).status_code
        == 404
    )
    bad = client.post("/api/v1/genai/models", json={"name": "m", "corpus": "docs@1", "config": "huge"}, headers=JSON)
    assert bad.status_code == 422 and "config" in bad.text
    share = client.post(
        "/api/v1/genai/tune", json={"base": "x@1", "corpus": "docs@1", "valid_share": 0.9}, headers=JSON
    )
    assert share.status_code == 422 and "valid_share" in share.text
    assert ws.jobs.list() == []
