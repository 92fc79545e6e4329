"""Tune a TrainedLM on new text: LoRA adapters (peft) or full fine-tuning, and adapters as safe bytes.

LoRA freezes the base and learns, for each targeted linear layer W (out, in) of every block, a low-rank update
B (out, r) @ A (r, in) scaled by alpha / r; peft injects those layers into our GPT by module name
(blocks.{i}.attn.qkv, attn.proj, mlp.fc, mlp.proj). The adapter is stored on its own under stable names
("blocks.0.attn.qkv.lora_A"), with a digest of the base weights so it refuses to meet another base, and is
merged into plain weights (W + B @ A * alpha / r), so a merged model serves like any other. The tokenizer is
always the base's: a tune never retrains it, or the base's embeddings would mean other tokens.

The training loop is train.py's (train_steps), so curves, tokens/s and determinism mean the same for a tune
as for a training. Nothing is fetched from a hub and no remote code is run: peft only wraps our own modules.
Importing this module imports torch; peft is imported when an adapter is built.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from keel.errors import InvalidInputError
from keel.genai.lm import TrainedLM
from keel.genai.model import GPT, gpt_from_state, state_to_numpy
from keel.genai.train import Progress, resolve_device, stream_loss, token_stream, train_steps

__all__ = [
    "DEFAULT_TARGETS",
    "LoRAAdapter",
    "Tuned",
    "adapter_from_bytes",
    "adapter_perplexity",
    "adapter_to_bytes",
    "merge_adapter",
    "tune_lm",
    "weights_digest",
]

DEFAULT_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
# (in, out) of each target's weight in multiples of n_embd: what an adapter's A (r, in) and B (out, r) must fit
_WIDTHS = {"attn.qkv": (1, 3), "attn.proj": (1, 1), "mlp.fc": (1, 4), "mlp.proj": (4, 1)}
_FORMAT = "keel.genai.lora/1"
_NAME = re.compile(r"blocks\.(\d+)\.(.+)\.lora_([AB])")


@dataclass(frozen=True, eq=False)
class LoRAAdapter:
    """A LoRA adapter: float32 A (r, in) and B (out, r) per targeted layer, keyed "blocks.{i}.{target}.lora_A|B".

    `base_digest` is weights_digest() of the base it was trained on; `loss_curve`/`val_curve` are
    [(step, loss)] in nats per token, `tokens_per_s` counts training steps only. Compared by identity.
    """

    r: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]
    state: dict[str, np.ndarray]
    base_digest: str
    loss_curve: tuple[tuple[int, float], ...] = ()
    val_curve: tuple[tuple[int, float], ...] = ()
    steps: int = 0
    tokens_per_s: float = 0.0
    seconds: float = 0.0

    @property
    def scaling(self) -> float:
        return float(self.alpha) / self.r


@dataclass(frozen=True, eq=False)
class Tuned:
    """A tune's result: the merged model (its curves, val_perplexity and tokens/s are the tuning's), the
    adapter (None for full fine-tuning), and the validation perplexity of the base before tuning and of the
    peft model with the adapter unmerged (None without validation texts; None for full fine-tuning)."""

    merged: TrainedLM
    adapter: LoRAAdapter | None
    method: str
    base_perplexity: float | None
    adapter_perplexity: float | None


def weights_digest(lm: TrainedLM) -> str:
    """sha256 over every weight's name, shape and float32 bytes, in name order (the base's identity)."""
    h = hashlib.sha256()
    for name in sorted(lm.state):
        array = np.ascontiguousarray(lm.state[name], dtype=np.float32)
        h.update(f"{name}:{array.shape}\n".encode())
        h.update(array.tobytes())
    return h.hexdigest()


# -- arguments and the peft side --------------------------------------------------------------------------


def _check_lora(r: Any, alpha: Any, dropout: Any, targets: Any) -> tuple[str, ...]:
    """The targets, deduplicated in DEFAULT_TARGETS order, once r, alpha and dropout are usable."""
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise InvalidInputError(f"r must be an int >= 1 (the adapter's rank), got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise InvalidInputError(f"alpha must be a number > 0 (the update is scaled by alpha / r), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise InvalidInputError(f"dropout must be in [0, 1), got {dropout!r}")
    if isinstance(targets, str) or not targets:
        raise InvalidInputError(
            f"targets must be a non-empty sequence of names from {DEFAULT_TARGETS}, got {targets!r}"
        )
    unknown = [t for t in targets if t not in DEFAULT_TARGETS]
    if unknown:
        raise InvalidInputError(f"targets {unknown} are not linear layers of the GPT; choose from {DEFAULT_TARGETS}")
    return tuple(t for t in DEFAULT_TARGETS if t in targets)


def _inject(model: GPT, r: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> GPT:
    """`model` with peft LoRA layers in every block's targets; only the adapter's parameters require grad."""
    from peft import LoraConfig, inject_adapter_in_model

    # a full-match regex over module names: "mlp.proj" must not also catch "attn.proj"
    pattern = r"blocks\.\d+\.(" + "|".join(re.escape(t) for t in targets) + ")"
    # peft annotates lora_alpha as int but only ever divides by r, so a fractional alpha works as written
    scale: Any = alpha
    config = LoraConfig(r=r, lora_alpha=scale, lora_dropout=dropout, target_modules=pattern, bias="none")
    return cast(GPT, inject_adapter_in_model(config, model))  # the same module, mutated in place


def _lora_pair(model: GPT, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    layer: Any = model.get_submodule(name)
    return layer.lora_A["default"].weight, layer.lora_B["default"].weight


def _names(n_layer: int, targets: tuple[str, ...]) -> list[str]:
    return [f"blocks.{i}.{t}" for i in range(n_layer) for t in targets]


def _read_adapter(model: GPT, targets: tuple[str, ...]) -> dict[str, np.ndarray]:
    state: dict[str, np.ndarray] = {}
    for name in _names(model.config.n_layer, targets):
        a, b = _lora_pair(model, name)
        state[name + ".lora_A"] = a.detach().to("cpu", torch.float32).numpy().copy()
        state[name + ".lora_B"] = b.detach().to("cpu", torch.float32).numpy().copy()
    return state


def _check_base(base: TrainedLM, adapter: LoRAAdapter) -> None:
    digest = weights_digest(base)
    if digest != adapter.base_digest:
        raise InvalidInputError(
            f"the adapter was trained on base weights {adapter.base_digest[:16]}, this base's are {digest[:16]}; "
            "merge or evaluate it with the model it was tuned from"
        )


def _peft_model(base: TrainedLM, adapter: LoRAAdapter, device: str) -> GPT:
    """The base with the adapter's layers injected and loaded, unmerged, in eval mode."""
    _check_base(base, adapter)
    model = _inject(
        gpt_from_state(base.config, base.state, device=device),
        adapter.r,
        adapter.alpha,
        adapter.dropout,
        adapter.targets,
    )
    with torch.no_grad():
        for name in _names(base.config.n_layer, adapter.targets):
            a, b = _lora_pair(model, name)
            a.copy_(torch.from_numpy(adapter.state[name + ".lora_A"]))
            b.copy_(torch.from_numpy(adapter.state[name + ".lora_B"]))
    return model.eval()


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- merge and measure ------------------------------------------------------------------------------------


