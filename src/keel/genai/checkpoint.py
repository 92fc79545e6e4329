"""A transformers GPT-2 checkpoint as a keel TrainedLM (values in, values out: the caller reads the files).

Keel's GPT (keel.genai.model) is GPT-2's architecture: a pre-LN transformer with learned positions, tanh-GELU
(GPT-2's `gelu_new`), LayerNorm eps 1e-5 and an output projection tied to the token embedding. So a GPT-2
checkpoint maps onto it weight for weight; the only work is renaming, transposing GPT-2's Conv1D weights
((in, out) where torch's Linear holds (out, in)) and giving the tokenizer keel's special tokens. A config
keel's GPT cannot compute exactly is refused, naming the field, rather than converted into a different model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from keel.errors import InvalidInputError
from keel.genai.lm import GPTConfig, TrainedLM, count_parameters, parameter_shapes
from keel.genai.tokenizer import BOS, EOS, PAD, BPETokenizer

__all__ = ["gpt2_config", "lm_from_gpt2"]

ENDOFTEXT = "<|endoftext|>"
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # both are 0.5x(1 + tanh(...)), what keel's MLP computes
_LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which keel's GPT and its NumPy decode step use
# per-block GPT-2 name -> (keel name, whether the weight is a Conv1D to transpose)
_BLOCK = {
    "ln_1.weight": ("ln1.weight", False),
    "ln_1.bias": ("ln1.bias", False),
    "attn.c_attn.weight": ("attn.qkv.weight", True),
    "attn.c_attn.bias": ("attn.qkv.bias", False),
    "attn.c_proj.weight": ("attn.proj.weight", True),
    "attn.c_proj.bias": ("attn.proj.bias", False),
    "ln_2.weight": ("ln2.weight", False),
    "ln_2.bias": ("ln2.bias", False),
    "mlp.c_fc.weight": ("mlp.fc.weight", True),
    "mlp.c_fc.bias": ("mlp.fc.bias", False),
    "mlp.c_proj.weight": ("mlp.proj.weight", True),
    "mlp.c_proj.bias": ("mlp.proj.bias", False),
}
_BUFFERS = ("attn.bias", "attn.masked_bias")  # the causal mask old checkpoints saved: not weights


def _int(config: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = config.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"config.json field {name!r} must be a positive integer, got {value!r}")
            return value
    raise InvalidInputError(f"config.json lacks {names[0]!r}: is this a GPT-2 checkpoint?")


def gpt2_config(config: Mapping[str, Any]) -> GPTConfig:
    """Keel's GPTConfig for a GPT-2 config.json (vocab_size before keel's special tokens are added);
    InvalidInputError naming the field keel's GPT cannot represent."""
    if not isinstance(config, Mapping):
        raise InvalidInputError(f"config.json must hold an object, got {type(config).__name__}")
    if config.get("model_type") != "gpt2":
        raise InvalidInputError(
            f"config.json field 'model_type' is {config.get('model_type')!r}; only 'gpt2' checkpoints convert"
        )
    n_embd = _int(config, "n_embd", "hidden_size")
    act = config.get("activation_function", "gelu_new")
    refusals = {
        "activation_function": (act not in _GELU_TANH, f"{act!r}; keel's GPT computes tanh-GELU ({_GELU_TANH})"),
        "n_inner": (config.get("n_inner") not in (None, 4 * n_embd), f"{config.get('n_inner')!r}, not 4 * n_embd"),
        "scale_attn_weights": (config.get("scale_attn_weights", True) is not True, "false; keel scales by 1/sqrt(d)"),
        "scale_attn_by_inverse_layer_idx": (bool(config.get("scale_attn_by_inverse_layer_idx")), "true"),
        "add_cross_attention": (bool(config.get("add_cross_attention")), "true; keel's GPT is decoder-only"),
        "tie_word_embeddings": (config.get("tie_word_embeddings", True) is not True, "false; keel ties its head"),
    }
    eps = config.get("layer_norm_epsilon", _LAYER_NORM_EPS)
    bad_eps = isinstance(eps, bool) or not isinstance(eps, (int, float))
    refusals["layer_norm_epsilon"] = (bad_eps or not math.isclose(eps, _LAYER_NORM_EPS), f"{eps!r}, not 1e-5")
    for field, (bad, why) in refusals.items():
        if bad:
            raise InvalidInputError(f"config.json field {field!r} is {why}: keel's GPT cannot represent this model")
    # reorder_and_upcast_attn only computes the same attention in float32 with the scale applied first: in
    # float32 weights that is the same function, so it is accepted rather than refused.
    return GPTConfig(
        vocab_size=_int(config, "vocab_size"),
        n_layer=_int(config, "n_layer", "num_hidden_layers"),
        n_head=_int(config, "n_head", "num_attention_heads"),
        n_embd=n_embd,
        block_size=_int(config, "n_positions", "n_ctx", "max_position_embeddings"),
    )


