"""A byte-level BPE tokenizer (`tokenizers`): trained on texts, lossless on any Unicode, JSON round trip.

Byte-level means the base alphabet is the 256 bytes (shown as printable characters, GPT-2's table), so
every string encodes and decodes back identically: emojis, tabs, CRLF, lone combining marks. There is no
normalizer (NFC would change bytes) and no prefix space (it would add one). Special tokens <|bos|>,
<|eos|>, <|pad|> take ids 0, 1, 2 and are never produced from text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keel._optional import require
from keel.errors import InvalidInputError

__all__ = ["BOS", "EOS", "PAD", "BPETokenizer", "train_tokenizer"]

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
_SPECIALS = (BOS, EOS, PAD)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable character -> byte table, the inverse of what the ByteLevel pre-tokenizer uses."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


@dataclass(frozen=True)
class BPETokenizer:
    """A trained tokenizer, held as its JSON (`to_str`); the `tokenizers` object is built once."""

    json: str
    _tok: Any = field(default=None, compare=False, repr=False, hash=False)
    _bytes: list[bytes] = field(default_factory=list, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        tokenizers = require("tokenizers", extra="genai", purpose="Language-model tokenizers")
        try:
            tok = tokenizers.Tokenizer.from_str(self.json)
        except Exception as exc:  # the Rust side raises a bare Exception for malformed JSON
            raise InvalidInputError(f"not a tokenizers JSON document: {exc}") from None
        missing = [s for s in _SPECIALS if tok.token_to_id(s) is None]
        if missing:
            raise InvalidInputError(f"tokenizer lacks special tokens {missing}; train it with train_tokenizer()")
        # text that spells "<|eos|>" must stay text: a prompt cannot inject a control token, and decode is exact
        tok.encode_special_tokens = True
        object.__setattr__(self, "_tok", tok)
        # id -> raw bytes, for incremental decoding of generated tokens (special tokens decode to nothing)
        table, vocab = _byte_decoder(), tok.get_vocab()
        out = [b""] * (max(vocab.values()) + 1)
        for piece, i in vocab.items():
            if piece not in _SPECIALS:
                out[i] = bytes(table[c] for c in piece)
        object.__setattr__(self, "_bytes", out)

    @classmethod
    def from_str(cls, text: str) -> BPETokenizer:
        return cls(text)

    def to_str(self) -> str:
        return self.json

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def bos_id(self) -> int:
        return int(self._tok.token_to_id(BOS))

    @property
    def eos_id(self) -> int:
        return int(self._tok.token_to_id(EOS))

    @property
    def pad_id(self) -> int:
        return int(self._tok.token_to_id(PAD))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens skipped (invalid UTF-8 from a model becomes U+FFFD)."""
        return self.token_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, ids: Sequence[int]) -> bytes:
        try:
            return b"".join(self._bytes[i] for i in ids)
        except IndexError:
            bad = [i for i in ids if not 0 <= i < len(self._bytes)]
            raise InvalidInputError(f"token ids {bad[:5]} are outside the vocabulary (0..{len(self._bytes) - 1})")

    def to_transformers(self) -> Any:
        """A transformers PreTrainedTokenizerFast wrapping this tokenizer, bos/eos/pad ids set explicitly.

        Wrapping the object (not vocab + merges files) avoids transformers 5's zero-token pitfall."""
        transformers = require("transformers", extra="genai", purpose="The transformers tokenizer")
        tokenizers = require("tokenizers", extra="genai")
        inner = tokenizers.Tokenizer.from_str(self.json)
        inner.encode_special_tokens = True
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=inner, bos_token=BOS, eos_token=EOS, pad_token=PAD, split_special_tokens=True
        )
        fast.bos_token_id, fast.eos_token_id, fast.pad_token_id = self.bos_id, self.eos_id, self.pad_id
        return fast


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 4096, min_frequency: int = 2) -> BPETokenizer:
    """Train a byte-level BPE tokenizer with <|bos|>, <|eos|>, <|pad|> (ids 0-2) on `texts`.

    >>> tok = train_tokenizer(["def f(x):\\n    return x\\n"] * 50, vocab_size=300)
    >>> tok.decode(tok.encode("naïve 🙂\\r\\n")) == "naïve 🙂\\r\\n"
    True
    """
    if vocab_size < 256 + len(_SPECIALS):
        raise InvalidInputError(f"vocab_size must be at least 259 (256 bytes + 3 special tokens), got {vocab_size}")
    tk = require("tokenizers", extra="genai", purpose="Language-model tokenizers")
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(_SPECIALS),
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes even if unseen: lossless
        show_progress=False,
    )
    n = 0

    def counted() -> Iterable[str]:
        nonlocal n
        for t in texts:
            if not isinstance(t, str):
                raise InvalidInputError(f"texts must be strings, got {type(t).__name__}")
            n += 1
            yield t

    tok.train_from_iterator(counted(), trainer=trainer)
    if n == 0:
        raise InvalidInputError("train_tokenizer needs at least one text")
    return BPETokenizer(tok.to_str())
