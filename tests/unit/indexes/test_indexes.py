"""Retrieval indexes as records: versions with lineage to their corpus version, the blob written before
the row (and referenced), and the embedding cache by chunk content hash (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError, NotFoundError
from keel.indexes import TextIndexes


@pytest.fixture
def indexes(any_ws: keel.Workspace) -> TextIndexes:
    any_ws.datasets.add("docs", pd.DataFrame({"text": ["the with statement", "the for statement"]}))
    return TextIndexes(any_ws._meta, any_ws._blobs, author="tester")


def test_versions_round_trip_with_their_corpus_and_blob(any_ws: keel.Workspace, indexes: TextIndexes) -> None:
    corpus = any_ws.datasets.get("docs@1")
    first = indexes.add("docs", corpus, blob=b"index one", spec={"chunks": 2}, description="pydoc topics")
    second = indexes.add("docs", corpus, blob=b"index two", spec={"chunks": 3})
    assert (first.ref, second.ref, first.dataset, first.dataset_digest) == ("docs@1", "docs@2", "docs@1", corpus.digest)
    assert indexes.get("docs") == second and indexes.get("docs@1") == first and indexes.get("docs@latest") == second
    assert indexes.blob(first) == b"index one" and first.size_bytes == 9 and first.spec == {"chunks": 2}
    assert {first.digest, second.digest} <= any_ws._meta.referenced_digests()  # gc keeps them
    assert indexes.list() == [second] and indexes.versions("docs") == [first, second]


def test_the_embedding_cache_keeps_vectors_by_content_hash(indexes: TextIndexes) -> None:
    a, b = np.arange(384, dtype=np.float32), np.ones(384, dtype=np.float32)
    indexes.cache_embeddings("minilm", {"h1": a.tobytes(), "h2": b.tobytes()})
    indexes.cache_embeddings("minilm", {"h1": b.tobytes()})  # the same content hash: the first vector stays
    found = indexes.cached_embeddings("minilm", ["h1", "h2", "h3"])
    assert set(found) == {"h1", "h2"}
    assert np.array_equal(np.frombuffer(found["h1"], dtype=np.float32), a)
    assert indexes.cached_embeddings("other-embedder", ["h1"]) == {}
    with pytest.raises(InvalidInputError, match="expected float32 bytes"):
        indexes.cache_embeddings("minilm", {"h4": b"abc"})


def test_bad_references_and_names_are_refused(any_ws: keel.Workspace, indexes: TextIndexes) -> None:
    with pytest.raises(NotFoundError, match="No index named 'docs'; build one with 'keel genai index'"):
        indexes.get("docs")
    with pytest.raises(InvalidInputError, match="index name"):
        indexes.add("bad name!", any_ws.datasets.get("docs@1"), blob=b"x", spec={})
    indexes.add("docs", any_ws.datasets.get("docs@1"), blob=b"x", spec={})
    with pytest.raises(InvalidInputError, match="addressed by version number or 'latest'"):
        indexes.get("docs@champion")
    with pytest.raises(NotFoundError, match="has no version 4; the latest is 1"):
        indexes.get("docs@4")
