"""Interpolated Kneser-Ney: a proper distribution, a hand-computed example, sensible perplexities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keel.errors import InvalidInputError, NotFittedError
from keel.genai.ngram import KneserNey, fit


def _corpus(seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 40, size=rng.integers(5, 60)).tolist() for _ in range(30)]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_distribution_sums_to_one_over_the_vocabulary(order: int) -> None:
    model = fit(_corpus(), order=order, discount=0.75, vocab_size=50)  # ids 40..49 never seen
    seen = _corpus()[0]
    for context in ([], seen[:1], seen[:2], seen[3:5], [45, 46], [7, 49], [0]):
        dist = model.distribution(context)
        assert dist.shape == (50,)
        assert abs(dist.sum() - 1.0) < 1e-9
        assert dist.min() > 0.0
        for token in (seen[2], 41, 0):
            assert model.prob(token, context) == pytest.approx(dist[token], rel=1e-12)


def test_bigram_matches_a_hand_computed_example() -> None:
    # Sequence 0 1 0 2, D = 0.5, V = 3. Continuation counts: N(.0) = |{<s>, 1}| = 2, N(.1) = N(.2) = 1,
    # total 4, 3 types: P(0) = 1.5/4 + 0.5*3/4/3 = 0.5, P(1) = P(2) = 0.25.
    # P(1|0) = (1-0.5)/2 + 0.5*2/2*P(1) = 0.375; P(0|0) = 0.5*P(0) = 0.25; P(0|<s>) = 0.5/1 + 0.5*P(0) = 0.75.
    model = fit([[0, 1, 0, 2]], order=2, discount=0.5, vocab_size=3)
    assert model.prob(0, [2]) == pytest.approx(0.5, abs=1e-12)  # context 2 never seen: the unigram
    assert model.prob(1, [2]) == pytest.approx(0.25, abs=1e-12)
    assert model.prob(1, [0]) == pytest.approx(0.375, abs=1e-12)
    assert model.prob(2, [0]) == pytest.approx(0.375, abs=1e-12)
    assert model.prob(0, [0]) == pytest.approx(0.25, abs=1e-12)
    assert model.prob(0, []) == pytest.approx(0.75, abs=1e-12)
    assert model.perplexity([[0, 1]]) == pytest.approx((0.75 * 0.375) ** -0.5, rel=1e-12)


def test_repetitive_corpus_has_low_perplexity_and_random_has_high() -> None:
    pattern = [3, 1, 4, 1, 5, 9, 2, 6] * 20
    model = fit([pattern] * 5, order=3, vocab_size=100)
    assert model.perplexity([pattern]) < 1.5
    noise = fit(_corpus(1), order=3, vocab_size=40)
    assert noise.perplexity(_corpus(2)) > 20.0  # near-uniform tokens over 40 ids


def test_trigram_beats_unigram_on_structured_text() -> None:
    rng = np.random.default_rng(3)
    seqs = []
    for _ in range(40):
        start = int(rng.integers(0, 10))
        seqs.append([(start + 3 * i) % 10 for i in range(30)])
    train, valid = seqs[:30], seqs[30:]
    assert fit(train, order=3).perplexity(valid) < fit(train, order=1).perplexity(valid) / 3


def test_unseen_tokens_get_finite_log_probability() -> None:
    model = fit([[1, 2, 3, 1, 2, 3]], order=3, vocab_size=10)
    assert math.isfinite(model.log_prob(9, [1, 2]))
    assert math.isfinite(model.perplexity([[9, 8, 7, 1, 2]]))
    with pytest.raises(InvalidInputError, match="outside the vocabulary"):
        model.prob(10, [1])


def test_input_checks() -> None:
    with pytest.raises(NotFittedError):
        KneserNey().prob(0)
    with pytest.raises(InvalidInputError, match="discount"):
        fit([[1, 2]], discount=1.5)
    with pytest.raises(InvalidInputError, match="empty"):
        fit([[], []])
