"""`PolicyTree`: a learned treatment policy as a frozen, pure-Python value that reads as rules.

It is stored as plain JSON (`to_dict`) and read back from untrusted bytes (`from_dict`), so
`from_dict` checks everything a hostile dict could get wrong: types, indices in range, every node
reached exactly once from the root (no cycles, no orphans), finite numbers and size limits, and
raises InvalidModelError naming the problem. Children always come after their parent in `nodes`,
which both forbids cycles and lets `predict` route every row in one pass over the nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import numpy.typing as npt
import pandas as pd

from keel.errors import InvalidInputError, InvalidModelError

__all__ = ["Action", "PolicyNode", "PolicyTree", "FORMAT", "MAX_DEPTH", "MAX_ACTIONS", "MAX_FEATURES"]

Action = Union[int, str]
FORMAT = "keel.policy_tree/1"
MAX_DEPTH = 8  # learned trees are 1..3 deep; the limit only bounds what a stored dict may ask for
MAX_ACTIONS = 100
MAX_FEATURES = 1000
MAX_NAME = 200
_LEAF_KEYS = {"action", "expected_outcomes", "n"}
_SPLIT_KEYS = {"feature", "threshold", "left", "right"}


@dataclass(frozen=True)
class PolicyNode:
    """A split (`feature` index, `threshold`: rows with x <= threshold go `left`) or a leaf
    (`action` index, `values`: the mean DR score of each action over the leaf's units, `n` units)."""

    feature: int | None = None
    threshold: float | None = None
    left: int | None = None
    right: int | None = None
    action: int | None = None
    values: tuple[float, ...] = ()
    n: int = 0

    @property
    def is_leaf(self) -> bool:
        return self.action is not None


@dataclass(frozen=True)
class PolicyTree:
    """Which action for whom: `predict(frame)` gives each row's recommended action."""

    features: tuple[str, ...]
    actions: tuple[Action, ...]
    baseline: Action
    nodes: tuple[PolicyNode, ...]

    # -- reading ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        depths = [0] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            if not node.is_leaf:
                depths[node.left or 0] = depths[node.right or 0] = depths[i] + 1
        return max(depths)

    def leaves(self, frame: pd.DataFrame) -> npt.NDArray[np.intp]:
        """The index (in `nodes`) of the leaf each row of `frame` falls in."""
        x = self._matrix(frame)
        at = np.zeros(len(x), dtype=np.intp)
        for i, node in enumerate(self.nodes):  # children come after parents: one pass routes every row
            if node.is_leaf:
                continue
            rows = at == i
            assert node.feature is not None and node.threshold is not None
            assert node.left is not None and node.right is not None
            go_left = x[rows, node.feature] <= node.threshold
            at[rows] = np.where(go_left, node.left, node.right)
        return at

    def predict(self, frame: pd.DataFrame) -> npt.NDArray[Any]:
        """The recommended action of each row (the actions' own type: integers or strings)."""
        chosen = [self.nodes[leaf].action for leaf in range(len(self.nodes))]
        per_leaf = np.asarray([self.actions[a] if a is not None else self.actions[0] for a in chosen])
        return per_leaf[self.leaves(frame)]

    def expected_gain(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Per row, the recommended action's expected outcome minus the baseline's, in its leaf."""
        base = self.actions.index(self.baseline)
        gains = np.asarray(
            [n.values[n.action] - n.values[base] if n.action is not None else 0.0 for n in self.nodes], dtype=float
        )
        return np.asarray(gains[self.leaves(frame)], dtype=np.float64)

    def rule(self, frame: pd.DataFrame) -> list[str]:
        """The rule that fired for each row, e.g. 'age <= 34.5 and income > 20000 -> offer_b'."""
        texts = self._leaf_rules()
        return [texts[leaf] for leaf in self.leaves(frame).tolist()]

    def rules(self) -> list[str]:
        """Every leaf as a readable rule, left to right."""
        texts = self._leaf_rules()
        return [texts[i] for i, node in enumerate(self.nodes) if node.is_leaf]

    def explain(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Per row: the rule that fired, the action and every action's expected outcome in the leaf."""
        texts = self._leaf_rules()
        out = []
        for leaf in self.leaves(frame).tolist():
            node = self.nodes[leaf]
            assert node.action is not None
            out.append(
                {
                    "rule": texts[leaf],
                    "action": self.actions[node.action],
                    "expected_outcomes": {str(a): v for a, v in zip(self.actions, node.values, strict=True)},
                }
            )
        return out

    def _leaf_rules(self) -> dict[int, str]:
        conditions: dict[int, list[str]] = {0: []}
        texts: dict[int, str] = {}
        for i, node in enumerate(self.nodes):
            if node.is_leaf:
                assert node.action is not None
                text = " and ".join(conditions[i]) or "everyone"
                texts[i] = f"{text} -> {self.actions[node.action]}"
                continue
            assert node.feature is not None and node.threshold is not None
            name, cut = self.features[node.feature], f"{node.threshold:.6g}"
            conditions[node.left or 0] = [*conditions[i], f"{name} <= {cut}"]
            conditions[node.right or 0] = [*conditions[i], f"{name} > {cut}"]
        return texts

    def _matrix(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(f"A policy tree predicts for a pandas DataFrame, got {type(frame).__name__}.")
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise InvalidInputError(f"The policy needs column(s) {missing}; the frame has {list(frame.columns)}.")
        try:
            x = frame[list(self.features)].to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"The policy's features {list(self.features)} must be numeric: {exc}") from None
        bad = ~np.isfinite(x).all(axis=0)
        if bad.any():
            names = [f for f, b in zip(self.features, bad, strict=True) if b]
            raise InvalidInputError(f"The policy's feature(s) {names} have missing or infinite values.")
        return np.asarray(x, dtype=np.float64)

    # -- storing ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the features, the actions, the baseline and the nodes (root first)."""
        nodes: list[dict[str, Any]] = []
        for node in self.nodes:
            if node.is_leaf:
                assert node.action is not None
                nodes.append({"action": self.actions[node.action], "expected_outcomes": list(node.values), "n": node.n})
            else:
                assert node.feature is not None
                nodes.append(
                    {
                        "feature": self.features[node.feature],
                        "threshold": node.threshold,
                        "left": node.left,
                        "right": node.right,
                    }
                )
        return {
            "format": FORMAT,
            "features": list(self.features),
            "actions": list(self.actions),
            "baseline": self.baseline,
            "nodes": nodes,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PolicyTree:
        """The tree `to_dict` wrote; anything else raises InvalidModelError naming the problem."""
        if not isinstance(data, Mapping):
            raise InvalidModelError(f"A policy tree is a JSON object, got {type(data).__name__}.")
        unknown = set(data) - {"format", "features", "actions", "baseline", "nodes"}
        if unknown:
            raise InvalidModelError(f"A policy tree has no field(s) {sorted(map(str, unknown))}.")
        if data.get("format") != FORMAT:
            raise InvalidModelError(f"Not a policy tree: format is {data.get('format')!r}, expected {FORMAT!r}.")
        features = _names(data.get("features"))
        actions = _actions(data.get("actions"))
        baseline = data.get("baseline")
        if isinstance(baseline, bool) or baseline not in actions:
            raise InvalidModelError(f"The baseline {baseline!r} is not one of the actions {list(actions)}.")
        nodes = _nodes(data.get("nodes"), features, actions)
        return cls(features, actions, baseline, nodes)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_FEATURES:
        raise InvalidModelError(f"'features' must be a list of 1 to {MAX_FEATURES} column names.")
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_NAME for v in value) or len(set(value)) != len(value):
        raise InvalidModelError(f"'features' must be distinct non-empty strings of at most {MAX_NAME} characters.")
    return tuple(value)


def _actions(value: Any) -> tuple[Action, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_ACTIONS:
        raise InvalidModelError(f"'actions' must be a list of 2 to {MAX_ACTIONS} actions.")
    for v in value:
        ok = isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63
        if not (ok or (isinstance(v, str) and 0 < len(v) <= MAX_NAME)):
            raise InvalidModelError(f"An action must be an integer or a non-empty short string, got {v!r}.")
    if len({type(v) for v in value}) != 1:
        raise InvalidModelError(f"'actions' must be all integers or all strings, got {value!r}.")
    if len(set(value)) != len(value):
        raise InvalidModelError(f"'actions' must be distinct, got {value!r}.")
    return tuple(value)


def _nodes(value: Any, features: Sequence[str], actions: Sequence[Action]) -> tuple[PolicyNode, ...]:
    limit = 2 ** (MAX_DEPTH + 1) - 1
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        raise InvalidModelError(f"'nodes' must be a list of 1 to {limit} nodes (a tree at most {MAX_DEPTH} deep).")
    parents = [0] * len(value)
    depth = [0] * len(value)
    nodes = []
    for i, raw in enumerate(value):
        node = _node(i, raw, features, actions, len(value))
        if not node.is_leaf:
            for child in (node.left, node.right):
                assert child is not None
                if child <= i:  # children after their parent: no cycle can be written down
                    raise InvalidModelError(f"Node {i} points back to node {child}; children must come later.")
                parents[child] += 1
                depth[child] = depth[i] + 1
                if depth[child] > MAX_DEPTH:
                    raise InvalidModelError(f"The tree is deeper than {MAX_DEPTH} levels.")
        nodes.append(node)
    orphans = [i for i in range(1, len(value)) if parents[i] != 1]
    if orphans:
        raise InvalidModelError(f"Node(s) {orphans[:10]} are not reached exactly once from the root.")
    return tuple(nodes)


def _node(i: int, raw: Any, features: Sequence[str], actions: Sequence[Action], count: int) -> PolicyNode:
    if not isinstance(raw, Mapping):
        raise InvalidModelError(f"Node {i} must be a JSON object, got {type(raw).__name__}.")
    keys = set(raw)
    if keys == _SPLIT_KEYS:
        feature, threshold = raw["feature"], raw["threshold"]
        if not isinstance(feature, str) or feature not in features:
            raise InvalidModelError(f"Node {i} splits on {feature!r}, which is not one of the features.")
        children = (raw["left"], raw["right"])
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < count for c in children):
            raise InvalidModelError(f"Node {i}'s children {list(children)} must be node indices below {count}.")
        return PolicyNode(features.index(feature), _finite(threshold, f"node {i}'s threshold"), *children)
    if keys in (_LEAF_KEYS, _LEAF_KEYS - {"n"}):
        action, values = raw["action"], raw["expected_outcomes"]
        if isinstance(action, bool) or not isinstance(action, (int, str)) or action not in actions:
            raise InvalidModelError(f"Leaf {i} recommends {action!r}, which is not one of the actions.")
        if not isinstance(values, list) or len(values) != len(actions):
            raise InvalidModelError(f"Leaf {i} needs one expected outcome per action ({len(actions)}).")
        n = raw.get("n", 0)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 2**63:
            raise InvalidModelError(f"Leaf {i}'s 'n' must be a non-negative integer, got {n!r}.")
        outcomes = tuple(_finite(v, f"leaf {i}'s expected outcome") for v in values)
        return PolicyNode(action=list(actions).index(action), values=outcomes, n=n)
    raise InvalidModelError(
        f"Node {i} has fields {sorted(map(str, keys))}; a split has {sorted(_SPLIT_KEYS)}, a leaf {sorted(_LEAF_KEYS)}."
    )


def _finite(value: Any, what: str) -> float:
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise InvalidModelError(f"{what} must be a finite number, got {str(value)[:40]!r}.")
