"""`keel genai generate` (a registered language model completes a prompt; the seed repeats it) and
`keel genai ask --model` (the answer, its citations, or 'unsupported' in plain words)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

import keel
from keel.settings import Settings

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "genai"))
from _lm_fixtures import corpus, train_tiny  # noqa: E402


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("ws")
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        ws.models.register("tiny", train_tiny())
        ws.models.register("linear", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
        ws.datasets.add("code", pd.DataFrame({"text": corpus(30)}))
        ws.genai.index("code", "code@1", max_words=30, overlap=5, questions=5)
    return home


def test_generate_prints_the_completion_and_repeats_under_a_seed(home: Path) -> None:
    args = ("genai", "generate", "tiny@1", "def add_", "--max-tokens", "12", "--temperature", "0.9", "--seed", "5")
    code, out, err = keel_cli(home, *args)
    assert code == 0, err
    made: dict[str, Any] = keel_json(home, *args, "--top-k", "400", "--top-p", "1")
    assert made["model"] == "tiny@1" and 0 < made["completion_tokens"] <= 12 and made["prompt_tokens"] == 5
    assert out.startswith("def add_" + made["text"])  # top-k past the vocabulary and top-p 1 change nothing
    assert f"{made['completion_tokens']} tokens ({made['finish_reason']})" in out
    stopped = keel_json(home, "genai", "generate", "tiny", "def add_", "--temperature", "0", "--stop", "\n")
    assert stopped["finish_reason"] == "stop" and "\n" not in stopped["text"]


def test_generate_mistakes_are_one_line_errors(home: Path) -> None:
    assert_one_line_error(
        keel_cli(home, "genai", "generate", "linear", "hello"), code=1, contains="not a language model"
    )
    assert_one_line_error(
        keel_cli(home, "genai", "generate", "tiny", "def", "--max-tokens", "5000"), code=1, contains="max_tokens"
    )


def test_ask_with_a_model_prints_the_answer_and_its_citations(home: Path) -> None:
    args = ("genai", "ask", "code", "def add_3(x, y): return", "--k", "3", "--model", "tiny", "--max-tokens", "20")
    code, out, err = keel_cli(home, *args)
    assert code == 0, err
    answer = keel_json(home, *args)
    said = " ".join(f"answer (tiny@1): {answer['answer']}".split())
    assert answer["model"] == "tiny@1" and said in " ".join(out.split())  # (a narrow terminal wraps lines)
    if answer["supported"]:
        assert "cites passages " + ", ".join(f"[{r}]" for r in answer["citations"]) in out
    else:
        assert answer["citations"] == [] and "unsupported: the answer cites none of the retrieved passages" in out
    assert "[3]" in out  # the passages are still listed