def _tensor(tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in tensors:
        raise InvalidInputError(f"model.safetensors lacks the weight {name!r} that config.json implies")
    value = tensors[name]
    if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
        raise InvalidInputError(
            f"weight {name!r} must be a floating-point array, got {getattr(value, 'dtype', value)!r}"
        )
    if tuple(value.shape) != shape:
        raise InvalidInputError(f"weight {name!r} has shape {tuple(value.shape)}, config.json implies {shape}")
    return np.asarray(value, dtype=np.float32)


def _state(cfg: GPTConfig, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keel's state (before the special-token rows) from GPT-2's tensors, 'transformer.' prefix or not."""
    named = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    expected = parameter_shapes(cfg)
    state = {
        "tok_emb.weight": _tensor(named, "wte.weight", expected["tok_emb.weight"]),
        "pos_emb.weight": _tensor(named, "wpe.weight", expected["pos_emb.weight"]),
        "ln_f.weight": _tensor(named, "ln_f.weight", expected["ln_f.weight"]),
        "ln_f.bias": _tensor(named, "ln_f.bias", expected["ln_f.bias"]),
    }
    used = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "lm_head.weight"}
    for i in range(cfg.n_layer):
        for theirs, (ours, conv1d) in _BLOCK.items():
            key, target = f"h.{i}.{theirs}", f"blocks.{i}.{ours}"
            shape = expected[target][::-1] if conv1d else expected[target]
            value = _tensor(named, key, shape)
            state[target] = np.ascontiguousarray(value.T) if conv1d else value
            used.add(key)
        used |= {f"h.{i}.{b}" for b in _BUFFERS}
    unknown = sorted(set(named) - used)
    if unknown:
        raise InvalidInputError(f"model.safetensors holds weights keel's GPT has no place for: {unknown[:5]}")
    head = named.get("lm_head.weight")
    if head is not None and not np.array_equal(np.asarray(head, dtype=np.float32), state["tok_emb.weight"]):
        raise InvalidInputError(
            "model.safetensors' lm_head.weight differs from wte.weight: an untied output head keel's GPT cannot hold"
        )
    return state


def _with_specials(tokenizer_json: str, vocab_size: int) -> tuple[str, int]:
    """The tokenizer JSON with keel's <|eos|>, <|bos|>, <|pad|>, and the id of <|bos|> (= vocab_size).

    Why <|endoftext|> becomes <|eos|> (renamed, same id) rather than <|eos|> being a new token: GPT-2 ends
    every document with <|endoftext|>, which is exactly keel's <|eos|>; a second token with a copy of its
    embedding row would split the probability of ending in two, and generation could still emit the old one
    as literal text. <|bos|> is new (id vocab_size) with a copy of <|endoftext|>'s row, because GPT-2 also
    saw <|endoftext|> before each document, so a prompt after <|bos|> is read as it would be after
    <|endoftext|>; generation never picks <|bos|>. <|pad|> (id vocab_size + 1) gets a zero row: it is only
    ever padding, never read as context or generated (generation bans it).
    """
    try:
        doc = json.loads(tokenizer_json)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"tokenizer.json is not valid JSON ({exc.msg})") from None
    model = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise InvalidInputError(
            "tokenizer.json field 'model' must be a BPE model with a vocab (GPT-2's byte-level BPE)"
        )
    if "ByteLevel" not in json.dumps(doc.get("pre_tokenizer")) or doc.get("normalizer") is not None:
        raise InvalidInputError(
            "tokenizer.json field 'pre_tokenizer' must be ByteLevel and 'normalizer' null (GPT-2's byte-level BPE)"
        )
    added = doc.setdefault("added_tokens", [])
    for special in (BOS, EOS, PAD):
        if special in model["vocab"] or any(t.get("content") == special for t in added):
            raise InvalidInputError(f"tokenizer.json already holds {special!r}; keel adds its special tokens itself")
    eot = [t for t in added if t.get("content") == ENDOFTEXT]
    if not eot:
        raise InvalidInputError(f"tokenizer.json has no added token {ENDOFTEXT!r} (GPT-2's end of document)")
    eot[0]["content"], eot[0]["special"] = EOS, True
    if ENDOFTEXT in model["vocab"]:
        model["vocab"][EOS] = model["vocab"].pop(ENDOFTEXT)
    for offset, special in enumerate((BOS, PAD)):
        added.append(
            {"id": vocab_size + offset, "content": special, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
        )  # fmt: skip
    return json.dumps(doc, ensure_ascii=False), int(eot[0]["id"])


def lm_from_gpt2(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], tokenizer_json: str) -> TrainedLM:
    """A TrainedLM computing the same logits as the GPT-2 checkpoint (config.json as a dict, model.safetensors'
    tensors, tokenizer.json's text); keel's <|bos|> and <|pad|> are appended (ids vocab_size, vocab_size + 1)
    and GPT-2's <|endoftext|> becomes <|eos|> (see _with_specials). Refuses what keel's GPT cannot represent."""
    cfg = gpt2_config(config)
    state = _state(cfg, tensors)
    text, eot_id = _with_specials(tokenizer_json, cfg.vocab_size)
    tok = BPETokenizer.from_str(text)
    if tok.vocab_size != cfg.vocab_size + 2 or (tok.bos_id, tok.eos_id, tok.pad_id) != (
        cfg.vocab_size,
        eot_id,
        cfg.vocab_size + 1,
    ):
        raise InvalidInputError(
            f"tokenizer.json's vocabulary ({tok.vocab_size - 2} tokens) does not match config.json's vocab_size "
            f"({cfg.vocab_size}); a checkpoint whose embedding is padded past its tokenizer is not supported"
        )
    wte = state["tok_emb.weight"]
    state["tok_emb.weight"] = np.concatenate([wte, wte[eot_id][None], np.zeros((1, cfg.n_embd), np.float32)])
    cfg = cfg.with_vocab(cfg.vocab_size + 2)
    return TrainedLM(config=cfg, tokenizer_json=text, state=state, n_params=count_parameters(cfg))
