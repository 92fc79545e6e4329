"""A TrainedLM as bytes and back: safetensors for the weights, JSON in its header for the rest. No pickle.

The header's metadata holds one entry, 'keel': JSON with the format tag, the config, the tokenizer JSON,
the curves and the training figures. Loading checks every tensor's name and shape against the config
before building anything, and refuses unknown or missing tensors, so a file cannot smuggle in state.
Torch is not needed to read or write the file (safetensors.numpy).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from keel.errors import InvalidInputError
from keel.genai.lm import GPTConfig, TrainedLM, parameter_shapes

__all__ = ["lm_from_bytes", "lm_to_bytes"]

_FORMAT = "keel.genai.lm/1"


def lm_to_bytes(lm: TrainedLM) -> bytes:
    """The model as a safetensors file (float32 weights; everything else JSON under the 'keel' key)."""
    from safetensors.numpy import save

    meta = {
        "format": _FORMAT,
        "config": lm.config.to_dict(),
        "tokenizer": lm.tokenizer_json,
        "loss_curve": [list(p) for p in lm.loss_curve],
        "val_curve": [list(p) for p in lm.val_curve],
        "val_perplexity": lm.val_perplexity,
        "tokens_per_s": lm.tokens_per_s,
        "seconds": lm.seconds,
        "n_params": lm.n_params,
        "steps": lm.steps,
        "tokens_seen": lm.tokens_seen,
        "seed": lm.seed,
        "device": lm.device,
    }
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in lm.state.items()}
    return bytes(save(tensors, {"keel": json.dumps(meta, allow_nan=True)}))


def _header(data: bytes) -> dict[str, Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < 8:
        raise InvalidInputError("a language-model file must be safetensors bytes (at least an 8-byte header length)")
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    if n > len(data) - 8:
        raise InvalidInputError(f"safetensors header claims {n} bytes but the file has {len(data) - 8} after it")
    try:
        header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"the safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidInputError("the safetensors header must be a JSON object")
    return header


def load_checked(
    data: bytes, found: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], *, needs: str
) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file whose header entries `found` were checked to be exactly
    `expected` by name: each must be float32 of its expected shape (checked before any is read), and
    finite. `needs` says who expects the shapes ("the config needs")."""
    from safetensors.numpy import load

    for k, shape in expected.items():
        info = found[k]
        if not isinstance(info, dict) or info.get("dtype") != "F32" or tuple(info.get("shape", ())) != shape:
            raise InvalidInputError(f"tensor {k!r} is {info!r}; {needs} float32 of shape {shape}")
    try:
        state = load(bytes(data))
    except Exception as exc:  # safetensors raises its own SafetensorError for bad offsets and lengths
        raise InvalidInputError(f"the safetensors payload does not load: {exc}") from None
    bad = [k for k, v in state.items() if not np.all(np.isfinite(v))]
    if bad:
        raise InvalidInputError(f"tensors {bad[:5]} hold NaN or infinite values")
    return state


def keel_header(data: bytes, fmt: str, *, what: str, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The safetensors header of a Keel file (bounded parse) and its 'keel' JSON metadata, which must
    declare format `fmt`; `what` ('language model') and `label` ('language-model') name it in errors."""
    header = _header(data)
    try:
        meta = json.loads(header["__metadata__"]["keel"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise InvalidInputError(f"not a Keel {what}: no 'keel' JSON entry in the safetensors metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise InvalidInputError(f"{label} metadata must declare format {fmt!r}, found {found!r}")
    return header, meta


def lm_from_bytes(data: bytes) -> TrainedLM:
    """A TrainedLM saved by `lm_to_bytes`; malformed input raises InvalidInputError naming the problem."""
    header, meta = keel_header(data, _FORMAT, what="language model", label="language-model")
    try:
        config = GPTConfig(**{k: meta["config"][k] for k in GPTConfig().to_dict()})
    except (KeyError, TypeError) as exc:
        raise InvalidInputError(f"language-model config is incomplete or malformed: {exc}") from None
    # names and shapes from the header, checked against the config before any tensor is read
    expected = parameter_shapes(config)
    found = {k: v for k, v in header.items() if k != "__metadata__"}
    unknown, missing = sorted(set(found) - set(expected)), sorted(set(expected) - set(found))
    if unknown:
        raise InvalidInputError(f"unknown tensors {unknown[:5]} for this config; the file is not a Keel GPT")
    if missing:
        raise InvalidInputError(f"missing tensors {missing[:5]}; the file is truncated or for another config")
    state = load_checked(data, found, expected, needs="the config needs")
    tokenizer_json = meta.get("tokenizer")
    if not isinstance(tokenizer_json, str):
        raise InvalidInputError("language-model metadata lacks the tokenizer JSON")
    from keel.genai.tokenizer import BPETokenizer

    if BPETokenizer.from_str(tokenizer_json).vocab_size != config.vocab_size:
        raise InvalidInputError("the tokenizer's vocabulary does not match the config's vocab_size")
    try:
        return TrainedLM(
            config=config,
            tokenizer_json=tokenizer_json,
            state=state,
            loss_curve=tuple((int(s), float(v)) for s, v in meta.get("loss_curve", [])),
            val_curve=tuple((int(s), float(v)) for s, v in meta.get("val_curve", [])),
            val_perplexity=None if meta.get("val_perplexity") is None else float(meta["val_perplexity"]),
            tokens_per_s=float(meta.get("tokens_per_s", 0.0)),
            seconds=float(meta.get("seconds", 0.0)),
            n_params=int(meta.get("n_params", sum(math.prod(s) for s in expected.values()))),
            steps=int(meta.get("steps", 0)),
            tokens_seen=int(meta.get("tokens_seen", 0)),
            seed=None if meta.get("seed") is None else int(meta["seed"]),
            device=str(meta.get("device", "cpu")),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"language-model metadata has a malformed field: {exc}") from None