def _merged_state(base: TrainedLM, adapter: LoRAAdapter) -> dict[str, np.ndarray]:
    state = {k: np.array(v, dtype=np.float32, copy=True) for k, v in base.state.items()}
    for name in _names(base.config.n_layer, adapter.targets):
        a, b = adapter.state[name + ".lora_A"], adapter.state[name + ".lora_B"]
        weight = state[name + ".weight"]
        if b.shape[0] != weight.shape[0] or a.shape[1] != weight.shape[1]:
            raise InvalidInputError(f"adapter {name!r} is {b.shape}@{a.shape}, the base's weight is {weight.shape}")
        # float64 product, cast once: the merged weight carries one rounding, not r of them
        weight += (b.astype(np.float64) @ a.astype(np.float64) * adapter.scaling).astype(np.float32)
    return state


def merge_adapter(base: TrainedLM, adapter: LoRAAdapter) -> TrainedLM:
    """The base with W + B @ A * alpha / r in every targeted layer, as a plain TrainedLM (no peft needed).

    Refuses (InvalidInputError) a base whose weights_digest differs from the adapter's base_digest."""
    _check_base(base, adapter)
    return TrainedLM(
        config=base.config,
        tokenizer_json=base.tokenizer_json,
        state=_merged_state(base, adapter),
        loss_curve=adapter.loss_curve,
        val_curve=adapter.val_curve,
        tokens_per_s=adapter.tokens_per_s,
        seconds=adapter.seconds,
        n_params=base.n_params,
        steps=adapter.steps,
        seed=base.seed,
        device=base.device,
    )


def adapter_perplexity(
    base: TrainedLM, adapter: LoRAAdapter, texts: Sequence[str], *, device: str = "cpu", threads: int | None = 1
) -> float:
    """Perplexity on `texts` of the peft model: the base with the adapter's layers injected, not merged."""
    dev = resolve_device(device)
    stream = token_stream(base.tokenizer(), texts)
    with _threads(threads):
        return math.exp(stream_loss(_peft_model(base, adapter, device), stream, dev))


