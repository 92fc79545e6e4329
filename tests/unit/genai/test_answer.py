"""keel.genai.answer: the answer prompt (passages numbered, question last) and the citations an answer used
(explicit markers first, else >= 4 consecutive shared words per sentence), without a model."""

from __future__ import annotations

import pytest

from keel.errors import InvalidInputError
from keel.genai.answer import Citations, answer_prompt, find_citations, longest_common_run

PASSAGES = [
    "The with statement wraps a block in the methods of a context manager.",
    "A for loop iterates over the items of any sequence, in order.",
    "Exceptions raised in a try clause are handled by the matching except clause.",
]


def test_the_prompt_numbers_the_passages_and_ends_with_the_question() -> None:
    prompt = answer_prompt("how  does with\nwork?", ["first   passage\n text", "second"])
    assert prompt == "[1] first passage text\n[2] second\nQuestion: how does with work?\nAnswer:"
    assert answer_prompt("q", ["abcdefgh"], max_passage_chars=3) == "[1] abc\nQuestion: q\nAnswer:"
    with pytest.raises(InvalidInputError, match="question must be non-empty"):
        answer_prompt("  ", PASSAGES)


def test_explicit_markers_are_the_citations_in_order_of_first_use() -> None:
    cited = find_citations("Use a context manager [3]. It also loops [1] [3].", PASSAGES)
    assert cited == Citations((3, 1), "markers") and cited.supported
    # a marker naming no retrieved passage is not a citation: the words decide then
    cited = find_citations("See [9]: a for loop iterates over the items of a list.", PASSAGES)
    assert cited == Citations((2,), "overlap")


def test_each_sentence_goes_to_the_passage_sharing_its_longest_run_of_four_words_or_more() -> None:
    answer = (
        "Exceptions raised in a TRY clause are caught. "  # 5 words with passage 3 (case-folded)
        "Then the with statement wraps a block nicely."  # 5 words with passage 1
    )
    assert find_citations(answer, PASSAGES) == Citations((3, 1), "overlap")
    # three shared words in a row are chance, not a citation
    assert find_citations("The with statement is great.", PASSAGES) == Citations((), "none")
    assert find_citations("The with statement is great.", PASSAGES, min_run=3).ranks == (1,)


def test_an_answer_citing_nothing_retrieved_is_unsupported() -> None:
    cited = find_citations("Bananas are yellow and grow in bunches on tall plants.", PASSAGES)
    assert cited.ranks == () and cited.method == "none" and cited.supported is False
    assert find_citations("", PASSAGES).supported is False
    assert find_citations("the items of any sequence", []).supported is False


def test_a_tie_goes_to_the_better_ranked_passage() -> None:
    same = ["alpha beta gamma delta epsilon", "alpha beta gamma delta zeta"]
    assert find_citations("alpha beta gamma delta", same).ranks == (1,)


def test_longest_common_run() -> None:
    assert longest_common_run("a b c d e".split(), "x b c d y".split()) == 3
    assert longest_common_run([], ["a"]) == 0 and longest_common_run(["a"], ["b"]) == 0
    assert longest_common_run(list("abab"), list("bab")) == 3
