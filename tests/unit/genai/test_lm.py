"""The GPT, its training and its bytes: presets, KV cache, loss falls, determinism, safe round trip."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import save

from keel.errors import InvalidInputError
from keel.genai.lm import PRESETS, TrainedLM, count_parameters
from keel.genai.lm_io import lm_from_bytes, lm_to_bytes
from keel.genai.model import GPT, KVCache, decode_step
from keel.genai.train import perplexity, train_lm

from ._lm_fixtures import TINY, corpus, train_tiny


@pytest.fixture(scope="module")
def lm() -> TrainedLM:
    return train_tiny()


def test_import_keel_genai_does_not_import_torch() -> None:
    code = "import sys, keel.genai; print('torch' in sys.modules, 'tokenizers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_presets_have_the_stated_parameter_counts() -> None:
    counts = {name: count_parameters(cfg) for name, cfg in PRESETS.items()}
    assert counts == {"tiny": 1_071_872, "small": 4_273_664, "base": 12_318_720}
    assert sum(p.numel() for p in GPT(PRESETS["tiny"]).parameters()) == counts["tiny"]


def test_linear_layers_carry_the_names_lora_targets() -> None:
    names = {n for n, m in GPT(TINY).named_modules() if isinstance(m, torch.nn.Linear)}
    assert names == {f"blocks.{i}.{s}" for i in range(2) for s in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}


def test_kv_cache_gives_the_logits_of_a_full_forward_pass() -> None:
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    ids = torch.randint(0, TINY.vocab_size, (1, 20))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(TINY)
        steps = [model(ids[:, :12], cache)]  # prefill, then one token at a time
        steps += [model(ids[:, t : t + 1], cache) for t in range(12, 20)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_training_loss_falls_and_validation_is_measured(lm: TrainedLM) -> None:
    losses = [loss for _, loss in lm.loss_curve]
    assert len(losses) == 60 and lm.steps == 60
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0  # starts near ln(vocab) = 5.7
    assert losses[0] == pytest.approx(math.log(lm.config.vocab_size), abs=0.5)
    assert [s for s, _ in lm.val_curve] == [12, 24, 36, 48, 60]
    assert lm.val_curve[-1][1] < lm.val_curve[0][1]
    assert lm.val_perplexity == pytest.approx(perplexity(lm, corpus(120)[100:]), rel=1e-9)
    assert lm.tokens_seen == 60 * 8 * 32 and lm.tokens_per_s > 0 and lm.n_params == count_parameters(lm.config)


def test_training_is_deterministic_for_a_seed_on_cpu(lm: TrainedLM) -> None:
    again = train_tiny()
    assert again.loss_curve == lm.loss_curve
    assert all(np.array_equal(again.state[k], lm.state[k]) for k in lm.state)
    other = train_tiny(steps=5, seed=1)
    assert other.loss_curve[0] != lm.loss_curve[0]


def test_progress_is_reported_every_ten_steps() -> None:
    seen: list[tuple[int, float, float]] = []
    train_lm(corpus(20), config=TINY, steps=20, batch=2, progress=lambda *a: seen.append(a))
    assert [s for s, _, _ in seen] == [10, 20] and all(r > 0 for _, _, r in seen)


def test_unusable_training_arguments_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown preset 'huge'"):
        train_lm(corpus(5), preset="huge", steps=1)
    with pytest.raises(InvalidInputError, match="precision must be 'auto', 'fp32' or 'bf16'"):
        train_lm(corpus(5), config=TINY, steps=1, precision="fp16")
    with pytest.raises(InvalidInputError, match="block_size 32 needs at least 33"):
        train_lm(["hi"], config=TINY, steps=1)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA GPU"):
            train_lm(corpus(5), config=TINY, steps=1, device="cuda")


def test_bytes_round_trip_gives_identical_logits(lm: TrainedLM) -> None:
    data = lm_to_bytes(lm)
    back = lm_from_bytes(data)
    assert b"__torch__" not in data and not data.startswith(b"\x80")  # safetensors, not pickle
    ids = torch.tensor([[0, 5, 9, 77, 12, 3]])
    with torch.no_grad():
        assert torch.equal(back.module()(ids), lm.module()(ids))
    assert (back.config, back.tokenizer_json, back.loss_curve, back.val_curve) == (
        lm.config, lm.tokenizer_json, lm.loss_curve, lm.val_curve,
    )  # fmt: skip
    assert back.val_perplexity == lm.val_perplexity


def _with_state(lm: TrainedLM, state: dict[str, np.ndarray]) -> bytes:
    """A file with lm's metadata but other tensors."""
    return bytes(save(state, {"keel": json.dumps(_meta(lm_to_bytes(lm)))}))


def _meta(data: bytes) -> dict[str, object]:
    (n,) = struct.unpack("<Q", data[:8])
    return dict(json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["keel"]))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda lm, b: b"", "at least an 8-byte header"),
        (lambda lm, b: b"\xff" * 64, "header claims"),
        (lambda lm, b: b[: len(b) // 2], "does not load"),
        (lambda lm, b: _with_state(lm, {**lm.state, "evil.weight": np.zeros(2, np.float32)}), "unknown tensors"),
        (lambda lm, b: _with_state(lm, {k: v for k, v in lm.state.items() if k != "ln_f.bias"}), "missing tensors"),
        (lambda lm, b: _with_state(lm, {**lm.state, "ln_f.bias": np.zeros(3, np.float32)}), "shape"),
        (lambda lm, b: save(lm.state), "no 'keel' JSON entry"),
    ],
)
def test_malformed_bytes_are_refused_naming_the_problem(lm: TrainedLM, mangle: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        lm_from_bytes(mangle(lm, lm_to_bytes(lm)))  # type: ignore[operator]


def test_wrong_format_tag_and_nonfinite_weights_are_refused(lm: TrainedLM) -> None:
    meta = _meta(lm_to_bytes(lm))
    bad_tag = save(lm.state, {"keel": json.dumps({**meta, "format": "other/9"})})
    with pytest.raises(InvalidInputError, match="format 'keel.genai.lm/1', found 'other/9'"):
        lm_from_bytes(bad_tag)
    nan_state = {**lm.state, "ln_f.bias": np.full_like(lm.state["ln_f.bias"], np.nan)}
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        lm_from_bytes(_with_state(lm, nan_state))


def test_fast_decode_step_matches_the_full_forward_pass() -> None:
    torch.manual_seed(1)
    model = GPT(TINY).eval()
    ids = torch.randint(0, TINY.vocab_size, (1, 24))
    with torch.no_grad():
        full = model(ids)[0]
        cache = KVCache(TINY)
        model(ids[:, :4], cache)
        steps = [decode_step(model, int(t), cache) for t in ids[0, 4:]]
        assert torch.allclose(torch.stack(steps), full[4:], atol=1e-5)
        torch.nn.init.zeros_(model.ln_f.weight)  # an in-place change invalidates the packed weights
        cache = KVCache(TINY)
        model(ids[:, :4], cache)
        assert torch.allclose(decode_step(model, int(ids[0, 4]), cache), torch.zeros(TINY.vocab_size))
