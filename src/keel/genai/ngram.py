"""An interpolated Kneser-Ney n-gram language model over token ids: the honest baseline for a small LM.

On a repetitive domain corpus a smoothed bigram can beat a small transformer trained on the same
tokens, so every domain model's held-out perplexity is reported next to this one's, counted on the
same training tokens.

The model (Chen & Goodman's interpolated Kneser-Ney with one discount D per order):

    P_n(w | h) = max(c(h w) - D, 0) / c(h .) + D * N1+(h .) / c(h .) * P_{n-1}(w | h')

where h' is h without its first token. The highest order counts raw occurrences; lower orders count
continuations (c(h w) = the number of distinct tokens seen just before h w), which is what makes a
word that only ever follows one context unlikely in a new one. The unigram level interpolates with a
uniform distribution over the vocabulary, so no token in the vocabulary has zero probability. A
context never seen backs off to the next order in full. Each sequence is padded on the left with
order - 1 start markers (-1, a context symbol only: it is never predicted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from keel.errors import InvalidInputError, NotFittedError

__all__ = ["KneserNey", "fit"]

BOS = -1


@dataclass
class _Level:
    """Counts of one order: context -> {next token: count}, with the per-context total and type count."""

    followers: dict[tuple[int, ...], dict[int, int]] = field(default_factory=dict)
    totals: dict[tuple[int, ...], int] = field(default_factory=dict)
    types: dict[tuple[int, ...], int] = field(default_factory=dict)

    def finish(self) -> None:
        self.totals = {h: sum(f.values()) for h, f in self.followers.items()}
        self.types = {h: len(f) for h, f in self.followers.items()}


class KneserNey:
    """Interpolated Kneser-Ney up to `order` (1-3 typical) over integer token ids in [0, vocab_size).

    `fit` counts n-grams on training sequences; `prob`, `log_prob`, `distribution` and `perplexity`
    query the model. Learned state ends in `_`.
    """

    def __init__(self, order: int = 3, discount: float = 0.75, vocab_size: int | None = None) -> None:
        self.order = order
        self.discount = discount
        self.vocab_size = vocab_size

    def fit(self, token_sequences: Iterable[Sequence[int]]) -> KneserNey:
        if not isinstance(self.order, int) or self.order < 1:
            raise InvalidInputError(f"order must be an integer >= 1, got {self.order!r}")
        if not 0.0 < self.discount < 1.0:
            raise InvalidInputError(f"discount must be in (0, 1), got {self.discount}")
        n = self.order
        raw: dict[tuple[int, ...], int] = {}
        max_id = -1
        n_tokens = 0
        for seq in token_sequences:
            tokens = [int(t) for t in seq]
            if not tokens:
                continue
            if min(tokens) < 0:
                raise InvalidInputError(f"token ids must be >= 0, got {min(tokens)}")
            max_id = max(max_id, max(tokens))
            n_tokens += len(tokens)
            padded = [BOS] * (n - 1) + tokens
            for i in range(n - 1, len(padded)):
                gram = tuple(padded[i - n + 1 : i + 1])
                raw[gram] = raw.get(gram, 0) + 1
        if n_tokens == 0:
            raise InvalidInputError("no tokens to fit on: every training sequence is empty")
        vocab = self.vocab_size if self.vocab_size is not None else max_id + 1
        if max_id >= vocab:
            raise InvalidInputError(f"token id {max_id} is outside vocab_size={vocab}; pass a larger vocab_size")
        levels = [_Level() for _ in range(n + 1)]  # levels[k] holds k-grams; levels[0] unused
        for gram, count in raw.items():
            _add(levels[n], gram, count)
        # Continuation counts: each distinct (k+1)-gram x h w adds one to the k-gram h w. Every
        # lower-order gram ending in a real token has a left neighbour, thanks to the padding.
        for k in range(n - 1, 0, -1):
            for gram in _grams(levels[k + 1]):
                _add(levels[k], gram[1:], 1)
        for level in levels[1:]:
            level.finish()
        self.levels_ = levels
        self.vocab_size_ = vocab
        self.n_train_tokens_ = n_tokens
        return self

    def _check(self) -> None:
        if not hasattr(self, "levels_"):
            raise NotFittedError("this KneserNey model is not fitted yet; call fit(token_sequences) first")

    def _context(self, context: Sequence[int]) -> tuple[int, ...]:
        ctx = tuple(int(t) for t in context)[-(self.order - 1) :] if self.order > 1 else ()
        return (BOS,) * (self.order - 1 - len(ctx)) + ctx

    def prob(self, token: int, context: Sequence[int] = ()) -> float:
        """P(token | the last order-1 tokens of context); a short context is padded with start markers."""
        self._check()
        if not 0 <= token < self.vocab_size_:
            raise InvalidInputError(f"token id {token} is outside the vocabulary [0, {self.vocab_size_})")
        ctx = self._context(context)
        d = self.discount
        p = 1.0 / self.vocab_size_
        for k in range(1, self.order + 1):
            level = self.levels_[k]
            h = ctx[len(ctx) - (k - 1) :] if k > 1 else ()
            total = level.totals.get(h)
            if not total:
                continue  # unseen context: this order passes the lower order through unchanged
            count = level.followers[h].get(token, 0)
            p = max(count - d, 0.0) / total + d * level.types[h] / total * p
        return p

    def log_prob(self, token: int, context: Sequence[int] = ()) -> float:
        """Natural log of `prob`."""
        return math.log(self.prob(token, context))

    def distribution(self, context: Sequence[int] = ()) -> np.ndarray:
        """P(w | context) for every w in the vocabulary, shape (vocab_size,), float64; sums to 1."""
        self._check()
        ctx = self._context(context)
        d = self.discount
        p = np.full(self.vocab_size_, 1.0 / self.vocab_size_)
        for k in range(1, self.order + 1):
            level = self.levels_[k]
            h = ctx[len(ctx) - (k - 1) :] if k > 1 else ()
            total = level.totals.get(h)
            if not total:
                continue
            head = np.zeros(self.vocab_size_)
            followers = level.followers[h]
            head[np.fromiter(followers.keys(), dtype=np.int64)] = np.fromiter(followers.values(), dtype=np.float64) - d
            p = head / total + d * level.types[h] / total * p
        return p

    def perplexity(self, token_sequences: Iterable[Sequence[int]]) -> float:
        """exp(mean negative log-likelihood per token); each token is predicted from its own sequence's past."""
        self._check()
        nll = 0.0
        n = 0
        for seq in token_sequences:
            tokens = [int(t) for t in seq]
            for i, token in enumerate(tokens):
                nll -= self.log_prob(token, tokens[max(0, i - self.order + 1) : i])
                n += 1
        if n == 0:
            raise InvalidInputError("no tokens to evaluate: every sequence is empty")
        return math.exp(nll / n)


def _add(level: _Level, gram: tuple[int, ...], count: int) -> None:
    followers = level.followers.setdefault(gram[:-1], {})
    followers[gram[-1]] = followers.get(gram[-1], 0) + count


def _grams(level: _Level) -> Iterable[tuple[int, ...]]:
    for h, followers in level.followers.items():
        for w in followers:
            yield h + (w,)


def fit(
    token_sequences: Iterable[Sequence[int]], order: int = 3, discount: float = 0.75, vocab_size: int | None = None
) -> KneserNey:
    """A fitted `KneserNey(order, discount, vocab_size)` on the training token sequences."""
    return KneserNey(order=order, discount=discount, vocab_size=vocab_size).fit(token_sequences)
