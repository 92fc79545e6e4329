"""`ws.causal.policy`: a policy learned on a study's dataset version, stored as the study's 'policy'
result and registered as a `policy` model version with the dataset version as lineage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keel
from keel.errors import InvalidModelError

EDGES = [("x0", "offer"), ("x2", "offer"), ("x0", "y"), ("x1", "y"), ("x2", "y"), ("offer", "y")]


def frame(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Offer 1 is best when x0 > 0, offer 2 when x0 <= 0 and x1 > 0.5, no offer (0) otherwise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    tau1 = np.where(x[:, 0] > 0, 1.5, -1.0)
    tau2 = np.where(x[:, 0] > 0, 0.5, np.where(x[:, 1] > 0.5, 1.5, -0.5))
    logits = np.column_stack([np.zeros(n), 0.8 * x[:, 0] + 0.5 * x[:, 2], -0.6 * x[:, 0]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    offer = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    mu = np.column_stack([x[:, 2], x[:, 2] + tau1, x[:, 2] + tau2])
    y = mu[np.arange(n), offer] + rng.normal(size=n)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "offer": offer, "y": y})


def test_policy_of_a_study_is_stored_and_registered(ws: keel.Workspace) -> None:
    data = frame()
    ws.datasets.add("offers", data)
    study = ws.causal.study("targeting", "offers@1", graph=EDGES, treatment="offer", outcome="y")
    result, stored, model = ws.causal.policy("targeting", features=["x0", "x1"], register_as="offer-policy")
    assert result.tree.features == ("x0", "x1") and result.gain.value > 0
    assert stored.kind == "policy" and stored.payload["model"] == "offer-policy@1"
    assert stored.payload["rules"] == result.tree.rules()
    assert ws.causal.results(study.ref, kind="policy") == [stored]
    assert model is not None and model.flavor == "policy"
    assert model.tags["causal_study"] == study.ref and study.ref in model.description
    assert list(ws.models.lineage(model.ref).datasets) == ["offers@1"] and model.datasets == ("offers@1",)
    loaded = ws.models.load(model.ref)
    np.testing.assert_array_equal(loaded.predict(data[["x0", "x1"]]), result.tree.predict(data))
    without, _, none = ws.causal.policy("targeting", depth=1)
    assert none is None and without.tree.depth == 1


def test_a_hostile_policy_artifact_is_refused(ws: keel.Workspace) -> None:
    cycle = (
        b'{"format": "keel.policy_tree/1", "features": ["a"], "actions": [0, 1], "baseline": 0, "nodes": '
        b'[{"feature": "a", "threshold": 0, "left": 0, "right": 0}]}'
    )
    for data in (cycle, b"[" * 100_000, b'{"format": "keel.policy_tree/1", "nodes": NaN}'):
        with pytest.raises(InvalidModelError, match="policy artifact is malformed|not a policy tree|does not load"):
            ws.models.register_artifact("bad-policy", data, flavor="policy")
    assert ws.models.list() == []
