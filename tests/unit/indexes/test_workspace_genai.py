"""`ws.genai`: an index over a corpus version (a table's text column or a folder of text files) with
lineage, its embeddings cached by content hash across corpus versions, its retrieval quality measured
on held-out passages, and questions answered with cited passages."""

from __future__ import annotations

import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError


def topics(n: int = 30) -> pd.DataFrame:
    from pydoc_data.topics import topics as shipped

    names = sorted(shipped)[:n] + ["with"]
    return pd.DataFrame({"topic": names, "text": [shipped[t] for t in names]})


@pytest.fixture(scope="module")
def gws(tmp_path_factory: pytest.TempPathFactory) -> keel.Workspace:
    ws = keel.Workspace(keel.Settings(home=tmp_path_factory.mktemp("ws"), author="tester"))
    ws.datasets.add("docs", topics())
    return ws


def test_an_index_is_built_measured_and_asked(gws: keel.Workspace) -> None:
    made = gws.genai.index("docs", "docs@1", text_column="text", questions=40)
    assert made.ref == "docs@1" and made.dataset == "docs@1" and made.spec["chunks"] > 31
    assert made.spec["embedded"] == made.spec["chunks"] - made.spec["reused_embeddings"]
    hybrid = made.spec["evaluation"]["hybrid"]
    assert hybrid["n"] > 0 and 0 <= hybrid["recall@1"] <= hybrid["recall@5"] <= 1 and hybrid["mrr"] > 0
    answer = gws.genai.ask("docs", "how does the with statement work", k=3)
    assert answer.index == "docs@1" and [p["rank"] for p in answer.passages] == [1, 2, 3]
    assert any("with" in p["text"] for p in answer.passages)
    assert {"document", "position", "score", "chunk"} <= set(answer.passages[0])


def test_a_new_corpus_version_re_embeds_only_what_changed(gws: keel.Workspace) -> None:
    frame = topics()
    frame.loc[0, "text"] = "A brand new paragraph about nothing that was indexed before, " * 5
    gws.datasets.add("docs", frame)
    first = gws.genai.get("docs@1") if gws.genai.list() else gws.genai.index("docs", "docs@1", text_column="text")
    second = gws.genai.index("docs", "docs@2", text_column="text", questions=10)
    assert second.dataset == "docs@2" and second.version == first.version + 1
    assert 0 < second.spec["embedded"] <= 3 and second.spec["reused_embeddings"] >= second.spec["chunks"] - 3


def test_bad_input_is_refused(gws: keel.Workspace) -> None:
    gws.datasets.add("two-texts", pd.DataFrame({"a": ["x y z"], "b": ["p q r"]}))
    with pytest.raises(InvalidInputError, match="2 text columns"):
        gws.genai.index("t", "two-texts@1")
    with pytest.raises(InvalidInputError, match="question must be non-empty"):
        gws.genai.ask("docs", "   ")
    with pytest.raises(InvalidInputError, match="k must be between 1 and 50"):
        gws.genai.ask("docs", "with", k=0)
    assert [i.name for i in gws.genai.list()] == ["docs"]


def test_an_index_without_questions_is_built_unmeasured(gws: keel.Workspace) -> None:
    # questions=0 is accepted by the CLI and the route; it used to fail inside questions_from ("need n >= 1")
    made = gws.genai.index("unmeasured", "docs@1", text_column="text", questions=0)
    assert made.spec["evaluation"] == {} and made.spec["chunks"] > 31
