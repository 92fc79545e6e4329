"""POST /api/v1/models/{name}/generate: whole and streamed (server-sent events) text equal under a seed,
limits answered 422 naming the field, the predictor role required, every generation in the prediction
log (prompt, text, version, tokens, latency), and a model that is not a language model refused."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

import keel
from keel.entities import Role
from keel.server.state import state_of

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "genai"))
from _lm_fixtures import train_tiny  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

URL = "/api/v1/models/tiny/generate"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def tiny() -> Any:
    return train_tiny()


@pytest.fixture
def lm_ws(ws: keel.Workspace, tiny: Any) -> keel.Workspace:
    ws.models.register("tiny", tiny)  # v1
    ws.models.register("tiny", tiny)  # v2: the same weights, served by ?version=
    ws.models.set_alias("tiny", "champion", version=2, reason="served")
    ws.models.register("linear", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    ws.models.set_alias("linear", "champion", version=1, reason="served")
    return ws


@pytest.fixture
def client(lm_ws: keel.Workspace) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(lm_ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each server-sent event; 'message' when unnamed."""
    out = []
    for block in text.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        out.append((name, json.loads(data)))
    return out


def test_whole_and_streamed_text_are_equal_under_a_seed(client: Any) -> None:
    body = {"prompt": "def add_", "max_tokens": 24, "temperature": 0.9, "top_p": 0.95, "seed": 11}
    whole = client.post(URL + "?version=2", json=body, headers=JSON)
    assert whole.status_code == 200, whole.text
    w = whole.json()
    assert (w["model"], w["version"]) == ("tiny", 2) and w["text"] and w["latency_ms"] > 0
    assert w["finish_reason"] in ("length", "eos") and 0 < w["completion_tokens"] <= 24
    assert w["prompt_tokens"] == 5 and w["prompt_truncated"] is False and len(w["id"]) == 32
    streamed = client.post(URL + "?version=2", json={**body, "stream": True}, headers=JSON)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed.text)
    pieces = [data["text"] for name, data in events if name == "message"]
    assert len(pieces) > 1 and "".join(pieces) == w["text"]
    name, done = events[-1]
    assert name == "done" and done["text"] == w["text"] and done["id"] != w["id"]
    assert {k: done[k] for k in ("finish_reason", "prompt_tokens", "completion_tokens", "version")} == {
        k: w[k] for k in ("finish_reason", "prompt_tokens", "completion_tokens", "version")
    }
    # both counted in the metrics: the streamed one too, once its last token was sent
    metrics = client.get("/metrics").text
    assert 'keel_predictions_total{model="tiny",version="2"} 2.0' in metrics
    assert 'keel_prediction_duration_seconds_count{model="tiny",version="2"} 2.0' in metrics


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 8001}, "prompt"),
        ({"prompt": "def", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "def", "max_tokens": 1025}, "max_tokens"),
        ({"prompt": "def", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "def", "temperature": -1}, "temperature"),
        ({"prompt": "def", "top_k": 0}, "top_k"),
        ({"prompt": "def", "top_p": 0}, "top_p"),
        ({"prompt": "def", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "def", "seed": -1}, "seed"),
    ],
)
def test_limits_are_422_naming_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    r = client.post(URL, json=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["error"]), r.json()


def test_a_model_that_is_not_a_language_model_is_refused(client: Any) -> None:
    r = client.post("/api/v1/models/linear/generate", json={"prompt": "hello"}, headers=JSON)
    assert r.status_code == 400 and "not a language model" in r.json()["error"]["detail"]
    assert ("linear", 1) not in state_of(client.app).cache.keys()  # refused before its artifact was read
    assert client.post("/api/v1/models/nothing/generate", json={"prompt": "x"}, headers=JSON).status_code == 404


