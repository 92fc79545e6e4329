"""Exact search for the policy tree of a given depth that maximises the summed DR scores.

Like R's policytree (Athey & Wager 2021; Sverdrup et al. 2020), every candidate split is tried:
for each feature, thresholds on a quantile grid of that feature (all distinct values when there
are few), so the tree is optimal at its depth over that grid. The last level is vectorised: with
the rows of a node sorted by a feature, cumulative sums of the scores give the reward of the best
action on each side of every threshold at once. Deeper levels recurse over (feature, threshold).
Ties keep the first candidate in (feature, threshold) order, and a split is kept only when it
gains more than rounding over a leaf, so the result is deterministic and has no useless splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keel.causal._policy_tree import PolicyNode

__all__ = ["threshold_grid", "search_tree"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Fit:
    reward: float
    action: int = -1  # a leaf's action; -1 for a split
    feature: int = -1
    threshold: float = 0.0
    left: _Fit | None = None
    right: _Fit | None = None


def threshold_grid(x: FloatArray, n_thresholds: int) -> list[FloatArray]:
    """Candidate thresholds per feature (rows with value <= threshold go left): every distinct
    value but the largest when there are at most `n_thresholds`, else that many inner quantiles."""
    grids = []
    for j in range(x.shape[1]):
        values = np.unique(x[:, j])
        if values.size - 1 <= n_thresholds:
            grids.append(values[:-1].astype(np.float64))
        else:
            levels = np.arange(1, n_thresholds + 1) / (n_thresholds + 1)
            grids.append(np.unique(np.quantile(x[:, j], levels, method="lower")).astype(np.float64))
    return grids


class _Search:
    def __init__(self, x: FloatArray, gamma: FloatArray, grids: list[FloatArray], min_leaf: int) -> None:
        self.x, self.gamma, self.grids, self.min_leaf = x, gamma, grids, min_leaf
        self.order = [np.argsort(x[:, j], kind="mergesort") for j in range(x.shape[1])]
        self.tol = 1e-9 * max(1.0, float(np.abs(gamma).sum()))

    def _leaf(self, mask: BoolArray) -> _Fit:
        totals = self.gamma[mask].sum(axis=0)
        action = int(np.argmax(totals))
        return _Fit(float(totals[action]), action=action)

    def _counts(self, mask: BoolArray, j: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray]:
        """The node's rows sorted by feature j, the left count at each grid threshold, the thresholds."""
        rows = self.order[j][mask[self.order[j]]]
        left = np.searchsorted(self.x[rows, j], self.grids[j], side="right")
        ok = (left >= self.min_leaf) & (rows.size - left >= self.min_leaf)
        # Thresholds that cut the node's rows at the same place give the same split: keep the first.
        ok[1:] &= left[1:] != left[:-1]
        return rows, left[ok], self.grids[j][ok]

    def _depth_one(self, mask: BoolArray) -> _Fit:
        best = self._leaf(mask)
        leaf_reward = best.reward
        for j in range(self.x.shape[1]):
            rows, left, thresholds = self._counts(mask, j)
            if left.size == 0:
                continue
            sums = np.cumsum(self.gamma[rows], axis=0)
            at_left = sums[left - 1]
            at_right = sums[-1] - at_left
            reward = at_left.max(axis=1) + at_right.max(axis=1)
            k = int(np.argmax(reward))
            if reward[k] > max(best.reward, leaf_reward + self.tol):
                lo, hi = int(np.argmax(at_left[k])), int(np.argmax(at_right[k]))
                best = _Fit(
                    float(reward[k]),
                    feature=j,
                    threshold=float(thresholds[k]),
                    left=_Fit(float(at_left[k, lo]), action=lo),
                    right=_Fit(float(at_right[k, hi]), action=hi),
                )
        return best

    def best(self, mask: BoolArray, depth: int) -> _Fit:
        if depth == 0 or mask.sum() < 2 * self.min_leaf:
            return self._leaf(mask)
        if depth == 1:
            return self._depth_one(mask)
        best = self._leaf(mask)
        leaf_reward = best.reward
        for j in range(self.x.shape[1]):
            _, _, thresholds = self._counts(mask, j)
            for threshold in thresholds.tolist():
                goes_left = self.x[:, j] <= threshold
                left = self.best(mask & goes_left, depth - 1)
                right = self.best(mask & ~goes_left, depth - 1)
                reward = left.reward + right.reward
                if reward > max(best.reward, leaf_reward + self.tol):
                    best = _Fit(reward, feature=j, threshold=threshold, left=left, right=right)
        return best


def search_tree(
    x: FloatArray, gamma: FloatArray, depth: int, min_leaf: int, grids: list[FloatArray]
) -> tuple[PolicyNode, ...]:
    """The optimal tree's nodes, root first and children after their parent; leaves carry the
    mean score of every action over their units (the leaf's expected outcome per action)."""
    fit = _Search(x, gamma, grids, min_leaf).best(np.ones(len(x), dtype=bool), depth)
    nodes: list[PolicyNode] = []

    def emit(node: _Fit, mask: BoolArray) -> int:
        index = len(nodes)
        if node.left is None or node.right is None:
            values = tuple(float(v) for v in gamma[mask].mean(axis=0))
            nodes.append(PolicyNode(action=node.action, values=values, n=int(mask.sum())))
            return index
        nodes.append(PolicyNode())  # placeholder: the children's indices are known once they are emitted
        goes_left = x[:, node.feature] <= node.threshold
        left = emit(node.left, mask & goes_left)
        right = emit(node.right, mask & ~goes_left)
        nodes[index] = PolicyNode(node.feature, node.threshold, left, right)
        return index

    emit(fit, np.ones(len(x), dtype=bool))
    return tuple(nodes)
