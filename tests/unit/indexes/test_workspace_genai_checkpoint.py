"""`ws.genai.tune` from a local GPT-2 checkpoint directory: read from its files (safetensors only), tuned
like a registered model, registered with the directory and the weights' digest as its base; pickled
weights and unreadable bases refused before anything is stored."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "genai"))
from _gpt2_fixtures import TEXTS, save_tiny_gpt2  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[keel.Workspace, Path]:
    ws = keel.Workspace(keel.Settings(home=tmp_path_factory.mktemp("ws"), author="tester"))
    ws.datasets.add("code", pd.DataFrame({"text": [t * 3 for t in TEXTS[:30]]}))
    return ws, save_tiny_gpt2(tmp_path_factory.mktemp("ckpt") / "tiny-gpt2")


def test_tune_from_a_checkpoint_directory(setup: tuple[keel.Workspace, Path]) -> None:
    ws, ckpt = setup
    made = ws.genai.tune(ckpt, "code@1", method="full", steps=4, batch=2, lr=1e-3, valid_share=0.2)
    assert made.ref == "tiny-gpt2@1" and made.flavor == "lm"  # the directory's name is the default name
    digest = "sha256:" + hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()
    assert made.tags["keel.base"] == "checkpoint:tiny-gpt2" and made.tags["keel.base_digest"] == digest
    assert made.tags["keel.genai"] == "tune-full" and made.tags["keel.corpus"] == "code@1"
    run = ws.runs.get(made.run_id)
    assert run.params["checkpoint"] == str(ckpt.resolve()) and run.params["base"] == "checkpoint:tiny-gpt2"
    m = made.metrics
    assert m["steps"] == 4 and 1.0 < m["val_perplexity"] < m["base_perplexity"] * 2  # measured, both finite
    lm = ws.models.load(made.ref).model
    assert lm.config.vocab_size == 322 and lm.tokenizer().bos_id == 320  # GPT-2's 320 + <|bos|>, <|pad|>
    # a string that is not a model reference names a directory too (./dir on the command line), LoRA this time
    lora = ws.genai.tune(str(ckpt), "code@1", name="lora-tuned", r=2, steps=2, batch=2, valid_share=0.2)
    assert lora.ref == "lora-tuned@1" and ws.genai.adapter(lora.ref).r == 2
    assert lora.metrics["adapter_perplexity"] == pytest.approx(lora.metrics["val_perplexity"], rel=1e-4)


def test_pickles_and_non_checkpoints_are_refused(setup: tuple[keel.Workspace, Path], tmp_path: Path) -> None:
    ws, ckpt = setup
    pickled = tmp_path / "pickled"
    shutil.copytree(ckpt, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")  # never opened: refused by name
    with pytest.raises(InvalidInputError, match="pytorch_model.bin"):
        ws.genai.tune(pickled, "code@1", steps=1)
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(ckpt, no_tok)
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(InvalidInputError, match="tokenizer.json"):
        ws.genai.tune(no_tok, "code@1", steps=1)
    with pytest.raises(InvalidInputError, match="neither a model reference"):
        ws.genai.tune(str(tmp_path / "missing"), "code@1", steps=1)
    (pickled / "config.json").write_text('{"model_type": "llama"}')
    (pickled / "model.safetensors").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="model_type"):
        ws.genai.tune(pickled, "code@1", steps=1)
    shutil.copy(ckpt / "config.json", pickled / "config.json")
    with pytest.raises(InvalidInputError, match="not a safetensors file"):
        ws.genai.tune(pickled, "code@1", steps=1)
    assert [m.name for m in ws.models.list()] in ([], ["lora-tuned", "tiny-gpt2"], ["tiny-gpt2", "lora-tuned"])
