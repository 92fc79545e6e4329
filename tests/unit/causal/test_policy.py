"""Multi-action policy trees on a simulated DGP with a known optimal depth-2 rule, and the stored
tree's refusal of malformed or hostile dicts."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.causal import PolicyTree, learn_policy
from keel.causal.policy import dr_scores
from keel.errors import InvalidInputError, InvalidModelError

COVARIATES = ["x0", "x1", "x2", "x3"]


def simulate(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Three actions; the best is 1 when x0 > 0, 2 when x0 <= 0 and x1 > 0.5, else the baseline 0.
    Assignment is confounded: x0 and x2 move both the action taken and the outcome."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    tau1 = np.where(x[:, 0] > 0, 1.5, -1.0)
    tau2 = np.where(x[:, 0] > 0, 0.5, np.where(x[:, 1] > 0.5, 1.5, -0.5))
    base = x[:, 2] + 0.5 * x[:, 0]
    mu = np.column_stack([base, base + tau1, base + tau2])  # true mean outcome under each action
    logits = np.column_stack([np.zeros(n), 0.8 * x[:, 0] + 0.5 * x[:, 2], -0.6 * x[:, 0] + 0.5 * x[:, 1]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    frame = pd.DataFrame(x, columns=COVARIATES)
    frame["t"] = t
    frame["y"] = mu[np.arange(n), t] + rng.normal(size=n)
    return frame, mu


@pytest.fixture(scope="module")
def learned() -> tuple[Any, pd.DataFrame, np.ndarray]:
    frame, mu = simulate(3000, 0)
    return learn_policy(frame, "t", "y", COVARIATES, seed=0), frame, mu


def test_recovers_the_known_rule_and_its_value(learned: Any) -> None:
    result, frame, mu = learned
    optimal = mu.argmax(axis=1)
    recommended = result.tree.predict(frame)
    agreement = float(np.mean(recommended == optimal))
    assert agreement >= 0.9, agreement
    assert result.tree.depth == 2 and {result.tree.features[n.feature] for n in result.tree.nodes if not n.is_leaf} == {
        "x0",
        "x1",
    }
    true_value = float(mu.max(axis=1).mean())
    assert abs(result.value.value - true_value) < 0.15, (result.value, true_value)
    assert result.value.covers(true_value), (result.value, true_value)
    # Treating everyone alike: each action's interval covers its true mean; the policy beats them all.
    for k, action in enumerate(result.tree.actions):
        assert result.action_values[action].covers(float(mu[:, k].mean())), action
        assert result.value.value > result.action_values[action].value
    assert result.gain.low > 0 and result.tree.baseline == 0
    assert sum(result.shares.values()) == pytest.approx(1.0)
    assert result.shares[1] == pytest.approx(np.mean(optimal == 1), abs=0.05)
    assert result.scores.shape == (3000, 3) and "out of fold" in result.interval_method
    assert any("not clipped" in note for note in result.notes)


def test_rules_gain_and_explanations(learned: Any) -> None:
    result, frame, _ = learned
    tree = result.tree
    rules = tree.rules()
    assert len(rules) == sum(n.is_leaf for n in tree.nodes) and all(" -> " in r for r in rules)
    fired = tree.rule(frame.head(20))
    assert set(fired) <= set(rules)
    gain = tree.expected_gain(frame.head(20))
    actions = tree.predict(frame.head(20))
    assert np.all(gain[actions == 0] == 0.0) and np.all(gain[actions != 0] > 0)
    row = tree.explain(frame.head(1))[0]
    assert row["rule"] == fired[0] and row["action"] == actions[0]
    assert set(row["expected_outcomes"]) == {"0", "1", "2"}
    for (_, values), text in zip(frame.head(20).iterrows(), fired, strict=True):  # each fired rule holds
        for condition in text.split(" -> ")[0].split(" and "):
            name, op, cut = condition.split(" ")
            assert (values[name] <= float(cut)) == (op == "<="), (text, values[name])


def test_deterministic_and_never_mutates_the_frame() -> None:
    frame, _ = simulate(800, 3)
    before = frame.copy()
    a = learn_policy(frame, "t", "y", COVARIATES, depth=1, seed=4)
    b = learn_policy(frame.copy(), "t", "y", COVARIATES, depth=1, seed=4)
    pd.testing.assert_frame_equal(frame, before)
    assert a.tree == b.tree and a.value == b.value
    np.testing.assert_array_equal(a.scores, b.scores)


def test_string_actions_features_and_baseline() -> None:
    frame, mu = simulate(1500, 1)
    frame["offer"] = frame["t"].map({0: "none", 1: "discount", 2: "call"})
    result = learn_policy(frame.drop(columns="t"), "offer", "y", COVARIATES, features=["x0", "x1"], baseline="none")
    assert result.tree.actions == ("call", "discount", "none") and result.tree.baseline == "none"
    assert result.tree.features == ("x0", "x1")
    names = {"none": 0, "discount": 1, "call": 2}
    agreement = np.mean([names[a] for a in result.tree.predict(frame)] == mu.argmax(axis=1))
    assert agreement >= 0.85, agreement
    actions, gamma, _ = dr_scores(frame.drop(columns="t"), "offer", "y", COVARIATES)
    assert actions == ("call", "discount", "none") and gamma.shape == (1500, 3)


def test_round_trip_through_json(learned: Any) -> None:
    tree = learned[0].tree
    again = PolicyTree.from_dict(json.loads(json.dumps(tree.to_dict())))
    assert again == tree
    np.testing.assert_array_equal(again.predict(learned[1]), tree.predict(learned[1]))


@pytest.mark.parametrize(
    ("problem", "match"),
    [
        (lambda f: f.assign(t=0), "one action"),
        (lambda f: f.assign(y=f["y"].where(f.index != 5)), "missing or infinite"),
        (lambda f: f.assign(x2=f["x2"].where(f.index != 7, np.inf)), "missing or infinite"),
        (lambda f: f.assign(t=np.where(f.index < 3, 9, f["t"])), "Too few rows per action"),
        (lambda f: f.assign(t=f["t"].astype(float) + 0.5), "integers or strings"),
        (lambda f: f.drop(columns="x3"), "not in the frame"),
    ],
)
def test_bad_input_is_refused_clearly(problem: Any, match: str) -> None:
    frame, _ = simulate(300, 2)
    with pytest.raises(InvalidInputError, match=match):
        learn_policy(problem(frame), "t", "y", COVARIATES, depth=1)


def test_bad_options_are_refused() -> None:
    frame, _ = simulate(300, 2)
    with pytest.raises(InvalidInputError, match="depth"):
        learn_policy(frame, "t", "y", COVARIATES, depth=4)
    with pytest.raises(InvalidInputError, match="baseline"):
        learn_policy(frame, "t", "y", COVARIATES, baseline=7)
    with pytest.raises(InvalidInputError, match="Policy feature"):
        learn_policy(frame, "t", "y", COVARIATES, features=["nope"])
    with pytest.raises(InvalidInputError, match="needs column"):
        PolicyTree.from_dict(_tree_dict()).predict(frame.drop(columns="x0"))


def _tree_dict() -> dict[str, Any]:
    return {
        "format": "keel.policy_tree/1",
        "features": ["x0", "x1"],
        "actions": [0, 1],
        "baseline": 0,
        "nodes": [
            {"feature": "x0", "threshold": 0.0, "left": 1, "right": 2},
            {"action": 0, "expected_outcomes": [0.0, -1.0], "n": 10},
            {"action": 1, "expected_outcomes": [0.0, 1.5], "n": 12},
        ],
    }


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(_tree_dict())
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


HOSTILE = {
    "not a dict": ([1, 2], "JSON object"),
    "unknown field": (_with(("code",), "import os"), "no field"),
    "wrong format": (_with(("format",), "pickle"), "format"),
    "one action": (_with(("actions",), [0]), "2 to"),
    "bool action": (_with(("actions",), [True, 1]), "integer or"),
    "mixed actions": (_with(("actions",), [0, "a"]), "all integers or all strings"),
    "baseline not an action": (_with(("baseline",), 5), "baseline"),
    "feature unknown": (_with(("nodes", 0, "feature"), "x9"), "not one of the features"),
    "nan threshold": (_with(("nodes", 0, "threshold"), float("nan")), "finite"),
    "huge threshold": (_with(("nodes", 0, "threshold"), 10**400), "finite"),
    "string threshold": (_with(("nodes", 0, "threshold"), "0"), "finite"),
    "child out of range": (_with(("nodes", 0, "right"), 99), "node indices"),
    "cycle": (_with(("nodes", 0, "left"), 0), "points back"),
    "shared child": (_with(("nodes", 0, "right"), 1), "exactly once"),
    "leaf action unknown": (_with(("nodes", 1, "action"), 3), "not one of the actions"),
    "short outcomes": (_with(("nodes", 1, "expected_outcomes"), [0.0]), "one expected outcome"),
    "inf outcome": (_with(("nodes", 2, "expected_outcomes"), [0.0, float("inf")]), "finite"),
    "negative n": (_with(("nodes", 2, "n"), -1), "non-negative"),
    "mixed node": (_with(("nodes", 1, "feature"), "x0"), "a split has"),
    "too many nodes": (_with(("nodes",), [{"action": 0, "expected_outcomes": [0, 0]}] * 600), "1 to 511"),
    "duplicate features": (_with(("features",), ["x0", "x0"]), "distinct"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_from_dict_refuses_malformed_and_hostile_dicts(case: str) -> None:
    data, match = HOSTILE[case]
    with pytest.raises(InvalidModelError, match=match):
        PolicyTree.from_dict(data)


def test_a_single_leaf_is_a_valid_tree() -> None:
    tree = PolicyTree.from_dict(
        {
            "format": "keel.policy_tree/1",
            "features": ["a"],
            "actions": ["x", "y"],
            "baseline": "x",
            "nodes": [{"action": "y", "expected_outcomes": [1.0, 2.0]}],
        }
    )
    assert tree.rules() == ["everyone -> y"] and tree.depth == 0
    assert tree.expected_gain(pd.DataFrame({"a": [1.0, 2.0]})).tolist() == [1.0, 1.0]