def test_a_reader_is_refused_and_a_predictor_allowed(client: Any, lm_ws: keel.Workspace) -> None:
    reader = {"Authorization": f"Bearer {lm_ws.tokens.create('r', Role.READER)[0]}", **JSON}
    predictor = {"Authorization": f"Bearer {lm_ws.tokens.create('p', Role.PREDICTOR)[0]}", **JSON}
    body = {"prompt": "class ", "max_tokens": 4}
    assert client.post(URL, json=body, headers=reader).status_code == 403
    assert client.post(URL, json={**body, "stream": True}, headers=reader).status_code == 403
    assert client.post(URL, json=body, headers=predictor).status_code == 200


def test_every_generation_is_in_the_prediction_log(lm_ws: keel.Workspace, client: Any) -> None:
    whole = client.post(URL, json={"prompt": "def add_", "max_tokens": 6, "seed": 1}, headers=JSON).json()
    streamed = client.post(URL, json={"prompt": "class P", "max_tokens": 5, "seed": 2, "stream": True}, headers=JSON)
    done = _events(streamed.text)[-1][1]
    client.__exit__(None, None, None)  # the server's shutdown writes the buffer
    log = lm_ws.predictions.window("tiny").set_index("__id")
    assert len(log) == 2
    for answer, prompt, stream in ((whole, "def add_", False), (done, "class P", True)):
        row = log.loc[answer["id"]]
        assert row["prompt"] == prompt and row["__prediction"] == answer["text"] and row["stream"] == stream
        assert row["__version"] == answer["version"] == 2  # the champion without ?alias= or ?version=
        assert row["prompt_tokens"] == answer["prompt_tokens"]
        assert row["completion_tokens"] == answer["completion_tokens"] > 0
        assert row["finish_reason"] == answer["finish_reason"] and row["__latency_ms"] > 0
        assert row["__error"] is None or row["__error"] != row["__error"]  # None or NaN: no error


def test_a_failure_once_streaming_is_an_error_event_and_logged(
    lm_ws: keel.Workspace, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.server.routes.generate as route

    def failing(lm: Any, prompt: str, sampling: Any) -> Iterator[str]:
        yield "def"
        raise RuntimeError("the model broke")

    monkeypatch.setattr(route, "complete_stream", failing)
    r = client.post(URL, json={"prompt": "x", "max_tokens": 3, "stream": True}, headers=JSON)
    assert r.status_code == 200
    events = _events(r.text)
    assert events[0] == ("message", {"text": "def"})
    assert events[-1] == ("error", {"error": "RuntimeError: the model broke"})
    client.__exit__(None, None, None)
    log = lm_ws.predictions.window("tiny")
    assert len(log) == 1 and log["__error"].iloc[0] == "the model broke" and log["finish_reason"].iloc[0] == "error"


def test_ask_with_a_model_answers_with_citations(lm_ws: keel.Workspace, client: Any) -> None:
    import pandas as pd
    from _lm_fixtures import corpus

    lm_ws.datasets.add("code", pd.DataFrame({"text": corpus(30)}))
    lm_ws.genai.index("code", "code@1", max_words=30, overlap=5, questions=5)
    body = {"question": "def add_3(x, y): return", "k": 3, "model": "tiny@1", "max_tokens": 20, "seed": 0}
    r = client.post("/api/v1/genai/code/ask", json=body, headers=JSON)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["model"] == "tiny@1" and isinstance(a["answer"], str) and len(a["passages"]) == 3
    assert set(a["citations"]) <= {1, 2, 3} and a["supported"] is bool(a["citations"])
    assert client.post("/api/v1/genai/code/ask", json=body, headers=JSON).json() == a  # the seed repeats it
    plain = client.post("/api/v1/genai/code/ask", json={"question": "def add"}, headers=JSON).json()
    assert plain["answer"] is None and plain["supported"] is None and plain["citations"] == []
    wrong = client.post("/api/v1/genai/code/ask", json={**body, "model": "linear"}, headers=JSON)
    assert wrong.status_code == 400 and "not a language model" in wrong.json()["error"]["detail"]
