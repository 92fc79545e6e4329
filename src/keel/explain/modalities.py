"""Attributions for text and images.

Text: for a pipeline of a bag-of-words vectorizer (TF-IDF or counts) and a linear model, each
word's attribution is its weight times its feature value, against the empty document (exact SHAP
with an all-zero baseline): the intercept plus the words' attributions is the model's decision
value. `tokens` lists the document's words in order with their attributions, for highlighting.

Images: attributions over pixel features (any model, via explain_model) reshaped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.errors import InvalidInputError
from keel.explain.attributions import Explanation

__all__ = ["TextAttribution", "word_attributions", "pixel_maps"]


@dataclass(frozen=True)
class TextAttribution:
    text: str
    words: dict[str, float]  # vocabulary term -> attribution, largest |attribution| first
    tokens: list[tuple[str, float]]  # the document's tokens in order, each with its term's attribution
    base_value: float  # the empty document's output
    output: float  # base_value + sum(words.values())
    target: Any


def word_attributions(pipeline: Any, texts: list[str], *, target: Any = None) -> list[TextAttribution]:
    from sklearn.pipeline import Pipeline

    if (
        not isinstance(pipeline, Pipeline)
        or len(pipeline.steps) != 2
        or not hasattr(pipeline.steps[0][1], "vocabulary_")
    ):
        raise InvalidInputError(
            "word attributions need a Pipeline of a fitted vectorizer (TF-IDF or counts) and a linear model"
        )
    vectorizer, model = pipeline.steps[0][1], pipeline.steps[1][1]
    if not hasattr(model, "coef_"):
        raise InvalidInputError(
            f"word attributions need a linear model, got {type(model).__name__}; use LIME (lime_text)"
        )
    classes = list(getattr(model, "classes_", []))
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(getattr(model, "intercept_", 0.0))
    index = (
        len(classes) - 1 if target is None else next((i for i, c in enumerate(classes) if str(c) == str(target)), -1)
    )
    if classes and index < 0:
        raise InvalidInputError(
            f"target {target!r} is not a class of the model; classes: {', '.join(map(str, classes))}"
        )
    row = 0 if coef.shape[0] == 1 else index
    sign = -1.0 if coef.shape[0] == 1 and len(classes) == 2 and index == 0 else 1.0
    w, b = sign * coef[row], sign * float(intercept[row if intercept.size > 1 else 0])
    names = vectorizer.get_feature_names_out()
    matrix = vectorizer.transform(texts).tocsr()
    analyzer = vectorizer.build_analyzer()
    tokenize = vectorizer.build_tokenizer()
    preprocess = vectorizer.build_preprocessor()
    out = []
    for i, text in enumerate(texts):
        start, end = matrix.indptr[i], matrix.indptr[i + 1]
        cols, values = matrix.indices[start:end], matrix.data[start:end]
        contrib = {str(names[j]): float(w[j] * v) for j, v in zip(cols, values, strict=True)}
        words = dict(sorted(contrib.items(), key=lambda kv: -abs(kv[1])))
        seen = set(analyzer(text))
        tokens = [(tok, contrib.get(tok, 0.0) if tok in seen else 0.0) for tok in tokenize(preprocess(text))]
        out.append(
            TextAttribution(text, words, tokens, b, b + sum(contrib.values()), classes[index] if classes else None)
        )
    return out


def pixel_maps(explanation: Explanation, shape: tuple[int, int]) -> np.ndarray:
    """The attributions as images: (rows, height, width)."""
    if shape[0] * shape[1] != explanation.values.shape[1]:
        raise InvalidInputError(
            f"{explanation.values.shape[1]} pixel attributions do not fill a {shape[0]}x{shape[1]} image"
        )
    return explanation.values.reshape(-1, *shape)
