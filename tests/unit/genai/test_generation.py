"""Generation: streamed equals whole under a seed, greedy is deterministic, limits and stops respected."""

from __future__ import annotations

import pytest

from keel.errors import InvalidInputError
from keel.genai.generation import generate, stream
from keel.genai.lm import GPTConfig, TrainedLM
from keel.genai.tokenizer import train_tokenizer
from keel.genai.train import train_lm

from ._lm_fixtures import train_tiny


@pytest.fixture(scope="module")
def lm() -> TrainedLM:
    return train_tiny()


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 1.0},
        {"temperature": 0.7, "top_k": 20},
        {"temperature": 1.2, "top_p": 0.8},
        {"temperature": 0.9, "top_k": 50, "top_p": 0.95, "stop": ["\n\n"]},
    ],
)
def test_streamed_pieces_join_to_the_whole_generation_under_a_seed(lm: TrainedLM, params: dict[str, object]) -> None:
    whole = generate(lm, "def add", max_tokens=80, seed=7, **params)  # type: ignore[arg-type]
    pieces = list(stream(lm, "def add", max_tokens=80, seed=7, **params))  # type: ignore[arg-type]
    assert "".join(pieces) == whole.text
    assert len(pieces) > 1 and all(pieces)
    other = generate(lm, "def add", max_tokens=80, seed=8, **params)  # type: ignore[arg-type]
    assert other.tokens != whole.tokens  # the seed matters (80 sampled tokens never coincide by chance here)


def test_greedy_is_deterministic_and_ignores_the_seed(lm: TrainedLM) -> None:
    a = generate(lm, "class Point", max_tokens=40, temperature=0, seed=1)
    b = generate(lm, "class Point", max_tokens=40, temperature=0, seed=2)
    assert a.tokens == b.tokens and a.text == b.text
    assert "self" in a.text  # the tiny model has learned the corpus' pattern


def test_max_tokens_is_respected(lm: TrainedLM) -> None:
    g = generate(lm, "def", max_tokens=5, temperature=0)
    assert len(g.tokens) == 5 and g.finish_reason == "length"
    assert generate(lm, "def", max_tokens=0).text == ""
    long = generate(lm, "def", max_tokens=100, temperature=0)  # past block_size 32: the window slides
    assert len(long.tokens) + long.prompt_tokens > lm.config.block_size and long.finish_reason in ("length", "eos")


def test_stop_sequence_cuts_the_text_before_it(lm: TrainedLM) -> None:
    free = generate(lm, "class Point", max_tokens=40, temperature=0)
    stop = "self"
    assert stop in free.text
    g = generate(lm, "class Point", max_tokens=40, temperature=0, stop=[stop, "never-seen"])
    assert g.finish_reason == "stop"
    assert g.text == free.text[: free.text.index(stop)]
    assert "".join(stream(lm, "class Point", max_tokens=40, temperature=0, stop=stop)) == g.text


def test_long_prompt_is_truncated_to_the_last_block_and_said_so(lm: TrainedLM) -> None:
    g = generate(lm, "x = 1\n" * 100, max_tokens=3, temperature=0)
    assert g.prompt_truncated and g.prompt_tokens == lm.config.block_size
    short = generate(lm, "x", max_tokens=3, temperature=0)
    assert not short.prompt_truncated and short.prompt_tokens == 2  # <|bos|> + 'x'


def test_multibyte_characters_are_never_split_across_pieces() -> None:
    # 259 tokens = bytes only: every emoji is four tokens, so most single tokens are not valid UTF-8
    tok = train_tokenizer(["🙂é🙂é"], vocab_size=259)
    config = GPTConfig(vocab_size=259, n_layer=1, n_head=2, n_embd=32, block_size=32)
    lm = train_lm(["🙂é" * 40] * 20, config=config, tokenizer=tok, steps=60, batch=8, lr=1e-2, seed=0)
    whole = generate(lm, "🙂", max_tokens=24, temperature=0)
    pieces = list(stream(lm, "🙂", max_tokens=24, temperature=0))
    assert "🙂" in whole.text and "".join(pieces) == whole.text
    assert "\ufffd" not in whole.text
    assert len(pieces) < len(whole.tokens)  # a piece waits for all bytes of its character


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"stop": [""]}, "stop sequences"),
    ],
)
def test_unusable_sampling_parameters_are_refused(lm: TrainedLM, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        generate(lm, "x", **kwargs)  # type: ignore[arg-type]


def test_streaming_leaves_no_inference_mode_on_in_the_callers_code(lm: TrainedLM) -> None:
    import torch

    states = [torch.is_inference_mode_enabled() for _ in stream(lm, "def", max_tokens=10, temperature=0)]
    assert states and not any(states)
