"""A tiny corpus and a tiny trained model shared by the language-model tests (trained once per module)."""

from __future__ import annotations

from keel.genai.lm import GPTConfig, TrainedLM

TINY = GPTConfig(vocab_size=300, n_layer=2, n_head=2, n_embd=32, block_size=32)


def corpus(n: int = 120) -> list[str]:
    """Code-like text with a strong, learnable pattern."""
    return [
        f"def add_{i}(x, y):\n    return x + y * {i % 7}\n\n"
        f"class Point{i}:\n    def __init__(self, a):\n        self.a = a  # 🙂 naïve\n"
        for i in range(n)
    ]


def train_tiny(steps: int = 60, seed: int = 0) -> TrainedLM:
    from keel.genai.train import train_lm

    return train_lm(corpus(100), corpus(120)[100:], config=TINY, steps=steps, batch=8, lr=1e-2, seed=seed)
