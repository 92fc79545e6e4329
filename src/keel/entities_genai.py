"""Frozen values of retrieval indexes, shared like those of keel.entities (which is at the 500-line
limit): what keel.storage returns for a stored index version and what `ws.genai` hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["TextIndex"]


@dataclass(frozen=True)
class TextIndex:
    """One version of a retrieval index over a corpus version (lineage): its chunks, their embeddings
    and BM25 statistics in one blob (`digest`), and what was built as plain JSON (`spec`: chunking,
    embedder, counts, the retrieval evaluation)."""

    name: str
    version: int
    dataset: str  # the corpus version it indexes, 'docs@3'
    dataset_digest: str
    digest: str  # the index blob's 'sha256:<hex>'
    size_bytes: int
    spec: dict[str, Any]
    created_at: datetime
    author: str
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
