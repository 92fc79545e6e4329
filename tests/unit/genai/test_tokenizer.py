"""Byte-level BPE: lossless on any Unicode, JSON round trip, and a transformers wrapper that encodes."""

from __future__ import annotations

import pytest

from keel.errors import InvalidInputError
from keel.genai.tokenizer import BOS, EOS, PAD, BPETokenizer, train_tokenizer

from ._lm_fixtures import corpus

TRICKY = [
    "",
    "def f(x):\n\treturn x\r\n",
    "emoji 🙂👩‍👩‍👧‍👦 flags 🇫🇷 skin 👍🏽",
    "naïve café Ωμέγα 日本語 한국어 עברית العربية",
    "  leading and trailing spaces  ",
    "\r\n\r\n\t\t\x00\x7f\u200b\ufeff",
    "e\u0301 (a combining accent, not NFC-normalised)",
    "<|bos|> written in text is not the special token",
    "a" * 500,
]


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return train_tokenizer(corpus(60), vocab_size=400)


@pytest.mark.parametrize("text", TRICKY)
def test_encode_decode_round_trips_any_unicode(tok: BPETokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) > 0 or text == ""


def test_special_tokens_have_fixed_ids_and_are_never_produced_from_text(tok: BPETokenizer) -> None:
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    assert not {0, 1, 2} & set(tok.encode(f"{BOS}{EOS}{PAD} x"))
    assert tok.decode([tok.bos_id, *tok.encode("ok"), tok.eos_id]) == "ok"


def test_training_learns_merges_so_code_takes_fewer_tokens_than_bytes(tok: BPETokenizer) -> None:
    text = corpus(1)[0]
    assert 259 < tok.vocab_size <= 400  # stops early when no pair is seen twice more
    assert len(tok.encode(text)) < len(text.encode("utf-8")) / 2


def test_json_round_trip_gives_the_same_tokenizer(tok: BPETokenizer) -> None:
    again = BPETokenizer.from_str(tok.to_str())
    assert again == tok
    for text in TRICKY:
        assert again.encode(text) == tok.encode(text)


def test_transformers_wrapper_encodes_to_tokens_and_round_trips(tok: BPETokenizer) -> None:
    fast = tok.to_transformers()
    assert (fast.bos_token_id, fast.eos_token_id, fast.pad_token_id) == (0, 1, 2)
    for text in TRICKY[1:]:
        ids = fast(text, add_special_tokens=False)["input_ids"]
        assert len(ids) > 0  # the GPT2TokenizerFast-from-files pitfall encodes everything to []
        assert ids == tok.encode(text)
        assert fast.decode(ids) == text


def test_unusable_inputs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="at least 259"):
        train_tokenizer(["abc"], vocab_size=100)
    with pytest.raises(InvalidInputError, match="at least one text"):
        train_tokenizer([], vocab_size=300)
    with pytest.raises(InvalidInputError, match="not a tokenizers JSON"):
        BPETokenizer.from_str("{not json")
    with pytest.raises(InvalidInputError, match="outside the vocabulary"):
        train_tokenizer(["abc"], vocab_size=300).decode([10_000])