# -- tuning -----------------------------------------------------------------------------------------------


def tune_lm(
    base: TrainedLM,
    texts_train: Sequence[str],
    texts_valid: Sequence[str] = (),
    *,
    method: str = "lora",
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    targets: Sequence[str] = DEFAULT_TARGETS,
    steps: int = 200,
    tokens: int | None = None,
    batch: int = 16,
    lr: float | None = None,
    seed: int = 0,
    threads: int | None = 1,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Tuned:
    """Tune `base` on `texts_train` with LoRA (method="lora") or on every weight (method="full").

    Keeps the base's tokenizer and config. `tokens`, when given, replaces `steps` (ceil(tokens / (batch *
    block_size)) steps). `lr` defaults to 1e-3 for LoRA and 3e-4 for full fine-tuning (a pretrained model
    needs smaller steps than a fresh one). Warmup, cosine decay and the validation curve are train_lm's.
    Raises InvalidInputError naming the argument that is unusable.
    """
    if method not in ("lora", "full"):
        raise InvalidInputError(f"method must be 'lora' or 'full', got {method!r}")
    lora_targets = _check_lora(r, alpha, dropout, targets) if method == "lora" else ()
    dev = resolve_device(device)
    cfg = base.config
    if not isinstance(batch, int) or batch < 1:
        raise InvalidInputError(f"batch must be an int >= 1, got {batch!r}")
    if tokens is not None:
        if tokens < 1:
            raise InvalidInputError(f"tokens must be >= 1, got {tokens}")
        steps = max(1, math.ceil(tokens / (batch * cfg.block_size)))
    if not isinstance(steps, int) or steps < 1:
        raise InvalidInputError(f"steps must be an int >= 1, got {steps!r}")
    lr = (1e-3 if method == "lora" else 3e-4) if lr is None else lr
    if not lr > 0:
        raise InvalidInputError(f"lr must be > 0, got {lr!r}")
    tok = base.tokenizer()
    train_ids, valid_ids = token_stream(tok, texts_train), token_stream(tok, texts_valid)
    if len(train_ids) < cfg.block_size + 1:
        raise InvalidInputError(
            f"the training texts give {len(train_ids)} tokens; the base's block_size {cfg.block_size} needs at "
            f"least {cfg.block_size + 1}: add text"
        )
    with _threads(threads):
        return _tune(
            base, train_ids, valid_ids, dev, method=method, r=r, alpha=alpha, dropout=dropout,
            targets=lora_targets, steps=steps, batch=batch, lr=lr, seed=seed, progress=progress,
        )  # fmt: skip


def _tune(
    base: TrainedLM,
    train_ids: np.ndarray,
    valid_ids: np.ndarray,
    dev: torch.device,
    *,
    method: str,
    r: int,
    alpha: float,
    dropout: float,
    targets: tuple[str, ...],
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    progress: Progress | None,
) -> Tuned:
    cfg, validated = base.config, len(valid_ids) >= 2
    base_ppl = math.exp(stream_loss(base.module(dev.type), valid_ids, dev)) if validated else None
    torch.manual_seed(seed)  # LoRA's A initialisation and dropout draw from torch's generator
    model = gpt_from_state(cfg, base.state, device=dev.type)
    if method == "lora":
        model = _inject(model, r, alpha, dropout, targets)
    run = train_steps(
        model.train(), train_ids, valid_ids, dev, steps=steps, batch=batch, lr=lr, seed=seed,
        warmup=max(1, steps // 20), min_lr_ratio=0.1, precision="auto", eval_every=max(1, steps // 5),
        # no weight decay: it pulls weights toward zero, not toward the base, and so erodes what was learned
        weight_decay=0.0, eval_tokens=32_768, progress=progress,
    )  # fmt: skip
    model.eval()
    adapter: LoRAAdapter | None = None
    peft_ppl: float | None = None
    if method == "lora":
        adapter = LoRAAdapter(
            r=r, alpha=alpha, dropout=dropout, targets=targets, state=_read_adapter(model, targets),
            base_digest=weights_digest(base), loss_curve=run.loss_curve, val_curve=run.val_curve, steps=steps,
            tokens_per_s=run.tokens_per_s, seconds=run.seconds,
        )  # fmt: skip
        peft_ppl = math.exp(stream_loss(model, valid_ids, dev)) if validated else None
        state = _merged_state(base, adapter)
        model = gpt_from_state(cfg, state, device=dev.type)  # the merged model measures val_perplexity below
    else:
        state = state_to_numpy(model)
    merged = TrainedLM(
        config=cfg,
        tokenizer_json=base.tokenizer_json,
        state=state,
        loss_curve=run.loss_curve,
        val_curve=run.val_curve,
        val_perplexity=math.exp(stream_loss(model, valid_ids, dev)) if validated else None,
        tokens_per_s=run.tokens_per_s,
        seconds=run.seconds,
        n_params=base.n_params or sum(int(v.size) for v in state.values()),
        steps=steps,
        tokens_seen=steps * batch * cfg.block_size,
        seed=seed,
        device=dev.type,
    )
    return Tuned(merged=merged, adapter=adapter, method=method, base_perplexity=base_ppl, adapter_perplexity=peft_ppl)


# -- bytes ------------------------------------------------------------------------------------------------


def adapter_to_bytes(adapter: LoRAAdapter) -> bytes:
    """The adapter as a safetensors file: float32 tensors, everything else JSON under the 'keel' key."""
    from safetensors.numpy import save

    meta = {
        "format": _FORMAT,
        "r": adapter.r,
        "alpha": adapter.alpha,
        "dropout": adapter.dropout,
        "targets": list(adapter.targets),
        "base_digest": adapter.base_digest,
        "loss_curve": [list(p) for p in adapter.loss_curve],
        "val_curve": [list(p) for p in adapter.val_curve],
        "steps": adapter.steps,
        "tokens_per_s": adapter.tokens_per_s,
        "seconds": adapter.seconds,
    }
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in adapter.state.items()}
    return bytes(save(tensors, {"keel": json.dumps(meta)}))


def _expected_shapes(found: dict[str, Any], r: int, targets: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Every tensor an adapter of rank r over `targets` must hold, with its shape, inferred from the header."""
    layers = {int(m.group(1)) for m in (_NAME.fullmatch(k) for k in found) if m}
    n_layer = max(layers) + 1 if layers else 0
    first = found.get(f"blocks.0.{targets[0]}.lora_A")
    shape = first.get("shape") if isinstance(first, dict) else None
    if not n_layer or not isinstance(shape, list) or len(shape) != 2 or not isinstance(shape[1], int):
        raise InvalidInputError(f"not a LoRA adapter over {list(targets)}: no 'blocks.0.{targets[0]}.lora_A' tensor")
    d, rest = divmod(shape[1], _WIDTHS[targets[0]][0])
    if rest or d < 1:
        raise InvalidInputError(f"tensor 'blocks.0.{targets[0]}.lora_A' has shape {shape}; no model width fits it")
    expected: dict[str, tuple[int, int]] = {}
    for name in _names(n_layer, targets):
        width_in, width_out = _WIDTHS[name.split(".", 2)[2]]
        expected[name + ".lora_A"] = (r, width_in * d)
        expected[name + ".lora_B"] = (width_out * d, r)
    return expected


def adapter_from_bytes(data: bytes) -> LoRAAdapter:
    """An adapter saved by adapter_to_bytes; every tensor's name, shape and dtype is checked against r and
    targets before any is read. Malformed input raises InvalidInputError naming the problem."""
    from keel.genai.lm_io import keel_header, load_checked  # the same bounded parse and checks as a model file

    header, meta = keel_header(data, _FORMAT, what="LoRA adapter", label="adapter")
    targets = _check_lora(meta.get("r"), meta.get("alpha"), meta.get("dropout"), meta.get("targets"))
    digest = meta.get("base_digest")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise InvalidInputError(f"adapter metadata needs base_digest, a sha256 hex string; found {digest!r}")
    found = {k: v for k, v in header.items() if k != "__metadata__"}
    expected = _expected_shapes(found, meta["r"], targets)
    unknown, missing = sorted(set(found) - set(expected)), sorted(set(expected) - set(found))
    if unknown or missing:
        raise InvalidInputError(f"adapter tensors do not match r/targets: unknown {unknown[:5]}, missing {missing[:5]}")
    state = load_checked(data, found, expected, needs=f"r={meta['r']} needs")
    try:
        return LoRAAdapter(
            r=meta["r"], alpha=float(meta["alpha"]), dropout=float(meta["dropout"]), targets=targets,
            state=state, base_digest=digest,
            loss_curve=tuple((int(s), float(v)) for s, v in meta.get("loss_curve", [])),
            val_curve=tuple((int(s), float(v)) for s, v in meta.get("val_curve", [])),
            steps=int(meta.get("steps", 0)), tokens_per_s=float(meta.get("tokens_per_s", 0.0)),
            seconds=float(meta.get("seconds", 0.0)),
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"adapter metadata has a malformed field: {exc}") from None
