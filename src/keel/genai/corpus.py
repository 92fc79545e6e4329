"""Text corpora as documents: loading, leak-free splits and paragraph de-duplication. Values in, values out.

A corpus is a list of `Document`s, read from a folder of text files or from a table's text column.
`split_documents` assigns each document to train or valid by a hash of its normalised content, so the
same passage can never sit on both sides and the split does not depend on the order of the documents.
`dedupe_paragraphs` removes exact duplicate paragraphs (same normalised text) and near duplicates
(word-shingle Jaccard similarity at or above a threshold, found with MinHash + LSH bands and then
confirmed on the exact shingle sets), optionally against a reference set (train, when cleaning valid).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError, NotFoundError

__all__ = [
    "Document",
    "DedupeReport",
    "normalise",
    "content_hash",
    "documents_from_folder",
    "documents_from_table",
    "split_documents",
    "dedupe_paragraphs",
    "dedupe_split",
]

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\w+")
_MERSENNE = np.uint64((1 << 61) - 1)


@dataclass(frozen=True)
class Document:
    """One text of a corpus: `id` is unique within the corpus, `source` says where it came from."""

    id: str
    text: str
    source: str


@dataclass(frozen=True)
class DedupeReport:
    """What `dedupe_paragraphs` removed. `cross_removed` counts those removed for matching the reference set."""

    exact_removed: int
    near_removed: int
    kept: int
    cross_removed: int
    documents_dropped: int
    threshold: float

    @property
    def removed(self) -> int:
        return self.exact_removed + self.near_removed


def normalise(text: str) -> str:
    """NFKC, lower case, whitespace collapsed: two passages that differ only in layout normalise equal."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def content_hash(text: str) -> str:
    """SHA-256 of the normalised text (hex)."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def documents_from_folder(
    folder: str | Path, *, suffixes: Sequence[str] = TEXT_SUFFIXES, encoding: str = "utf-8"
) -> list[Document]:
    """Every text file under `folder` (recursively), sorted by relative path; the id is that path."""
    root = Path(folder)
    if not root.is_dir():
        raise NotFoundError(f"corpus folder {str(root)!r} does not exist or is not a folder")
    wanted = {s.lower() for s in suffixes}
    paths = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not paths:
        raise InvalidInputError(f"no text files ({', '.join(sorted(wanted))}) under {str(root)!r}; pass suffixes=")
    docs = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        # errors="replace": one badly encoded file should not stop a corpus of thousands from loading.
        docs.append(Document(id=rel, text=path.read_text(encoding=encoding, errors="replace"), source=rel))
    return docs


def documents_from_table(frame: pd.DataFrame, text_column: str, *, id_column: str | None = None) -> list[Document]:
    """One document per row with non-empty text; ids from `id_column` (must be unique) or the row number."""
    for column in (text_column, id_column):
        if column is not None and column not in frame.columns:
            raise InvalidInputError(f"column {column!r} is not in the table; columns are {list(frame.columns)}")
    ids = frame[id_column].astype(str).tolist() if id_column else [str(i) for i in range(len(frame))]
    if len(set(ids)) != len(ids):
        raise InvalidInputError(f"id column {id_column!r} has duplicate values; document ids must be unique")
    docs = []
    for row, (doc_id, text) in enumerate(zip(ids, frame[text_column].tolist(), strict=True)):
        if isinstance(text, str) and text.strip():
            docs.append(Document(id=doc_id, text=text, source=f"{text_column}[{row}]"))
    return docs


def split_documents(
    docs: Sequence[Document], valid_fraction: float, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """(train, valid): a document is in valid when the hash of (seed, its normalised content) falls below the fraction.

    Why hash the content, not the position or the id: equal passages always land on the same side, and
    adding, removing or reordering other documents never moves a document across the split.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise InvalidInputError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    train: list[Document] = []
    valid: list[Document] = []
    for doc in docs:
        digest = hashlib.sha256(f"{seed}:{content_hash(doc.text)}".encode()).digest()
        (valid if int.from_bytes(digest[:8], "big") / 2**64 < valid_fraction else train).append(doc)
    return train, valid


def _shingles(normalised: str, size: int) -> np.ndarray:
    """Stable 32-bit hashes of the word `size`-grams (one shingle for shorter paragraphs), unique, as uint64."""
    words = _WORD.findall(normalised)
    if len(words) < size:
        grams = [" ".join(words)]
    else:
        grams = [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    # crc32, not hash(): Python's str hash is salted per process and the result must be reproducible.
    return np.unique(np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64))


def _bands_for(threshold: float, num_perm: int) -> int:
    """Rows per band: the most selective banding whose LSH threshold sits comfortably below `threshold`."""
    for rows in (8, 4, 2, 1):
        bands = num_perm // rows
        if (1.0 / bands) ** (1.0 / rows) <= 0.85 * threshold:
            return rows
    return 1


