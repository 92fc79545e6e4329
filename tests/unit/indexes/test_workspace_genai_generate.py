"""`ws.genai.generate` / `stream` from a registered language model (limits named, non-lm models refused),
and `ws.genai.ask(..., model=)`: an answer generated from the retrieved passages, with its citations."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import keel
from keel.errors import InvalidInputError
from keel.genai.answer import find_citations
from keel.genai.lm import Generation
from keel.workspace.genai_answer import LimitError

sys.path.insert(0, str(Path(__file__).parents[1] / "genai"))
from _lm_fixtures import corpus, train_tiny  # noqa: E402


@pytest.fixture(scope="module")
def lws(tmp_path_factory: pytest.TempPathFactory) -> keel.Workspace:
    ws = keel.Workspace(keel.Settings(home=tmp_path_factory.mktemp("ws"), author="tester", genai_max_tokens=200))
    ws.models.register("tiny", train_tiny())
    ws.models.register("linear", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    return ws


def test_streamed_pieces_join_to_the_whole_text_under_a_seed(lws: keel.Workspace) -> None:
    whole = lws.genai.generate("tiny", "def add_", max_tokens=30, temperature=0.9, top_k=50, seed=7)
    assert isinstance(whole, Generation) and 0 < len(whole.tokens) <= 30
    assert whole.finish_reason == ("length" if len(whole.tokens) == 30 else "eos")
    items = list(lws.genai.stream("tiny@1", "def add_", max_tokens=30, temperature=0.9, top_k=50, seed=7))
    *pieces, last = items
    assert all(isinstance(p, str) for p in pieces) and len(pieces) > 1
    assert isinstance(last, Generation) and "".join(pieces) == last.text == whole.text
    assert last.tokens == whole.tokens
    stopped = lws.genai.generate("tiny", "def add_", max_tokens=60, temperature=0, stop=["\n"])
    assert stopped.finish_reason == "stop" and "\n" not in stopped.text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 8001}, "prompt"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 201}, "max_tokens"),  # this workspace's genai_max_tokens is 200
        ({"temperature": -0.1}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
    ],
)
def test_requests_past_the_limits_are_refused_naming_the_field(
    lws: keel.Workspace, kwargs: dict[str, object], field: str
) -> None:
    call = {"prompt": "def ", "max_tokens": 8, **kwargs}
    with pytest.raises(LimitError, match=field) as caught:
        lws.genai.generate("tiny", **call)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_model_that_is_not_a_language_model_is_refused(lws: keel.Workspace) -> None:
    with pytest.raises(InvalidInputError, match=r"linear@1 is a 'sklearn' model, not a language model"):
        lws.genai.generate("linear", "hello")
    with pytest.raises(InvalidInputError, match="not a language model"):
        lws.genai.stream("linear", "hello")  # refused at the call, not at the first piece


def test_ask_with_a_model_answers_from_the_passages_with_citations(lws: keel.Workspace) -> None:
    lws.datasets.add("code", pd.DataFrame({"text": corpus(40)}))
    lws.genai.index("code", "code@1", max_words=30, overlap=5, questions=5)
    plain = lws.genai.ask("code", "def add_3(x, y): return", k=3)
    assert plain.answer is None and plain.model is None and plain.citations == () and plain.supported is None
    answer = lws.genai.ask("code", "def add_3(x, y): return", k=3, model="tiny", max_tokens=40, seed=0)
    assert answer.model == "tiny@1" and answer.passages == plain.passages
    assert isinstance(answer.answer, str) and answer.answer
    texts = [p["text"] for p in answer.passages]
    assert answer.citations == find_citations(answer.answer, texts).ranks
    assert set(answer.citations) <= {1, 2, 3} and answer.supported is bool(answer.citations)
    again = lws.genai.ask("code", "def add_3(x, y): return", k=3, model="tiny", max_tokens=40, seed=0)
    assert again == answer  # the seed makes the answer repeatable
    with pytest.raises(InvalidInputError, match="not a language model"):
        lws.genai.ask("code", "def add", model="linear")
