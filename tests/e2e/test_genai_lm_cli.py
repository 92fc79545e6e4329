"""`keel genai train` / `keel genai tune` end to end: a tiny model trained on a corpus version and shown with
its perplexity table, tuned with LoRA (and queued as a job), and mistakes as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

import keel
from keel.settings import Settings

TINY = json.dumps({"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 400})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pydoc_data.topics import topics

    home = tmp_path_factory.mktemp("ws")
    names = sorted(topics)[:20]
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        ws.datasets.add("docs", pd.DataFrame({"text": [topics[t] for t in names]}))
    return home


def test_train_then_tune_with_lora(home: Path) -> None:
    code, out, err = keel_cli(
        home, "genai", "train", "code", "docs@1", "--config", TINY, "--steps", "10", "--batch", "4"
    )
    assert code == 0, err
    assert "registered code@1 from docs@1" in out and "kneser-ney trigram" in out and "bits/byte" in out
    report = keel_json(home, "genai", "tune", "code@1", "docs@1", "--lora", "r=2,alpha=4", "--steps", "5")
    assert report["model"] == "code@2" and [r["kind"] for r in report["rows"]][:2] == ["domain", "base"]
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        assert ws.genai.adapter("code@2").r == 2 and ws.models.get("code@2").tags["keel.genai"] == "tune-lora"
    queued = keel_json(home, "genai", "tune", "code@1", "docs@1", "--full", "--queue")
    assert queued["kind"] == "genai_tune" and queued["status"] == "queued"
    assert queued["payload"] == {
        "model": "code@1",
        "corpus": "docs@1",
        "method": "full",
        "steps": 200,
        "batch": 16,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "valid_share": 0.1,
    }


def test_mistakes_are_one_line_errors(home: Path) -> None:
    assert_one_line_error(
        keel_cli(home, "genai", "tune", "code@1", "docs@1", "--lora", "rank=8"), code=2, contains="'rank=8' is not KEY"
    )
    assert_one_line_error(
        keel_cli(home, "genai", "tune", "code@1", "docs@1", "--lora", "r=8", "--full"), code=2, contains="not both"
    )
    assert_one_line_error(
        keel_cli(home, "genai", "train", "m", "docs@1", "--config", "huge"), code=1, contains="unknown config preset"
    )
