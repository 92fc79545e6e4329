"""Okapi BM25 over a fixed set of texts, as one sparse matrix of per-term weights. Values in, values out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from keel.errors import InvalidInputError

__all__ = ["BM25", "tokenize"]

_TOKEN = re.compile(r"[a-z0-9_]+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, underscore): identifiers like `__enter__` stay whole."""
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 (k1, b) with the non-negative idf log(1 + (N - df + 0.5) / (df + 0.5)).

    The weight of term t in text d, idf(t) * tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl)), does not
    depend on the query, so it is computed once into a CSR matrix and a query's scores are a sum of
    its terms' columns.
    """

    def __init__(self, counts: sp.csr_matrix, vocabulary: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise InvalidInputError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.counts = counts.tocsr()
        self.vocabulary = list(vocabulary)
        self.term_ids = {term: i for i, term in enumerate(self.vocabulary)}
        self.k1 = k1
        self.b = b
        n_docs = self.counts.shape[0]
        lengths = np.asarray(self.counts.sum(axis=1)).ravel().astype(np.float64)
        avgdl = lengths.mean() if n_docs and lengths.mean() > 0 else 1.0
        df = np.bincount(self.counts.indices, minlength=len(self.vocabulary)).astype(np.float64)
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        tf = self.counts.data.astype(np.float64)
        rows = np.repeat(np.arange(n_docs), np.diff(self.counts.indptr))
        norm = k1 * (1.0 - b + b * lengths[rows] / avgdl)
        weights = self.idf[self.counts.indices] * tf * (k1 + 1.0) / (tf + norm)
        # CSC: a query reads whole term columns.
        self.weights = sp.csr_matrix(
            (weights, self.counts.indices, self.counts.indptr), shape=self.counts.shape
        ).tocsc()

    @classmethod
    def fit(cls, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> BM25:
        vocab: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        data: list[int] = []
        for text in texts:
            row: dict[int, int] = {}
            for token in tokenize(text):
                tid = vocab.setdefault(token, len(vocab))
                row[tid] = row.get(tid, 0) + 1
            indices.extend(row.keys())
            data.extend(row.values())
            indptr.append(len(indices))
        counts = sp.csr_matrix(
            (np.asarray(data, dtype=np.int32), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
            shape=(len(texts), len(vocab)),
        )
        return cls(counts, list(vocab), k1=k1, b=b)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every text for `query`, shape (n_texts,), float64 (0 where no term matches)."""
        ids = [self.term_ids[t] for t in tokenize(query) if t in self.term_ids]
        if not ids:
            return np.zeros(self.weights.shape[0])
        terms, repeats = np.unique(np.asarray(ids), return_counts=True)
        return np.asarray(self.weights[:, terms] @ repeats.astype(np.float64)).ravel()

    def to_values(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able metadata) that `from_values` turns back into an equal index."""
        arrays = {"bm25_data": self.counts.data, "bm25_indices": self.counts.indices, "bm25_indptr": self.counts.indptr}
        return arrays, {"vocabulary": self.vocabulary, "k1": self.k1, "b": self.b, "n_texts": self.counts.shape[0]}

    @classmethod
    def from_values(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> BM25:
        shape = (int(meta["n_texts"]), len(meta["vocabulary"]))
        counts = sp.csr_matrix((arrays["bm25_data"], arrays["bm25_indices"], arrays["bm25_indptr"]), shape=shape)
        return cls(counts, meta["vocabulary"], k1=float(meta["k1"]), b=float(meta["b"]))
