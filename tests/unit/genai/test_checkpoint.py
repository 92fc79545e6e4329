"""A transformers GPT-2 checkpoint converted to keel's GPT computes the same logits and the same greedy
continuation as transformers itself; configs keel's GPT cannot represent are refused, naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keel.errors import InvalidInputError
from keel.genai.checkpoint import gpt2_config, lm_from_gpt2

from ._gpt2_fixtures import save_tiny_gpt2

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")


def read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    return (
        json.loads((path / "config.json").read_text()),
        safetensors_numpy.load_file(str(path / "model.safetensors")),
        (path / "tokenizer.json").read_text(),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


def test_logits_equal_transformers(checkpoint: Path) -> None:
    config, tensors, tok_json = read(checkpoint)
    lm = lm_from_gpt2(config, tensors, tok_json)
    reference = transformers.GPT2LMHeadModel.from_pretrained(checkpoint).eval()
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(checkpoint)
    ids = [fast.convert_tokens_to_ids("<|endoftext|>"), *fast("def add_3(x, y):\n    return x")["input_ids"]]
    assert lm.tokenizer().encode("def add_3(x, y):\n    return x") == ids[1:]  # same tokens, keel's tokenizer
    with torch.no_grad():
        theirs = reference(torch.tensor([ids])).logits[0].numpy()
        ours = lm.module()(torch.tensor([ids]))[0].numpy()
    n = config["vocab_size"]
    assert ours.shape == (len(ids), n + 2) and float(np.abs(theirs).max()) > 1.0
    np.testing.assert_allclose(ours[:, :n], theirs, atol=1e-4, rtol=0)
    # <|endoftext|> became keel's <|eos|> (same id); <|bos|> and <|pad|> come after GPT-2's vocabulary
    tok = lm.tokenizer()
    assert (tok.eos_id, tok.bos_id, tok.pad_id) == (ids[0], n, n + 1)
    np.testing.assert_array_equal(lm.state["tok_emb.weight"][n], tensors["transformer.wte.weight"][ids[0]])
    assert not lm.state["tok_emb.weight"][n + 1].any()


def test_greedy_continuation_equals_transformers(checkpoint: Path) -> None:
    from keel.genai.generation import generate

    lm = lm_from_gpt2(*read(checkpoint))
    reference = transformers.GPT2LMHeadModel.from_pretrained(checkpoint).eval()
    prompt = "class Point7:"
    ids = [lm.tokenizer().eos_id, *lm.tokenizer().encode(prompt)]  # keel's <|bos|> row is <|endoftext|>'s
    with torch.no_grad():
        out = reference.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=ids[0])
    theirs = out[0, len(ids) :].tolist()
    ours = generate(lm, prompt, max_tokens=6, temperature=0.0)
    assert list(ours.tokens) == theirs[: len(ours.tokens)] and len(ours.tokens) >= 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_type", "llama"),
        ("activation_function", "relu"),
        ("n_inner", 48),
        ("scale_attn_by_inverse_layer_idx", True),
        ("scale_attn_weights", False),
        ("tie_word_embeddings", False),
        ("layer_norm_epsilon", 1e-6),
        ("add_cross_attention", True),
    ],
)
def test_unrepresentable_configs_are_refused_naming_the_field(checkpoint: Path, field: str, value: Any) -> None:
    config, _, _ = read(checkpoint)
    with pytest.raises(InvalidInputError, match=field):
        gpt2_config(config | {field: value})


def test_accepted_variants(checkpoint: Path) -> None:
    config, tensors, tok_json = read(checkpoint)
    assert gpt2_config(config | {"activation_function": "gelu_pytorch_tanh", "n_inner": 128}).n_embd == 32
    assert gpt2_config(config | {"reorder_and_upcast_attn": True}).block_size == 64
    bare = {k.removeprefix("transformer."): v for k, v in tensors.items()}  # old checkpoints: no prefix
    tied = bare | {"lm_head.weight": bare["wte.weight"]}
    assert lm_from_gpt2(config, tied, tok_json).config.vocab_size == config["vocab_size"] + 2


def test_bad_weights_and_tokenizers_are_refused(checkpoint: Path) -> None:
    config, tensors, tok_json = read(checkpoint)
    untied = tensors | {"lm_head.weight": tensors["transformer.wte.weight"] + 1}
    with pytest.raises(InvalidInputError, match="lm_head"):
        lm_from_gpt2(config, untied, tok_json)
    with pytest.raises(InvalidInputError, match="h.1.mlp.c_fc.weight"):
        lm_from_gpt2(config, {k: v for k, v in tensors.items() if "h.1.mlp.c_fc.weight" not in k}, tok_json)
    wrong = tensors | {"transformer.h.0.attn.c_attn.weight": tensors["transformer.h.0.attn.c_attn.weight"].T}
    with pytest.raises(InvalidInputError, match="c_attn"):
        lm_from_gpt2(config, wrong, tok_json)
    with pytest.raises(InvalidInputError, match="no place"):
        lm_from_gpt2(config, tensors | {"transformer.extra.weight": np.zeros(3, np.float32)}, tok_json)
    with pytest.raises(InvalidInputError, match="wte.weight"):
        lm_from_gpt2(config | {"vocab_size": config["vocab_size"] + 4}, tensors, tok_json)
    wte = tensors["transformer.wte.weight"]
    padded = tensors | {"transformer.wte.weight": np.concatenate([wte, np.zeros((4, 32), np.float32)])}
    with pytest.raises(InvalidInputError, match="padded past its tokenizer"):  # embedding rows the tokenizer lacks
        lm_from_gpt2(config | {"vocab_size": config["vocab_size"] + 4}, padded, tok_json)
    no_eot = tok_json.replace("<|endoftext|>", "<|end|>")
    with pytest.raises(InvalidInputError, match="endoftext"):
        lm_from_gpt2(config, tensors, no_eot)
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        lm_from_gpt2(config, tensors, "{")
