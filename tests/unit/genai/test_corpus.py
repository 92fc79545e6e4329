"""Corpora: loading, a leak-free deterministic split, exact and near-duplicate paragraph removal."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from keel.errors import InvalidInputError, NotFoundError
from keel.genai.corpus import (
    Document,
    content_hash,
    dedupe_paragraphs,
    dedupe_split,
    documents_from_folder,
    documents_from_table,
    split_documents,
)

_WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def _text(i: int, n: int = 30) -> str:
    return " ".join(_WORDS[(i * 7 + j * (i % 5 + 1)) % len(_WORDS)] + str(j % (i + 2)) for j in range(n))


def test_folder_documents_are_sorted_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("zed")
    (tmp_path / "a.md").write_text("ay")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    docs = documents_from_folder(tmp_path)
    assert [d.id for d in docs] == ["a.md", "b/z.txt"]
    assert [d.text for d in docs] == ["ay", "zed"]
    with pytest.raises(NotFoundError):
        documents_from_folder(tmp_path / "missing")


def test_table_documents_skip_empty_text_and_check_columns() -> None:
    frame = pd.DataFrame({"key": ["x", "y", "z"], "body": ["one", "", "three"]})
    docs = documents_from_table(frame, "body", id_column="key")
    assert [(d.id, d.text) for d in docs] == [("x", "one"), ("z", "three")]
    with pytest.raises(InvalidInputError, match="not in the table"):
        documents_from_table(frame, "text")


def test_split_is_deterministic_order_free_and_leak_free() -> None:
    docs = [Document(f"d{i}", _text(i), "t") for i in range(200)]
    docs += [Document("copy", "  ALPHA0 beta1\n" + docs[5].text.upper(), "t")]  # unrelated
    docs += [Document("dup", docs[7].text.upper().replace(" ", "\n  "), "t")]  # same content, other layout
    train, valid = split_documents(docs, 0.2, seed=1)
    assert 20 <= len(valid) <= 60 and len(train) + len(valid) == len(docs)
    again_train, again_valid = split_documents(list(reversed(docs)), 0.2, seed=1)
    assert {d.id for d in again_valid} == {d.id for d in valid}
    train_hashes = {content_hash(d.text) for d in train}
    assert not train_hashes & {content_hash(d.text) for d in valid}
    sides = {d.id: d in valid for d in docs}
    assert sides["dup"] == sides["d7"]
    other_seed = {d.id for d in split_documents(docs, 0.2, seed=2)[1]}
    assert other_seed != {d.id for d in valid}


def test_dedupe_removes_exact_and_near_duplicates_with_counts() -> None:
    base = [_text(i, 40) for i in range(6)]
    near = base[1].split()
    near[20] = "changed"  # one word of 40 changed: 3-shingle Jaccard about 0.86 -> kept at 0.9 ...
    near_text = " ".join(near)
    nearer = base[2] + " extra"  # one word appended: Jaccard 38/39 > 0.9 -> removed
    docs = [
        Document("a", "\n\n".join(base[:3]), "t"),
        Document("b", base[0].upper() + "\n\n" + near_text + "\n\n" + nearer, "t"),
        Document("c", "  " + base[1] + "  ", "t"),  # exact duplicate after normalising: document dropped
        Document("d", base[3], "t"),
    ]
    out, report = dedupe_paragraphs(docs, threshold=0.9)
    assert report.exact_removed == 2 and report.near_removed == 1
    assert report.kept == 5 and report.documents_dropped == 1 and report.cross_removed == 0
    assert [d.id for d in out] == ["a", "b", "d"]
    assert out[1].text == near_text
    _, loose = dedupe_paragraphs(docs, threshold=0.8)
    assert loose.near_removed == 2 and loose.kept == 4


def test_dedupe_removes_valid_paragraphs_that_repeat_train() -> None:
    train = [Document("t1", _text(1, 40) + "\n\n" + _text(2, 40), "t")]
    valid = [
        Document("v1", _text(2, 40) + " more", "t"),  # near duplicate of a train paragraph
        Document("v2", _text(1, 40), "t"),  # exact duplicate
        Document("v3", _text(3, 40), "t"),
    ]
    train_out, valid_out, train_report, valid_report = dedupe_split(train, valid, 0.9)
    assert train_report.removed == 0 and len(train_out) == 1
    assert [d.id for d in valid_out] == ["v3"]
    assert valid_report.cross_removed == 2 and valid_report.exact_removed == 1 and valid_report.near_removed == 1
