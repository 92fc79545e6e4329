"""A compact decoder-only transformer in PyTorch (pre-LN GPT, nanoGPT-shaped) with a KV cache.

Token + learned position embeddings, `n_layer` blocks of causal self-attention
(scaled_dot_product_attention) and a GELU MLP, a final LayerNorm and an output projection tied to the
token embedding. The linear layers are named `attn.qkv`, `attn.proj`, `mlp.fc`, `mlp.proj` so that
peft's LoRA can target them by name. Importing this module imports torch.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

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
    "blas_threads",
    "decode_step",
    "gpt_from_state",
    "head_loss",
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
        # tied output projection: the token embedding doubles as the unembedding (no separate lm_head)
        return F.linear(self.hidden(idx, cache), self.tok_emb.weight)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats) of `targets` (batch, time) given `idx`, as F.cross_entropy
        on forward()'s logits would give, without ever holding the (batch * time, vocab) logits: see head_loss."""
        h = self.hidden(idx)
        return head_loss(h.reshape(-1, h.shape[-1]), self.tok_emb.weight, targets.reshape(-1))

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final layer-normed states (batch, time, channels) that the tied output projection reads."""
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
        out: torch.Tensor = self.ln_f(x)
        return out


# -- the training loss without the full logits ----------------------------------------------------------
# F.cross_entropy on (batch * time, vocab) logits (2048 x 4096 floats = 32 MB per training step of the
# small preset) spent about a sixth of a float32 step in log_softmax and its backward, mostly memory traffic
# and page faults: glibc hands blocks of 32 MB and more straight to mmap, so every step faulted its logits
# and their gradient in afresh. Computing the loss and both gradients chunk by chunk of rows in the forward
# pass keeps each chunk's logits in cache, does the same matrix products, and never allocates the whole.


class _HeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        n = h.shape[0]
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, n, rows):
            h_c, t_c = h[s : s + rows], targets[s : s + rows, None]
            # under autocast these products run in bfloat16, exactly as F.linear would; the softmax is float32
            logits = torch.mm(h_c, weight.t()).float()  # (rows, vocab)
            lse = torch.logsumexp(logits, 1, keepdim=True)
            total += (lse - logits.gather(1, t_c)).sum()
            # d(mean loss)/d(logits) = (softmax - one_hot) / n, built in place over the chunk's logits
            probs = logits.sub_(lse).exp_()
            probs.scatter_add_(1, t_c, torch.full(t_c.shape, -1.0, device=h.device)).mul_(1.0 / n)
            if grad_h is not None:
                grad_h[s : s + rows] = torch.mm(probs, weight)
            if grad_w is not None:
                grad_w += torch.mm(probs.t(), h_c)
        ctx.grads = (grad_h, grad_w if grad_w is None else grad_w.to(weight.dtype))
        return total / n

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w = ctx.grads
        ctx.grads = None  # one backward per forward, as for any graph not retained
        return (None if grad_h is None else grad_h * g, None if grad_w is None else grad_w * g, None, None)


def head_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of `targets` (n,) under logits h @ weight.T, h (n, channels), weight (vocab, channels).

    Equal to F.cross_entropy(F.linear(h, weight), targets) (to float rounding); the gradients are computed
    in the forward pass, chunk by chunk of `rows` (default: 4 MB of float32 logits per chunk)."""
    rows = rows or max(1, (1 << 20) // weight.shape[0])
    out: torch.Tensor = _HeadLoss.apply(h, weight, targets, rows)  # type: ignore[no-untyped-call]
    return out


# -- one-token decoding in NumPy ------------------------------------------------------------------------
# Batch-1 decoding is a chain of matrix-vector products over 16.6 MB of float32 weights (the small preset),
# bound by memory traffic, plus ~80 tiny operations per token. torch spends 3-10 us dispatching each tiny one
# (a layer norm on 256 values: ~10 us in place); NumPy 0.5-3 us, and its OpenBLAS products ran ~15 % faster
# than torch's here. So the decode step is NumPy on float32 copies of the weights, in (in, out) layout with
# each LayerNorm's scale and shift folded into the product that follows it (folded in float64), and the
# attention scale folded into the query columns. It reads and writes the KV cache through a NumPy view of
# the same memory, so a torch prefill and NumPy steps share one cache. Logits agree with forward() to ~1e-6.
# The packed copy is rebuilt whenever a parameter changes (storage or in-place version), so fine-tuning
# cannot leave it stale. Off the CPU, decode_step runs forward() on the one token instead.


def pack_for_decoding(model: GPT) -> list[np.ndarray]:
    """The weights decode_step reads (see above); cached on the model until a parameter changes."""
    params = list(model.parameters())
    signature = tuple((p.data_ptr(), p._version) for p in params)
    cached = model.__dict__.get("_packed_cache")
    if cached is not None and cached[0] == signature:
        return list(cached[1])
    st = {k: v.detach().to("cpu", torch.float64).numpy() for k, v in model.state_dict().items()}
    scale = 1.0 / math.sqrt(model.config.n_embd // model.config.n_head)
    d = model.config.n_embd

    def folded(ln: str, linear: str, q_scale: float = 1.0) -> list[np.ndarray]:
        w = st[linear + ".weight"].T * st[ln + ".weight"][:, None]  # (in, out)
        bias = st[ln + ".bias"] @ st[linear + ".weight"].T + (st[linear + ".bias"] if linear + ".bias" in st else 0.0)
        w[:, :d] *= q_scale
        bias = np.broadcast_to(bias, (w.shape[1],)).copy()
        bias[:d] *= q_scale
        return [w, bias]

    out: list[np.ndarray] = [st["tok_emb.weight"], st["pos_emb.weight"]]
    for i in range(model.config.n_layer):
        p = f"blocks.{i}."
        out += folded(p + "ln1", p + "attn.qkv", scale)
        out += [st[p + "attn.proj.weight"].T, st[p + "attn.proj.bias"]]
        out += folded(p + "ln2", p + "mlp.fc")
        out += [st[p + "mlp.proj.weight"].T, st[p + "mlp.proj.bias"]]
    st["lm_head.weight"] = st["tok_emb.weight"]  # tied: the head is the token embedding
    out += folded("ln_f", "lm_head")
    packed = [np.ascontiguousarray(a, dtype=np.float32) for a in out]
    model.__dict__["_packed_cache"] = (signature, packed)
    return list(packed)


def blas_threads(threads: int | None) -> AbstractContextManager[Any]:
    """A context limiting NumPy's BLAS to `threads` (None: unchanged) while decode_step runs.

    Without it OpenBLAS splits each 256 x 4096 product over every core: on a shared two-core machine that
    made a token ~5x slower. The controller is built once (~2 ms); entering a limit then costs ~20 us."""
    if threads is None:
        return nullcontext()
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    out: AbstractContextManager[Any] = _CONTROLLER.limit(limits=threads, user_api="blas")
    return out


_CONTROLLER: Any = None


def _normalized(x: np.ndarray, mean_weights: np.ndarray) -> np.ndarray:
    """(x - mean) / sqrt(var + 1e-5): a LayerNorm without its affine part (folded into the next product)."""
    xc: np.ndarray = x - x @ mean_weights  # a dot product: several times cheaper than x.mean() on 256 values
    xc *= 1.0 / math.sqrt(float(xc @ xc) / len(x) + 1e-5)
    return xc


def decode_step(model: GPT, token: int, cache: KVCache, packed: list[np.ndarray] | None = None) -> torch.Tensor:
    """Logits (vocab,) for one new token at position cache.length, extending the cache (eval mode only).

    Pass `packed` (pack_for_decoding(model)) when calling in a loop: checking the cache costs a walk over
    every parameter; and call it inside blas_threads(1) (generation does), or OpenBLAS may spread each
    product over every core."""
    cfg, start = model.config, cache.length
    if start >= cfg.block_size:
        raise InvalidInputError(f"position {start} is past block_size {cfg.block_size}")
    if cache.kv.device.type != "cpu":
        with torch.inference_mode():
            out: torch.Tensor = model(torch.tensor([[token]], device=cache.kv.device), cache)[0, -1]
            return out
    d, h = cfg.n_embd, cfg.n_head
    w = packed if packed is not None else pack_for_decoding(model)
    kv = cache.kv.numpy()  # shares the cache's memory: (layer, k|v, batch, head, block, head_dim)
    mean_w = np.full(d, 1.0 / d, dtype=np.float32)
    x = w[0][token] + w[1][start]
    for i in range(cfg.n_layer):
        qkvw, qkvb, projw, projb, fcw, fcb, mpw, mpb = w[2 + 8 * i : 10 + 8 * i]
        qkv = _normalized(x, mean_w) @ qkvw
        qkv += qkvb
        qkv = qkv.reshape(3, h, d // h)
        kv[i, :, 0, :, start] = qkv[1:]
        k, v = kv[i, 0, 0, :, : start + 1], kv[i, 1, 0, :, : start + 1]  # (head, time, head_dim)
        att = np.matmul(k, qkv[0][:, :, None]).reshape(h, start + 1)  # the scale is in the query weights
        att -= att.max(1, keepdims=True)
        np.exp(att, out=att)
        att /= att.sum(1, keepdims=True)
        x = x + np.matmul(att[:, None, :], v).reshape(d) @ projw
        x += projb
        f = _normalized(x, mean_w) @ fcw
        f += fcb
        x += _gelu_tanh(f) @ mpw
        x += mpb
    logits = _normalized(x, mean_w) @ w[-2]
    logits += w[-1]
    cache.length = start + 1
    return torch.from_numpy(logits)


def _gelu_tanh(f: np.ndarray) -> np.ndarray:
    """0.5 f (1 + tanh(sqrt(2/pi) (f + 0.044715 f^3))), F.gelu(approximate='tanh'), in place on a copy."""
    t: np.ndarray = f * f
    t *= 0.044715 * 0.7978845608028654
    t += 0.7978845608028654
    t *= f
    np.tanh(t, out=t)
    t += 1.0
    t *= f
    t *= 0.5
    return t


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
