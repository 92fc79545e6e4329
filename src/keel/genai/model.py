"""A compact decoder-only transformer in PyTorch (pre-LN GPT, nanoGPT-shaped) with a KV cache.

Token + learned position embeddings, `n_layer` blocks of causal self-attention
(scaled_dot_product_attention) and a GELU MLP, a final LayerNorm and an output projection tied to the
token embedding. The linear layers are named `attn.qkv`, `attn.proj`, `mlp.fc`, `mlp.proj` so that
peft's LoRA can target them by name. Importing this module imports torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from keel.errors import InvalidInputError
from keel.genai.lm import PRESETS, GPTConfig, parameter_shapes

__all__ = [
    "GPT",
    "PRESETS",
    "GPTConfig",
    "KVCache",
    "decode_step",
    "gpt_from_state",
    "pack_for_decoding",
    "state_to_numpy",
]


class KVCache:
    """Keys and values of every layer for one sequence, preallocated to block_size positions."""

    def __init__(self, config: GPTConfig, *, batch: int = 1, device: str | torch.device = "cpu") -> None:
        hd = config.n_embd // config.n_head
        shape = (config.n_layer, 2, batch, config.n_head, config.block_size, hd)
        self.kv = torch.zeros(shape, device=device)  # (layer, k|v, batch, head, time, head_dim)
        self.length = 0  # positions filled


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        b, t, c = x.shape  # (batch, time, channels)
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is None:
            drop = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            # cache: (k|v, batch, head, block, head_dim); write this step's keys/values, attend to all so far
            cache[0, :, :, start : start + t] = k
            cache[1, :, :, start : start + t] = v
            if t > 1:
                # a prefill always starts at position 0, so the causal mask over these t tokens is exact
                assert start == 0, "prefill must start at position 0"
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # one new token sees every cached position: no mask needed
                y = F.scaled_dot_product_attention(q, cache[0, :, :, : start + 1], cache[1, :, :, : start + 1])
        out: torch.Tensor = self.proj(y.transpose(1, 2).reshape(b, t, c))
        return out


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.drop(self.proj(F.gelu(self.fc(x), approximate="tanh")))
        return out


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, start)
        out: torch.Tensor = x + self.mlp(self.ln2(x))
        return out


class GPT(nn.Module):
    """The model; `forward(idx)` gives logits (batch, time, vocab) for token ids (batch, time)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections: keeps the residual stream's variance flat in depth
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        b, t = idx.shape
        start = 0 if cache is None else cache.length
        if start + t > self.config.block_size:
            raise InvalidInputError(f"{start + t} positions exceed block_size {self.config.block_size}")
        pos = torch.arange(start, start + t, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (batch, time, channels)
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache.kv[i], start)
        if cache is not None:
            cache.length = start + t
        # tied output projection: the token embedding doubles as the unembedding (no separate lm_head)
        return F.linear(self.ln_f(x), self.tok_emb.weight)


# -- one-token decoding without the module machinery -----------------------------------------------------
# Batch-1 decoding is a chain of matrix-vector products a few microseconds each, so nn.Module call overhead
# and weight layout dominate: (in, out)-contiguous copies of the weights make each product ~40 % faster than
# F.linear on the (out, in) originals, and plain functions skip ~60 module calls per token. The packed copy
# is rebuilt whenever a parameter changes (storage or in-place version), so fine-tuning cannot leave it stale.


def pack_for_decoding(model: GPT) -> list[torch.Tensor]:
    """The weights decode_step reads, (in, out)-contiguous; cached on the model until a parameter changes."""
    params = list(model.parameters())
    signature = tuple((p.data_ptr(), p._version) for p in params)
    cached = model.__dict__.get("_packed_cache")
    if cached is not None and cached[0] == signature:
        return list(cached[1])
    named = dict(model.named_parameters())
    with torch.no_grad():
        out: list[torch.Tensor] = []
        for i in range(model.config.n_layer):
            for name in (
                "ln1.weight",
                "ln1.bias",
                "attn.qkv",
                "attn.proj",
                "ln2.weight",
                "ln2.bias",
                "mlp.fc",
                "mlp.proj",
            ):
                full = f"blocks.{i}.{name}"
                if name.startswith("ln"):
                    out.append(named[full])
                else:  # a linear layer: (in, out)-contiguous weight, then its bias
                    out += [named[full + ".weight"].t().contiguous(), named[full + ".bias"]]
        out += [named["ln_f.weight"], named["ln_f.bias"], named["tok_emb.weight"].t().contiguous()]
    model.__dict__["_packed_cache"] = (signature, out)
    return out


@torch.inference_mode()
def decode_step(model: GPT, token: int, cache: KVCache, packed: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Logits (vocab,) for one new token at position cache.length, extending the cache (eval mode only).

    Pass `packed` (pack_for_decoding(model)) when calling in a loop: checking the cache costs a walk over
    every parameter."""
    cfg, start = model.config, cache.length
    if start >= cfg.block_size:
        raise InvalidInputError(f"position {start} is past block_size {cfg.block_size}")
    d, h = cfg.n_embd, cfg.n_head
    w = packed if packed is not None else pack_for_decoding(model)
    x = (model.tok_emb.weight[token] + model.pos_emb.weight[start])[None]  # (1, channels)
    for i in range(cfg.n_layer):
        ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fcw, fcb, mpw, mpb = w[12 * i : 12 * i + 12]
        qkv = torch.addmm(qkvb, F.layer_norm(x, (d,), ln1w, ln1b), qkvw).view(3, h, 1, d // h)
        kv = cache.kv[i, :, :1]  # (k|v, 1, head, block, head_dim)
        kv[:, 0, :, start] = qkv[1:, :, 0]
        # 4-D inputs: scaled_dot_product_attention takes a path about twice as fast as for 3-D ones here
        y = F.scaled_dot_product_attention(qkv[:1], kv[0, :, :, : start + 1], kv[1, :, :, : start + 1])
        x = x + torch.addmm(projb, y.reshape(1, d), projw)
        x = x + torch.addmm(
            mpb, F.gelu(torch.addmm(fcb, F.layer_norm(x, (d,), ln2w, ln2b), fcw), approximate="tanh"), mpw
        )
    cache.length = start + 1
    return (F.layer_norm(x, (d,), w[-3], w[-2]) @ w[-1])[0]


def state_to_numpy(model: GPT) -> dict[str, np.ndarray]:
    """The model's weights as float32 NumPy arrays on the CPU, keyed as parameter_shapes() names them."""
    return {k: v.detach().to("cpu", torch.float32).numpy().copy() for k, v in model.state_dict().items()}


def gpt_from_state(config: GPTConfig, state: dict[str, np.ndarray], *, device: str = "cpu") -> GPT:
    """A GPT in eval mode holding `state`, checked against the config's shapes first."""
    expected = parameter_shapes(config)
    unknown, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    if unknown or missing:
        raise InvalidInputError(f"weights do not match the config: unknown {unknown[:5]}, missing {missing[:5]}")
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise InvalidInputError(f"weight {k!r} has shape {tuple(state[k].shape)}, the config needs {shape}")
    with torch.inference_mode(False):  # parameters must be normal tensors (version counters, autograd for tuning)
        model = GPT(config)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()})
    return model.to(device).eval()