class _NearIndex:
    """MinHash signatures in LSH buckets; candidates are confirmed on the exact shingle sets."""

    def __init__(self, threshold: float, num_perm: int, shingle: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        # a, b < 2**32 and shingles < 2**32 keep a * x + b below 2**64, so uint64 never wraps.
        self.a = rng.integers(1, 2**32, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint64)
        self.rows = _bands_for(threshold, num_perm)
        self.threshold = threshold
        self.shingle = shingle
        self.buckets: dict[bytes, list[int]] = {}
        self.sets: list[np.ndarray] = []

    def _keys(self, shingles: np.ndarray) -> list[bytes]:
        signature = ((shingles[:, None] * self.a[None, :] + self.b[None, :]) % _MERSENNE).min(axis=0)
        return [bytes([band]) + signature[band * self.rows : (band + 1) * self.rows].tobytes()
                for band in range(len(signature) // self.rows)]  # fmt: skip

    def match(self, normalised: str) -> tuple[int, list[bytes], np.ndarray]:
        """(index of an earlier paragraph it near-duplicates or -1, its band keys, its shingles)."""
        shingles = _shingles(normalised, self.shingle)
        keys = self._keys(shingles)
        seen: set[int] = set()
        for key in keys:
            for other in self.buckets.get(key, ()):
                if other in seen:
                    continue
                seen.add(other)
                inter = np.intersect1d(shingles, self.sets[other], assume_unique=True).size
                union = shingles.size + self.sets[other].size - inter
                if union and inter / union >= self.threshold:
                    return other, keys, shingles
        return -1, keys, shingles

    def add(self, keys: list[bytes], shingles: np.ndarray) -> None:
        self.sets.append(shingles)
        for key in keys:
            self.buckets.setdefault(key, []).append(len(self.sets) - 1)


def dedupe_paragraphs(
    docs: Sequence[Document],
    threshold: float = 0.9,
    *,
    against: Sequence[Document] = (),
    shingle: int = 3,
    num_perm: int = 128,
    seed: int = 0,
) -> tuple[list[Document], DedupeReport]:
    """Drop paragraphs that repeat an earlier one exactly or nearly (shingle Jaccard >= threshold).

    Paragraphs are separated by blank lines; the first occurrence is kept. Paragraphs of `against`
    (for example the train split, when cleaning valid) count as already seen, so a valid paragraph
    that near-duplicates a train paragraph is removed from valid. Documents left empty are dropped.
    """
    if not 0.0 < threshold <= 1.0:
        raise InvalidInputError(f"threshold must be in (0, 1], got {threshold}")
    exact: set[str] = set()
    near = _NearIndex(threshold, num_perm, shingle, seed)
    for doc in against:
        for para in _PARAGRAPH_BREAK.split(doc.text):
            norm = normalise(para)
            if norm and norm not in exact:
                exact.add(norm)
                _, keys, shingles = near.match(norm)
                near.add(keys, shingles)
    reference, n_reference = set(exact), len(near.sets)
    counts = {"exact": 0, "near": 0, "kept": 0, "cross": 0, "dropped": 0}
    out: list[Document] = []
    for doc in docs:
        kept: list[str] = []
        for para in _PARAGRAPH_BREAK.split(doc.text):
            norm = normalise(para)
            if not norm:
                continue
            if norm in exact:
                counts["exact"] += 1
                counts["cross"] += norm in reference
                continue
            match, keys, shingles = near.match(norm)
            exact.add(norm)
            if match >= 0:
                counts["near"] += 1
                counts["cross"] += match < n_reference
                continue
            near.add(keys, shingles)
            kept.append(para.strip("\n"))
            counts["kept"] += 1
        if kept:
            out.append(Document(id=doc.id, text="\n\n".join(kept), source=doc.source))
        else:
            counts["dropped"] += 1
    report = DedupeReport(
        exact_removed=counts["exact"],
        near_removed=counts["near"],
        kept=counts["kept"],
        cross_removed=counts["cross"],
        documents_dropped=counts["dropped"],
        threshold=threshold,
    )
    return out, report


def dedupe_split(
    train: Sequence[Document], valid: Sequence[Document], threshold: float = 0.9, **options: Any
) -> tuple[list[Document], list[Document], DedupeReport, DedupeReport]:
    """De-duplicate train, then valid against the cleaned train: (train, valid, train_report, valid_report)."""
    train_out, train_report = dedupe_paragraphs(train, threshold, **options)
    valid_out, valid_report = dedupe_paragraphs(valid, threshold, against=train_out, **options)
    return train_out, valid_out, train_report, valid_report
