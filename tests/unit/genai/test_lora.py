"""LoRA and full fine-tuning: the tune helps on a shifted domain, merged equals adapter, safe bytes, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save

import keel.genai
from keel.errors import InvalidInputError
from keel.genai.lm import TrainedLM
from keel.genai.lora import (
    DEFAULT_TARGETS,
    LoRAAdapter,
    Tuned,
    adapter_from_bytes,
    adapter_perplexity,
    adapter_to_bytes,
    merge_adapter,
    tune_lm,
    weights_digest,
)
from keel.genai.train import perplexity

from ._lm_fixtures import TINY, train_tiny

R = 4


def shifted(n: int = 160) -> list[str]:
    """Prose about prices: a domain the code-trained base has never seen."""
    names = ["ann", "bob", "cy"]
    return [
        f"the price of item {i} is {i * 3} dollars and it ships in {i % 5} days, said {names[i % 3]}.\n"
        for i in range(n)
    ]


TRAIN, VALID = shifted()[:120], shifted()[120:]


@pytest.fixture(scope="module")
def base() -> TrainedLM:
    return train_tiny()


@pytest.fixture(scope="module")
def lora(base: TrainedLM) -> Tuned:
    return tune_lm(base, TRAIN, VALID, r=R, alpha=8, steps=60, batch=8, lr=1e-2)


@pytest.fixture(scope="module")
def full(base: TrainedLM) -> Tuned:
    return tune_lm(base, TRAIN, VALID, method="full", steps=30, batch=8, lr=3e-3)


def test_lora_lowers_the_validation_loss_on_a_shifted_domain(base: TrainedLM, lora: Tuned) -> None:
    assert lora.method == "lora" and lora.base_perplexity is not None and lora.merged.val_perplexity is not None
    assert lora.base_perplexity == pytest.approx(perplexity(base, VALID), rel=1e-9)
    assert lora.merged.val_perplexity < 0.2 * lora.base_perplexity  # measured here: 1297 -> 47
    losses = [loss for _, loss in lora.merged.loss_curve]
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert lora.merged.val_curve[-1][1] < lora.merged.val_curve[0][1]
    assert lora.merged.tokens_per_s > 0 and lora.merged.steps == 60
    assert lora.merged.tokenizer_json == base.tokenizer_json  # a tune never retrains the tokenizer
    assert lora.merged.config == base.config


def test_merged_perplexity_equals_the_adapter_perplexity(base: TrainedLM, lora: Tuned) -> None:
    assert lora.adapter is not None and lora.adapter_perplexity is not None
    merged_ppl = lora.merged.val_perplexity
    assert merged_ppl == pytest.approx(lora.adapter_perplexity, rel=1e-4)
    assert adapter_perplexity(base, lora.adapter, VALID) == pytest.approx(lora.adapter_perplexity, rel=1e-6)
    # merging again from the adapter alone gives the same model as the tune returned
    assert perplexity(merge_adapter(base, lora.adapter), VALID) == pytest.approx(merged_ppl, rel=1e-4)


def test_the_adapter_holds_only_lora_tensors_and_changes_only_the_targets(base: TrainedLM, lora: Tuned) -> None:
    adapter = lora.adapter
    assert adapter is not None and adapter.targets == DEFAULT_TARGETS and adapter.r == R
    assert len(adapter.state) == TINY.n_layer * len(DEFAULT_TARGETS) * 2
    d = TINY.n_embd
    outs = {"attn.qkv": 3 * d, "attn.proj": d, "mlp.fc": 4 * d, "mlp.proj": d}
    ins = {"attn.qkv": d, "attn.proj": d, "mlp.fc": d, "mlp.proj": 4 * d}
    for i in range(TINY.n_layer):
        for t in DEFAULT_TARGETS:
            assert adapter.state[f"blocks.{i}.{t}.lora_A"].shape == (R, ins[t])
            assert adapter.state[f"blocks.{i}.{t}.lora_B"].shape == (outs[t], R)
            assert adapter.state[f"blocks.{i}.{t}.lora_A"].dtype == np.float32
    assert adapter.base_digest == weights_digest(base)
    changed = {k for k in base.state if not np.array_equal(base.state[k], lora.merged.state[k])}
    assert changed == {f"blocks.{i}.{t}.weight" for i in range(TINY.n_layer) for t in DEFAULT_TARGETS}


def test_a_narrower_target_list_adapts_only_those_layers(base: TrainedLM) -> None:
    tuned = tune_lm(base, TRAIN, (), r=2, targets=["mlp.fc"], steps=5, batch=4, lr=1e-2)
    assert tuned.adapter is not None and tuned.adapter.targets == ("mlp.fc",)
    assert sorted(tuned.adapter.state) == sorted(
        f"blocks.{i}.mlp.fc.lora_{ab}" for i in range(TINY.n_layer) for ab in "AB"
    )
    changed = {k for k in base.state if not np.array_equal(base.state[k], tuned.merged.state[k])}
    assert changed == {f"blocks.{i}.mlp.fc.weight" for i in range(TINY.n_layer)}
    assert tuned.base_perplexity is None and tuned.adapter_perplexity is None  # no validation texts


def test_adapter_bytes_round_trip(base: TrainedLM, lora: Tuned) -> None:
    adapter = lora.adapter
    assert adapter is not None
    data = adapter_to_bytes(adapter)
    assert b"pickle" not in data and data[8:].lstrip().startswith(b"{")
    back = adapter_from_bytes(data)
    assert (back.r, back.alpha, back.dropout, back.targets, back.base_digest) == (
        adapter.r,
        adapter.alpha,
        adapter.dropout,
        adapter.targets,
        adapter.base_digest,
    )
    assert back.state.keys() == adapter.state.keys()
    assert all(np.array_equal(back.state[k], adapter.state[k]) for k in adapter.state)
    assert back.loss_curve == adapter.loss_curve and back.val_curve == adapter.val_curve
    assert back.steps == adapter.steps == 60
    merged = merge_adapter(base, back)
    assert all(np.array_equal(merged.state[k], lora.merged.state[k]) for k in base.state)


def _resave(adapter: LoRAAdapter, state: dict[str, np.ndarray], **meta_changes: object) -> bytes:
    meta = json.loads(_meta(adapter_to_bytes(adapter)))
    meta.update(meta_changes)
    return bytes(save(state, {"keel": json.dumps(meta)}))


def _meta(data: bytes) -> str:
    n = int.from_bytes(data[:8], "little")
    meta: str = json.loads(data[8 : 8 + n])["__metadata__"]["keel"]
    return meta


def test_bad_adapter_bytes_are_refused_with_the_reason(lora: Tuned) -> None:
    adapter = lora.adapter
    assert adapter is not None
    with pytest.raises(InvalidInputError, match="safetensors"):
        adapter_from_bytes(b"\x80\x04not a safetensors file")
    wrong_shape = dict(adapter.state) | {"blocks.1.mlp.fc.lora_A": np.zeros((R, 7), np.float32)}
    with pytest.raises(InvalidInputError, match=r"blocks\.1\.mlp\.fc\.lora_A"):
        adapter_from_bytes(_resave(adapter, wrong_shape))
    missing = {k: v for k, v in adapter.state.items() if k != "blocks.0.attn.proj.lora_B"}
    with pytest.raises(InvalidInputError, match=r"missing \['blocks\.0\.attn\.proj\.lora_B'\]"):
        adapter_from_bytes(_resave(adapter, missing))
    extra = dict(adapter.state) | {"tok_emb.weight": np.zeros((3, 3), np.float32)}
    with pytest.raises(InvalidInputError, match="unknown"):
        adapter_from_bytes(_resave(adapter, extra))
    with pytest.raises(InvalidInputError, match="r=8 needs float32"):  # metadata says rank 8, tensors are rank 4
        adapter_from_bytes(_resave(adapter, dict(adapter.state), r=8))
    with pytest.raises(InvalidInputError, match="targets"):
        adapter_from_bytes(_resave(adapter, dict(adapter.state), targets=["lm_head"]))
    with pytest.raises(InvalidInputError, match="base_digest"):
        adapter_from_bytes(_resave(adapter, dict(adapter.state), base_digest="x"))
    halves = {k: v.astype(np.float16) for k, v in adapter.state.items()}
    with pytest.raises(InvalidInputError, match="float32"):
        adapter_from_bytes(_resave(adapter, halves))


def test_an_adapter_refuses_a_different_base(base: TrainedLM, lora: Tuned) -> None:
    adapter = lora.adapter
    assert adapter is not None
    state = dict(base.state) | {"ln_f.bias": base.state["ln_f.bias"] + np.float32(1e-3)}
    other = TrainedLM(config=base.config, tokenizer_json=base.tokenizer_json, state=state)
    digest = weights_digest(other)
    assert digest != adapter.base_digest
    with pytest.raises(InvalidInputError) as caught:
        merge_adapter(other, adapter)
    assert adapter.base_digest[:16] in str(caught.value) and digest[:16] in str(caught.value)
    with pytest.raises(InvalidInputError, match=digest[:16]):
        adapter_perplexity(other, adapter, VALID)


def test_full_fine_tuning_changes_every_weight_and_has_no_adapter(base: TrainedLM, full: Tuned) -> None:
    assert full.method == "full" and full.adapter is None and full.adapter_perplexity is None
    assert all(not np.array_equal(base.state[k], full.merged.state[k]) for k in base.state)
    assert full.base_perplexity is not None and full.merged.val_perplexity is not None
    assert full.merged.val_perplexity < 0.2 * full.base_perplexity
    assert full.merged.tokenizer_json == base.tokenizer_json


def test_the_same_seed_gives_the_same_tune(base: TrainedLM) -> None:
    a, b, c = (tune_lm(base, TRAIN, r=2, steps=8, batch=4, lr=1e-2, seed=s) for s in (3, 3, 4))
    assert a.adapter is not None and b.adapter is not None and c.adapter is not None
    assert all(np.array_equal(a.adapter.state[k], b.adapter.state[k]) for k in a.adapter.state)
    assert all(np.array_equal(a.merged.state[k], b.merged.state[k]) for k in base.state)
    assert a.merged.loss_curve == b.merged.loss_curve
    assert not np.array_equal(a.adapter.state["blocks.0.attn.qkv.lora_A"], c.adapter.state["blocks.0.attn.qkv.lora_A"])


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"r": 0}, "r must"),
        ({"r": 2.5}, "r must"),
        ({"alpha": 0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"targets": ("attn.q",)}, "targets"),
        ({"targets": ()}, "targets"),
        ({"targets": "mlp.fc"}, "targets"),
        ({"method": "qlora"}, "method"),
        ({"steps": 0}, "steps"),
        ({"batch": 0}, "batch"),
        ({"lr": -1.0}, "lr"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(base: TrainedLM, kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        tune_lm(base, TRAIN, **kwargs)  # type: ignore[arg-type]


def test_too_little_text_is_refused(base: TrainedLM) -> None:
    with pytest.raises(InvalidInputError, match="block_size"):
        tune_lm(base, ["hi"])


def test_the_tuning_api_is_reachable_lazily_from_keel_genai() -> None:
    assert keel.genai.tune_lm is tune_lm and keel.genai.merge_adapter is merge_adapter
    assert keel.genai.DEFAULT_TARGETS == DEFAULT_TARGETS and keel.genai.LoRAAdapter is LoRAAdapter
