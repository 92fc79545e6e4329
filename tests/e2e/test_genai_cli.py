"""`keel genai` end to end: an index over a corpus version, listed and shown with its retrieval
quality, asked a question (cited passages), and mistakes as one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

import keel
from keel.settings import Settings


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from pydoc_data.topics import topics

    home = tmp_path / "ws"
    names = sorted(topics)[:10] + ["with"]
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        ws.datasets.add("docs", pd.DataFrame({"topic": names, "text": [topics[t] for t in names]}))
    return home


def test_index_list_show_and_ask(home: Path) -> None:
    code, out, err = keel_cli(home, "genai", "index", "docs", "docs@1", "--text-column", "text", "--questions", "10")
    assert code == 0, err
    assert "index docs@1 over docs@1" in out and "recall@5" in out and "hybrid" in out
    assert [i["ref"] for i in keel_json(home, "genai", "list")] == ["docs@1"]
    code, out, _ = keel_cli(home, "genai", "ask", "docs", "how does the with statement work", "--k", "2")
    assert code == 0 and "docs@1 (hybrid): how does the with statement work" in out and "[2]" in out
    shown = keel_json(home, "genai", "show", "docs")["spec"]
    assert shown["corpus_documents"] <= 11 and shown["chunks"] >= shown["corpus_documents"]


def test_mistakes_are_one_line_errors(home: Path) -> None:
    assert_one_line_error(keel_cli(home, "genai", "index", "docs", "docs@1"), code=1, contains="2 text columns")
    assert_one_line_error(keel_cli(home, "genai", "ask", "nothing", "why"), code=1, contains="No index named 'nothing'")


def test_loading_the_embedder_prints_no_progress_bar_between_the_cli_lines() -> None:
    # a fresh process (the in-process embedder is cached): transformers 5 drew 'Loading weights' on stderr
    import subprocess
    import sys

    code = "from keel.genai.embeddings import Embedder; print(Embedder().embed(['a question']).shape)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "(1, 384)", done.stderr
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr, done.stderr
