"""Chunking and a hybrid (dense + BM25) retrieval index over chunks. Values in, values out.

`chunk` cuts documents into overlapping word windows whose text is a verbatim slice of the document.
`HybridIndex` ranks chunks for a question twice, by cosine similarity of sentence embeddings and by
BM25, and fuses the two rankings by reciprocal rank fusion, score = sum over rankings of
1 / (rrf_k + rank): dense retrieval finds paraphrases, BM25 finds rare exact terms (identifiers,
keywords), and RRF needs no score calibration between the two. The index turns into plain values
(numpy arrays + JSON-able metadata) for storage and back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from keel.errors import InvalidInputError
from keel.genai.bm25 import BM25
from keel.genai.corpus import Document
from keel.genai.embeddings import TextEncoder

__all__ = ["Chunk", "Hit", "HybridIndex", "Mode", "chunk"]

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = ("dense", "bm25", "hybrid")
_WORD_SPAN = re.compile(r"\S+")
FORMAT = 1


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: `position` is its ordinal in the document, `hash` the SHA-256 of its text."""

    id: str
    doc_id: str
    position: int
    text: str
    hash: str


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk; ranks are 1-based (None: BM25 found none of the question's words in it)."""

    chunk_id: str
    doc_id: str
    position: int
    score: float
    dense_rank: int | None
    bm25_rank: int | None
    text: str


def chunk(documents: Sequence[Document], max_words: int = 120, overlap: int = 30) -> list[Chunk]:
    """Windows of `max_words` whitespace-separated words, each starting `max_words - overlap` after the last.

    The overlap keeps a sentence cut by one boundary whole in the neighbouring chunk. A chunk's text
    is the document's own text from its first word to its last, layout included.
    """
    if max_words < 1 or not 0 <= overlap < max_words:
        raise InvalidInputError(f"need max_words >= 1 and 0 <= overlap < max_words, got {max_words}, {overlap}")
    step = max_words - overlap
    out: list[Chunk] = []
    for doc in documents:
        spans = [m.span() for m in _WORD_SPAN.finditer(doc.text)]
        start = 0
        position = 0
        while start < len(spans):
            end = min(start + max_words, len(spans))
            text = doc.text[spans[start][0] : spans[end - 1][1]]
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            out.append(Chunk(f"{doc.id}#{position}", doc.id, position, text, digest))
            if end == len(spans):
                break
            start += step
            position += 1
    return out


def _ranks(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of every item by descending score (ties by position); 0 where `valid` is False."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    if valid is not None:
        # Items BM25 did not match are unranked; matched ones keep their places (they sort first).
        ranks[~valid] = 0
    return ranks


class HybridIndex:
    """Chunks with their embeddings (unit rows) and BM25 statistics; `encoder` embeds questions."""

    def __init__(
        self,
        chunks: Sequence[Chunk],
        embeddings: np.ndarray,
        bm25: BM25,
        encoder: TextEncoder | None = None,
        rrf_k: int = 60,
    ) -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] != len(chunks) or bm25.counts.shape[0] != len(chunks):
            raise InvalidInputError(
                f"{len(chunks)} chunks need {len(chunks)} embedding rows and BM25 rows; "
                f"got embeddings {embeddings.shape} and BM25 {bm25.counts.shape}"
            )
        self.chunks = tuple(chunks)
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.bm25 = bm25
        self.encoder = encoder
        self.rrf_k = rrf_k

    @classmethod
    def build(
        cls, chunks: Sequence[Chunk], embeddings: np.ndarray, encoder: TextEncoder | None = None, rrf_k: int = 60
    ) -> HybridIndex:
        """An index over `chunks`, given their embeddings (from `embed_chunks`); BM25 is counted here."""
        return cls(chunks, embeddings, BM25.fit([c.text for c in chunks]), encoder=encoder, rrf_k=rrf_k)

    def _query_vector(self, question: str) -> np.ndarray:
        if self.encoder is None:
            raise InvalidInputError("this index has no encoder for questions; pass encoder= (an Embedder)")
        vector: np.ndarray = self.encoder.embed([question])[0]
        return vector

    def rank(
        self, question: str, query_embedding: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(dense scores, dense ranks, BM25 scores, BM25 ranks) of every chunk; BM25 rank 0 = no match."""
        vector = self._query_vector(question) if query_embedding is None else query_embedding
        dense = self.embeddings @ np.asarray(vector, dtype=np.float32)
        lexical = self.bm25.scores(question)
        return dense, _ranks(dense), lexical, _ranks(lexical, lexical > 0)

    def search(
        self, question: str, k: int = 5, mode: Mode = "hybrid", query_embedding: np.ndarray | None = None
    ) -> list[Hit]:
        """The `k` best chunks for `question`, best first; `score` is the fused, cosine or BM25 score by mode."""
        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        needs_dense = mode != "bm25"
        if needs_dense:
            dense, dense_ranks, lexical, bm25_ranks = self.rank(question, query_embedding)
        else:
            lexical = self.bm25.scores(question)
            bm25_ranks = _ranks(lexical, lexical > 0)
            dense, dense_ranks = np.zeros(len(self.chunks)), np.zeros(len(self.chunks), dtype=np.int64)
        scores = self.fuse(dense, dense_ranks, lexical, bm25_ranks, mode)
        order = np.argsort(-scores, kind="stable")[:k]
        if mode == "bm25":
            order = order[lexical[order] > 0]
        return [
            Hit(
                chunk_id=self.chunks[i].id,
                doc_id=self.chunks[i].doc_id,
                position=self.chunks[i].position,
                score=float(scores[i]),
                dense_rank=int(dense_ranks[i]) if needs_dense else None,
                bm25_rank=int(bm25_ranks[i]) if bm25_ranks[i] > 0 else None,
                text=self.chunks[i].text,
            )
            for i in order
        ]

    def fuse(
        self, dense: np.ndarray, dense_ranks: np.ndarray, lexical: np.ndarray, bm25_ranks: np.ndarray, mode: Mode
    ) -> np.ndarray:
        """Per-chunk scores for `mode`: cosine, BM25, or the reciprocal-rank-fusion sum."""
        if mode == "dense":
            return dense
        if mode == "bm25":
            return lexical
        fused = 1.0 / (self.rrf_k + dense_ranks)
        matched = bm25_ranks > 0
        fused[matched] += 1.0 / (self.rrf_k + bm25_ranks[matched])
        return fused

    def to_values(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able metadata) for storage; `from_values(arrays, meta, encoder)` rebuilds the index."""
        arrays, bm25_meta = self.bm25.to_values()
        arrays = {"embeddings": self.embeddings, **arrays}
        meta = {
            "format": FORMAT,
            "rrf_k": self.rrf_k,
            "model_id": getattr(self.encoder, "model_id", None),
            "chunks": [asdict(c) for c in self.chunks],
            "bm25": bm25_meta,
        }
        return arrays, meta

    @classmethod
    def from_values(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], encoder: TextEncoder | None = None
    ) -> HybridIndex:
        if meta.get("format") != FORMAT:
            raise InvalidInputError(f"index format {meta.get('format')!r} is not {FORMAT}; rebuild the index")
        chunks = [Chunk(**c) for c in meta["chunks"]]
        bm25 = BM25.from_values(arrays, meta["bm25"])
        return cls(chunks, arrays["embeddings"], bm25, encoder=encoder, rrf_k=int(meta["rrf_k"]))
