"""The values of a language model, torch-free: its config, the size presets, a trained model, a generation.

Everything here is plain Python and NumPy so that `import keel.genai` stays light; the torch side
(keel.genai.model, .train, .generate) is imported only when a model is built, trained or run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.errors import InvalidInputError
from keel.genai.tokenizer import BPETokenizer

if TYPE_CHECKING:
    from keel.genai.model import GPT

__all__ = ["PRESETS", "GPTConfig", "Generation", "TrainedLM", "parameter_shapes", "count_parameters"]


@dataclass(frozen=True)
class GPTConfig:
    """A pre-LN GPT: token + learned position embeddings, `n_layer` blocks, tied output embedding."""

    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    block_size: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise InvalidInputError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InvalidInputError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def with_vocab(self, vocab_size: int) -> GPTConfig:
        return replace(self, vocab_size=vocab_size)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "dropout")}


# Sizes counted with each preset's own vocabulary (count_parameters): tiny 1,071,872, small 4,273,664,
# base 12,318,720. The 4M preset matches the measured 4.3M-parameter GPT-2 so the benchmark compares
# like with like. A tokenizer with a different vocabulary changes the embedding rows (vocab_size x n_embd).
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(vocab_size=2048, n_layer=4, n_head=4, n_embd=128, block_size=128),
    "small": GPTConfig(vocab_size=4096, n_layer=4, n_head=4, n_embd=256, block_size=256),
    "base": GPTConfig(vocab_size=4096, n_layer=6, n_head=6, n_embd=384, block_size=256),
}


def parameter_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the model's state by name (what a saved file must hold, exactly)."""
    d = config.n_embd
    shapes: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (config.vocab_size, d),  # also the output projection (tied)
        "pos_emb.weight": (config.block_size, d),
        "ln_f.weight": (d,),
        "ln_f.bias": (d,),
    }
    for i in range(config.n_layer):
        p = f"blocks.{i}."
        shapes |= {
            p + "ln1.weight": (d,),
            p + "ln1.bias": (d,),
            p + "attn.qkv.weight": (3 * d, d),
            p + "attn.qkv.bias": (3 * d,),
            p + "attn.proj.weight": (d, d),
            p + "attn.proj.bias": (d,),
            p + "ln2.weight": (d,),
            p + "ln2.bias": (d,),
            p + "mlp.fc.weight": (4 * d, d),
            p + "mlp.fc.bias": (4 * d,),
            p + "mlp.proj.weight": (d, 4 * d),
            p + "mlp.proj.bias": (d,),
        }
    return shapes


def count_parameters(config: GPTConfig) -> int:
    return sum(int(np.prod(s)) for s in parameter_shapes(config).values())


@dataclass(frozen=True, eq=False)
class TrainedLM:
    """A trained language model: float32 NumPy weights (safetensors-ready), config, tokenizer and curves.

    `loss_curve` is [(step, train_loss)], `val_curve` [(step, val_loss)] (nats per token);
    `val_perplexity` is exp(final validation loss), None without validation text. `tokens_per_s` counts
    training steps only (not evaluation). Compared by identity: its weights are arrays.
    """

    config: GPTConfig
    tokenizer_json: str
    state: dict[str, np.ndarray]
    loss_curve: tuple[tuple[int, float], ...] = ()
    val_curve: tuple[tuple[int, float], ...] = ()
    val_perplexity: float | None = None
    tokens_per_s: float = 0.0
    seconds: float = 0.0
    n_params: int = 0
    steps: int = 0
    tokens_seen: int = 0
    seed: int | None = None
    device: str = "cpu"
    # built torch modules and the tokenizer, per device; a cache, not part of the value
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def tokenizer(self) -> BPETokenizer:
        """The BPETokenizer, built once."""
        if "tokenizer" not in self._cache:
            self._cache["tokenizer"] = BPETokenizer.from_str(self.tokenizer_json)
        tok: BPETokenizer = self._cache["tokenizer"]
        return tok

    def module(self, device: str = "cpu") -> GPT:
        """The torch GPT in eval mode on `device`, built from `state` once per device (imports torch)."""
        key = f"module:{device}"
        if key not in self._cache:
            from keel.genai.model import gpt_from_state

            self._cache[key] = gpt_from_state(self.config, self.state, device=device)
        model: GPT = self._cache[key]
        return model


FinishReason = Literal["length", "stop", "eos"]


@dataclass(frozen=True)
class Generation:
    """One completion: the text, the generated token ids, why it ended and how long it took.

    `tokens` are the generated ids, including a final <|eos|> (finish_reason 'eos') or the token that
    completed a stop sequence (finish_reason 'stop'; the text ends before the stop sequence).
    `prompt_tokens` counts the prompt tokens the model saw (after truncation, with the leading <|bos|>
    when the prompt was not truncated); `prompt_truncated` says whether older prompt tokens were dropped.
    """

    text: str
    tokens: tuple[int, ...]
    finish_reason: FinishReason
    prompt_tokens: int
    seconds: float
    prompt_truncated: bool = False
