"""Retrieval over HTTP: build an index (writer), list and show it (reader), ask it (predictor); bad input
is a 4xx naming the field and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

import keel
from keel.entities import Role

JSON = {"content-type": "application/json"}


@pytest.fixture
def client(ws: keel.Workspace) -> Iterator[Any]:
    from pydoc_data.topics import topics

    from fastapi.testclient import TestClient

    from keel.server import create_app

    names = sorted(topics)[:12] + ["with"]
    ws.datasets.add("docs", pd.DataFrame({"text": [topics[t] for t in names]}))
    with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def test_index_list_show_and_ask(client: Any, ws: keel.Workspace) -> None:
    made = client.post(
        "/api/v1/genai/indexes", json={"name": "docs", "corpus": "docs@1", "questions": 10}, headers=JSON
    )
    assert made.status_code == 201, made.text
    assert made.json()["ref"] == "docs@1" and made.json()["spec"]["chunks"] > 0
    assert [i["ref"] for i in client.get("/api/v1/genai/indexes").json()] == ["docs@1"]
    assert client.get("/api/v1/genai/indexes/docs?version=1").json()["index"]["dataset"] == "docs@1"
    asked = client.post(
        "/api/v1/genai/docs/ask", json={"question": "how does the with statement work", "k": 2}, headers=JSON
    )
    assert asked.status_code == 200, asked.text
    passages = asked.json()["passages"]
    assert len(passages) == 2 and passages[0]["rank"] == 1 and "document" in passages[0]
    reader = {"Authorization": f"Bearer {ws.tokens.create('r', Role.READER)[0]}", **JSON}
    predictor = {"Authorization": f"Bearer {ws.tokens.create('p', Role.PREDICTOR)[0]}", **JSON}
    assert client.post("/api/v1/genai/docs/ask", json={"question": "with"}, headers=reader).status_code == 403
    assert client.post("/api/v1/genai/docs/ask", json={"question": "with"}, headers=predictor).status_code == 200
    build = {"name": "x", "corpus": "docs@1"}
    assert client.post("/api/v1/genai/indexes", json=build, headers=predictor).status_code == 403


def test_bad_input_is_refused(client: Any) -> None:
    assert (
        client.post("/api/v1/genai/indexes", json={"name": "d", "corpus": "nothing@1"}, headers=JSON).status_code == 404
    )
    overlap = client.post(
        "/api/v1/genai/indexes", json={"name": "d", "corpus": "docs@1", "max_words": 20, "overlap": 30}, headers=JSON
    )
    assert overlap.status_code == 400 and "overlap" in overlap.text
    assert client.post("/api/v1/genai/docs/ask", json={"question": ""}, headers=JSON).status_code == 422
    assert client.post("/api/v1/genai/docs/ask", json={"question": "with"}, headers=JSON).status_code == 404
    assert client.get("/api/v1/genai/indexes").json() == []
