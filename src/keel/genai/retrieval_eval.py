"""Retrieval quality: held-out questions made from passages, and recall@k / MRR per ranking mode.

A generated question is a perturbed sentence of a held-out passage: a contiguous span from its
middle with the stop-words dropped, lower-cased, so that neither retriever can match the passage
verbatim. Its answer is every indexed chunk that contains the span (overlapping chunks and repeated
passages all count). Hand-written questions name their relevant documents instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from keel.errors import InvalidInputError
from keel.genai.corpus import normalise
from keel.genai.retrieval import MODES, Chunk, HybridIndex, Mode, _ranks

__all__ = ["RetrievalQuestion", "RetrievalReport", "questions_from", "evaluate_retrieval"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_ALPHA = re.compile(r"^[A-Za-z][A-Za-z'-]*[.,;:]?$")
STOP_WORDS = frozenset(
    "a an the and or but if then else of to in on at by for with from as is are was were be been being it its "
    "this that these those there here which who whom what when where how why not no can could may might must "
    "shall should will would do does did has have had so such than too very also into onto over under about "
    "above below between through during before after again further once all any both each few more most other "
    "some own same only just i you he she we they them his her our your their".split()
)


@dataclass(frozen=True)
class RetrievalQuestion:
    """A question and what answers it: any of `relevant_chunks`, or any chunk of `relevant_docs`."""

    text: str
    relevant_chunks: frozenset[str] = frozenset()
    relevant_docs: frozenset[str] = frozenset()
    source_chunk: str | None = None

    def is_relevant(self, chunk: Chunk) -> bool:
        return chunk.id in self.relevant_chunks or chunk.doc_id in self.relevant_docs


@dataclass(frozen=True)
class RetrievalReport:
    """Recall@k for each k, mean reciprocal rank (over the full ranking), and the number of questions."""

    mode: str
    n: int
    recall: dict[int, float] = field(default_factory=dict)
    mrr: float = 0.0

    @property
    def recall_at_1(self) -> float:
        return self.recall[1]

    @property
    def recall_at_5(self) -> float:
        return self.recall[5]


def _candidate_sentences(text: str, min_words: int) -> list[list[str]]:
    """Sentences of prose: at least `min_words` words, four in five of them plain words (not grammar or code)."""
    out = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if len(words) >= min_words and sum(bool(_ALPHA.match(w)) for w in words) >= 0.8 * len(words):
            out.append(words)
    return out


def questions_from(
    chunks: Sequence[Chunk],
    n: int,
    seed: int = 0,
    *,
    indexed: Sequence[Chunk] | None = None,
    span: float = 0.6,
    min_words: int = 8,
) -> list[RetrievalQuestion]:
    """Up to `n` questions, at most one per chunk, from prose sentences of `chunks` (the held-out passages).

    Each is a middle span of `span` of a sentence's words with stop-words dropped; its relevant
    chunks are those of `indexed` (default: `chunks`) whose normalised text contains the span.
    """
    if n < 1 or not 0.0 < span <= 1.0:
        raise InvalidInputError(f"need n >= 1 and 0 < span <= 1, got n={n}, span={span}")
    rng = np.random.default_rng(seed)
    pool = list(indexed if indexed is not None else chunks)
    normalised = [normalise(c.text) for c in pool]
    questions: list[RetrievalQuestion] = []
    for i in rng.permutation(len(chunks)):
        if len(questions) >= n:
            break
        sentences = _candidate_sentences(chunks[i].text, min_words)
        if not sentences:
            continue
        words = sentences[int(rng.integers(len(sentences)))]
        width = max(min_words - 2, int(round(span * len(words))))
        start = int(rng.integers(0, len(words) - width + 1))
        piece = words[start : start + width]
        kept = [w.strip(".,;:!?\"'()").lower() for w in piece]
        kept = [w for w in kept if w and w not in STOP_WORDS]
        if len(kept) < 3:
            continue
        needle = normalise(" ".join(piece))
        relevant = frozenset(c.id for c, text in zip(pool, normalised, strict=True) if needle in text)
        questions.append(
            RetrievalQuestion(" ".join(kept), relevant_chunks=relevant | {chunks[i].id}, source_chunk=chunks[i].id)
        )
    return questions


def evaluate_retrieval(
    index: HybridIndex, questions: Sequence[RetrievalQuestion], k: Iterable[int] = (1, 5), modes: Sequence[Mode] = MODES
) -> dict[str, RetrievalReport]:
    """{mode: RetrievalReport} for each ranking mode on the same questions (embedded once, in a batch)."""
    ks = sorted(set(k))
    if not questions or not ks or ks[0] < 1:
        raise InvalidInputError("need at least one question and k values >= 1")
    if index.encoder is None and any(m != "bm25" for m in modes):
        raise InvalidInputError("dense and hybrid evaluation need an index with an encoder (pass encoder=)")
    vectors = index.encoder.embed([q.text for q in questions]) if index.encoder is not None else None
    first_hit: dict[str, list[int]] = {m: [] for m in modes}
    for qi, question in enumerate(questions):
        relevant = np.fromiter((question.is_relevant(c) for c in index.chunks), dtype=bool, count=len(index.chunks))
        lexical = index.bm25.scores(question.text)
        bm25_ranks = _ranks(lexical, lexical > 0)
        if vectors is not None:
            dense = index.embeddings @ vectors[qi]
            dense_ranks = _ranks(dense)
        else:
            dense, dense_ranks = np.zeros(len(lexical)), np.zeros(len(lexical), dtype=np.int64)
        for mode in modes:
            scores = index.fuse(dense, dense_ranks, lexical, bm25_ranks, mode)
            ranks = _ranks(scores)
            if mode == "bm25":
                ranks = np.where(lexical > 0, ranks, 0)  # an unmatched chunk is never returned
            hits = ranks[relevant & (ranks > 0)]
            first_hit[mode].append(int(hits.min()) if hits.size else 0)
    reports: dict[str, RetrievalReport] = {}
    for name, firsts in first_hit.items():
        arr = np.asarray(firsts)
        found = arr > 0
        recall = {kk: float(np.mean(found & (arr <= kk))) for kk in ks}
        mrr = float(np.mean(np.where(found, 1.0 / np.maximum(arr, 1), 0.0)))
        reports[name] = RetrievalReport(mode=name, n=len(questions), recall=recall, mrr=mrr)
    return reports
