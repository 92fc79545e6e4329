"""Answers generated from retrieved passages: the prompt a language model completes, and the passages
the answer it wrote actually used (its citations).

Values in, values out: `answer_prompt(question, passages)` numbers the passages [1]..[k], then asks the
question and ends with "Answer:"; `find_citations(answer, passages)` says which of them the answer used:

- the answer's explicit markers ("[2]") that name a passage it was given, in order of first use;
- else, sentence by sentence, the passage sharing the sentence's longest run of consecutive words
  (case-folded), when that run is at least `min_run` (4) words long.

An answer that cites nothing it was given is unsupported (`Citations.supported` is False).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from keel.errors import InvalidInputError

__all__ = ["Citations", "answer_prompt", "find_citations", "longest_common_run"]

_MARKER = re.compile(r"\[(\d{1,3})\]")
_WORD = re.compile(r"\w+")
# A sentence ends at . ! ? followed by space, or at a line break (a small model writes few full stops).
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Citations:
    """The passages (1-based ranks, in order of first use) an answer used, and how they were found."""

    ranks: tuple[int, ...]
    method: Literal["markers", "overlap", "none"]

    @property
    def supported(self) -> bool:
        """False when the answer cites nothing it was given."""
        return bool(self.ranks)


def answer_prompt(question: str, passages: Sequence[str], *, max_passage_chars: int = 600) -> str:
    """The passages numbered [1]..[k] (whitespace collapsed, each cut to `max_passage_chars`), then
    the question, then "Answer:" for the model to complete.

    The question and "Answer:" come last on purpose: a model keeps only the last block_size tokens
    of a long prompt, so what is cut is the worst-ranked passages' text, never the question.
    """
    if not question.strip():
        raise InvalidInputError("question must be non-empty text")
    if max_passage_chars < 1:
        raise InvalidInputError(f"max_passage_chars must be >= 1, got {max_passage_chars}")
    lines = [f"[{i}] {' '.join(p.split())[:max_passage_chars]}" for i, p in enumerate(passages, start=1)]
    return "\n".join([*lines, f"Question: {' '.join(question.split())}", "Answer:"])


def find_citations(answer: str, passages: Sequence[str], *, min_run: int = 4) -> Citations:
    """The passages `answer` used: its explicit [n] markers naming a passage (1..len(passages)), else
    each sentence's passage by the longest shared run of >= `min_run` consecutive words."""
    if min_run < 1:
        raise InvalidInputError(f"min_run must be >= 1, got {min_run}")
    k = len(passages)
    marked: list[int] = []
    for m in _MARKER.finditer(answer):
        n = int(m.group(1))
        if 1 <= n <= k and n not in marked:
            marked.append(n)
    if marked:
        return Citations(tuple(marked), "markers")
    # Why a run of >= 4 consecutive words: a model conditioned on passages reuses their phrases, so a
    # sentence that repeats four words in a row of a passage most likely came from it; shorter
    # overlaps ("of the", "is used to") occur by chance in any two English or code texts, and counting
    # them would mark nearly every answer as supported by some passage. A markers-first rule keeps an
    # answer that says where it read something from being second-guessed by word matching.
    words = [_words(p) for p in passages]
    used: list[int] = []
    for sentence in _SENTENCE.split(answer):
        said = _words(sentence)
        if len(said) < min_run:
            continue
        best, best_run = 0, 0
        for rank, passage in enumerate(words, start=1):
            run = longest_common_run(said, passage)
            if run > best_run:  # strictly longer: a tie goes to the better-ranked passage
                best, best_run = rank, run
        if best_run >= min_run and best not in used:
            used.append(best)
    return Citations(tuple(used), "overlap" if used else "none")


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """The length of the longest run of consecutive items that `a` and `b` share (0 if none)."""
    if not a or not b:
        return 0
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                if current[j] > best:
                    best = current[j]
        previous = current
    return best


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())
