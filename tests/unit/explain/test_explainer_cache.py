"""ws.explainer: one bounded per-version cache of explanation contexts, shared by ws.explain, the
server's /predict?explain=true, the dashboard's sample and batch jobs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keel

pytest.importorskip("shap")


def _register(ws: keel.Workspace, versions: int) -> pd.DataFrame:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    y = (X["a"] + 0.5 * X["b"] > 0).astype(int)
    for _ in range(versions):
        ws.models.register("m", LogisticRegression().fit(X, y), X=X)
    return X


def test_explaining_a_version_twice_computes_its_context_once(ws: keel.Workspace) -> None:
    X = _register(ws, 1)
    first = ws.explain("m@1", X.head(2))
    context = ws.explainer.context("m@1")
    second = ws.explain("m@1", X.head(3))
    assert len(ws.explainer) == 1 and ws.explainer.context("m@1") is context
    assert first.typical == second.typical == context.typical
    loaded = ws.models.load("m@1")  # the server's path: a model it already holds
    assert ws.explainer.rows(loaded, X.head(2)).reasons == first.reasons
    background, explained = ws.explainer.sample("m@1")  # the dashboard's path, kept with the context
    assert ws.explainer.sample("m@1")[1] is explained and len(background) == len(explained.predictions)
    assert len(ws.explainer) == 1


def test_the_cache_keeps_the_most_recently_used_versions_only(ws: keel.Workspace) -> None:
    X = _register(ws, 3)
    ws.explainer.max_versions = 2
    one = ws.explainer.context("m@1")
    ws.explainer.context("m@2")
    ws.explainer.context("m@1")  # used again: m@2 is now the oldest
    ws.explain("m@3", X.head(1))
    assert len(ws.explainer) == 2
    assert ws.explainer.context("m@1") is one  # kept
