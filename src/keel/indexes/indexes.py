"""Retrieval index versions and the embedding cache: `TextIndexes`, over one narrow store
(keel.storage.genai) and the blob store."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import Any

from keel.entities import DatasetVersion
from keel.entities_genai import TextIndex
from keel.errors import InvalidInputError
from keel.refs import check_name, parse_ref
from keel.storage import BlobStore, MetadataStore

__all__ = ["TextIndexes"]

_MAX_DESCRIPTION = 10_000
_MAX_VECTOR_BYTES = 64 * 1024  # a 384-d float32 vector is 1.5 kB; anything far larger is not an embedding


class TextIndexes:
    """The retrieval indexes of one workspace (the records behind `ws.genai`)."""

    def __init__(self, meta: MetadataStore, blobs: BlobStore, *, author: str) -> None:
        self._meta = meta
        self._blobs = blobs
        self._author = author

    def check_name(self, name: str) -> str:
        return check_name(name, what="index name")

    def add(
        self, name: str, corpus: DatasetVersion, *, blob: bytes, spec: Mapping[str, Any], description: str = ""
    ) -> TextIndex:
        """Store the next version of index `name` over `corpus`: its blob first, then its row."""
        self.check_name(name)
        if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION:
            raise InvalidInputError(f"An index description is text of at most {_MAX_DESCRIPTION:,} characters")
        digest = self._blobs.put_bytes(blob)
        return self._meta.indexes.add(
            name,
            dataset=(corpus.name, corpus.version, corpus.digest),
            digest=digest,
            size_bytes=len(blob),
            spec=dict(spec),
            description=description,
            author=self._author,
        )

    def get(self, ref: str | TextIndex) -> TextIndex:
        """The version a reference names: 'docs', 'docs@2' or 'docs@latest'."""
        if isinstance(ref, TextIndex):
            return ref
        parsed = parse_ref(ref)
        if parsed.alias is not None:
            raise InvalidInputError(f"Index reference {ref!r}: indexes are addressed by version number or 'latest'")
        return self._meta.indexes.get(parsed)

    def blob(self, index: TextIndex) -> bytes:
        """The index's blob, verified against its SHA-256."""
        return self._blobs.get_bytes(index.digest)

    def list(self) -> builtins.list[TextIndex]:
        return self._meta.indexes.list()

    def versions(self, name: str) -> builtins.list[TextIndex]:
        return self._meta.indexes.versions(self.check_name(name))

    def cached_embeddings(self, embedder: str, hashes: Iterable[str]) -> dict[str, bytes]:
        """The cached vectors (float32 bytes) of these chunk content hashes, for those found."""
        return self._meta.indexes.embeddings(embedder, hashes)

    def cache_embeddings(self, embedder: str, vectors: Mapping[str, bytes]) -> None:
        """Keep vectors by chunk content hash, so the next corpus version re-embeds only what changed."""
        for key, value in vectors.items():
            if not isinstance(value, bytes) or not 0 < len(value) <= _MAX_VECTOR_BYTES or len(value) % 4:
                raise InvalidInputError(f"embedding of chunk {key!r}: expected float32 bytes, got {len(value)} bytes")
        self._meta.indexes.put_embeddings(embedder, vectors)
