"""`keel genai tune ./DIR CORPUS@V`: a local GPT-2 checkpoint folder tuned and registered with its perplexity
table (the base row named checkpoint:<folder>); queueing a folder is refused as a one-line error."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

import keel
from keel.settings import Settings

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "genai"))
from _gpt2_fixtures import TEXTS, save_tiny_gpt2  # noqa: E402


def test_tune_a_checkpoint_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        ws.datasets.add("code", pd.DataFrame({"text": [t * 3 for t in TEXTS[:30]]}))
    save_tiny_gpt2(tmp_path / "tiny-gpt2")
    monkeypatch.chdir(tmp_path)
    args = ("genai", "tune", "./tiny-gpt2", "code@1", "--full", "--steps", "2", "--batch", "2", "--valid-share", "0.2")
    report = keel_json(home, *args)
    assert report["model"] == "tiny-gpt2@1" and report["corpus"] == "code@1"
    base = [row for row in report["rows"] if row["kind"] == "base"]
    assert base[0]["name"] == "checkpoint:tiny-gpt2" and base[0]["perplexity"] > 1.0
    assert_one_line_error(keel_cli(home, *args, "--queue"), code=2, contains="drop --queue")
