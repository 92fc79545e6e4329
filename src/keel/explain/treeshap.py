"""Keel's own exact path-dependent TreeSHAP for tree ensembles: LightGBM, and scikit-learn decision
trees, random forests and extra trees (shap's TreeExplainer's numbers). Values in, values out.

Why not the booster's `pred_contrib` (which `shap.TreeExplainer` also calls for LightGBM)? It runs
Lundberg's recursive algorithm, O(leaves x depth^2) per tree and row with a path copied at every
node. This module computes the same numbers -- exact, not approximated -- with less work per row:

For one leaf with value v whose root path splits on the distinct features P (|P| = D), each with
z_j = the product of the cover fractions of the branches taken on j, and a row that satisfies the
path's conditions on the features S (and fails them on P minus S), the path-dependent value of a
coalition A is v * prod_{j in A} [j in S] * prod_{j in P minus A} z_j. Its Shapley values are

    phi_i = -v * Z * R(S)                 for i in P minus S
    phi_i =  v * (1 - z_i) * Z * R(S - i)  for i in S

with Z = prod_{j in P minus S} z_j, R(T) = sum_{A subset of T} w(|A|) prod_{j in T minus A} z_j and
w(a) = a! (D - 1 - a)! / D! (derivation: Yang 2021, "Fast TreeSHAP", whose v2 tabulates R). R(T)
is sum_a w(a) c_a with c the coefficients of prod_{j in T} (z_j + t), built in O(|S|^2) and
divided by one factor in O(|S|) for each i. One walk per tree and row finds S for every leaf (a
bit mask of failed features pushed down the tree), so a tree costs O(nodes + leaves x |S|^2)
instead of LightGBM's O(leaves x D^2) with heavier steps. Short paths go further (Fast TreeSHAP
v2): a leaf's answer depends on the row only through its mask, so for D up to ~9 (under a 32 MB
cap) all 2^D answers are tabulated once per model and a row reads its D numbers off. Rows pass the
trees in blocks so each tree's table stays in cache. Repeated features on a path share one entry
of P (their z multiply). Additivity, `base + sum(values) == raw prediction`, holds to rounding.

Compiled with numba (imported lazily, in `_treeshap_kernels.py`; the machine code is cached on
disk). Refused, with `UnsupportedTreeError`, so that callers fall back to `pred_contrib` or shap:
categorical splits, linear trees, random-forest mode, paths over 62 distinct features, zero cover,
missing values in a scikit-learn tree's input (its learned missing-value directions are not read).
`device="cuda"` runs the same computation as a `numba.cuda` kernel (`_treeshap_cuda.py`); "auto"
picks it only for a real GPU and at least `GPU_MIN_ROWS` rows (below that, transfers and the
kernel's compile outweigh the CPU's time). It is checked against the CPU path in numba's CUDA
simulator; no real GPU has run it in this project's tests.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from math import comb
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["TreeEnsemble", "UnsupportedTreeError", "parse_lightgbm", "parse_sklearn", "tree_predict", "tree_shap"]

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_MAX_FEATURES_ON_PATH = 62  # the failed-feature set of a path is a bit mask in an int64
# Tabulating a leaf costs 2^D x D floats: the shortest paths first, up to this many floats (32 MB).
_TABLE_BUDGET = 1 << 22
_TABLE_MAX_DEPTH = 12
GPU_MIN_ROWS = 10_000  # device="auto" uses a GPU from this many rows
_DEVICES = ("auto", "cpu", "cuda")
_PARSED: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], TreeEnsemble]] = weakref.WeakKeyDictionary()


class UnsupportedTreeError(InvalidInputError):
    """The model has a tree this implementation does not compute exactly; use the booster's own TreeSHAP."""


@dataclass(frozen=True)
class TreeEnsemble:
    """All trees of a model as flat arrays over global node ids (-1 in `left` marks a leaf).

    `pos[node]` is the index of the node's feature among the distinct features of the path from
    its tree's root (the same for every leaf below it); a leaf's path is
    `path_feature/path_z[leaf_offset : leaf_offset + leaf_depth]`.
    """

    n_features: int
    n_outputs: int
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing: np.ndarray  # 0 none, 1 zero, 2 NaN (LightGBM's missing_type)
    default_left: np.ndarray
    pos: np.ndarray
    leaf_of: np.ndarray
    leaf_value: np.ndarray
    leaf_depth: np.ndarray
    leaf_offset: np.ndarray
    path_feature: np.ndarray
    path_z: np.ndarray
    tree_root: np.ndarray
    tree_end: np.ndarray  # one past a tree's last node (nodes are numbered in preorder)
    tree_output: np.ndarray
    base: np.ndarray  # (n_outputs,): the cover-weighted mean output, E[f(X)] over the training data
    max_depth: int  # the deepest leaf, in splits (more than its distinct features when a path repeats one)
    weights: np.ndarray  # weights[d, a]: the Shapley weight of a coalition of a among d players
    # a short path's contributions for every failed set: table[table_offset[leaf] + fails * D + p]
    table: np.ndarray
    table_offset: np.ndarray  # -1: computed per row
    float32_inputs: bool = False  # scikit-learn trees compare float32 copies of the inputs


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, list[Any]] = {
            k: [] for k in ("left", "right", "feature", "threshold", "missing", "default_left", "pos", "leaf_of")
        }
        self.leaf_value: list[float] = []
        self.leaf_depth: list[int] = []
        self.leaf_offset: list[int] = []
        self.path_feature: list[int] = []
        self.path_z: list[float] = []
        self.max_depth = 0

    def _new(self) -> int:
        for column in self.nodes.values():
            column.append(-1)
        return len(self.nodes["left"]) - 1

    def walk(self, node: dict[str, Any], feats: list[int], zs: list[float], depth: int) -> tuple[int, float]:
        """Adds `node`'s subtree; returns its id and its cover-weighted mean leaf value."""
        me, n = self._new(), self.nodes
        self.max_depth = max(self.max_depth, depth)
        if "leaf_value" in node:
            if "leaf_coeff" in node:
                raise UnsupportedTreeError("linear trees (linear_tree=True) are not supported")
            n["leaf_of"][me] = len(self.leaf_value)
            self.leaf_value.append(float(node["leaf_value"]))
            self.leaf_depth.append(len(feats))
            self.leaf_offset.append(len(self.path_feature))
            self.path_feature.extend(feats)
            self.path_z.extend(zs)
            return me, float(node["leaf_value"])
        if node.get("decision_type") != "<=":
            raise UnsupportedTreeError(f"categorical splits ({node.get('decision_type')!r}) are not supported")
        f, cover = int(node["split_feature"]), float(node["internal_count"])
        p = feats.index(f) if f in feats else len(feats)
        if p >= _MAX_FEATURES_ON_PATH:
            raise UnsupportedTreeError(f"a path splits on more than {_MAX_FEATURES_ON_PATH} distinct features")
        n["feature"][me], n["threshold"][me], n["pos"][me] = f, float(node["threshold"]), p
        n["missing"][me] = _MISSING[str(node.get("missing_type", "None"))]
        n["default_left"][me] = int(bool(node.get("default_left", True)))
        mean = 0.0
        for key in ("left_child", "right_child"):
            child = node[key]
            share = float(child.get("leaf_count", child.get("internal_count", 0))) / cover if cover > 0 else 0.0
            if share <= 0.0:
                raise UnsupportedTreeError("a node without training rows (zero cover) has no path-dependent SHAP")
            if p < len(feats):  # a feature already on the path: its fractions multiply
                sub_feats, sub_zs = feats, [z * share if j == p else z for j, z in enumerate(zs)]
            else:
                sub_feats, sub_zs = [*feats, f], [*zs, share]
            n[key.split("_")[0]][me], child_mean = self.walk(child, sub_feats, sub_zs, depth + 1)
            mean += share * child_mean
        return me, mean

    def finish(
        self, n_features: int, roots: list[int], outputs: list[int], base: np.ndarray, float32: bool = False
    ) -> TreeEnsemble:
        def ints(values: list[Any]) -> np.ndarray:
            return np.asarray(values, dtype=np.int64)

        n = self.nodes
        depth = max(self.leaf_depth, default=0)
        weights = _weights(depth)
        table_offset, size = _table_layout(ints(self.leaf_depth))
        table = np.zeros(size)
        if size:
            from keel.explain._treeshap_kernels import tabulate

            tabulate(np.asarray(self.leaf_value), ints(self.leaf_depth), ints(self.leaf_offset),
                     np.asarray(self.path_z), weights, table_offset, table)  # fmt: skip
        return TreeEnsemble(
            n_features=n_features,
            n_outputs=len(base),
            left=ints(n["left"]),
            right=ints(n["right"]),
            feature=ints(n["feature"]),
            threshold=np.asarray(n["threshold"], dtype=np.float64),
            missing=ints(n["missing"]),
            default_left=ints(n["default_left"]),
            pos=ints(n["pos"]),
            leaf_of=ints(n["leaf_of"]),
            leaf_value=np.asarray(self.leaf_value, dtype=np.float64),
            leaf_depth=ints(self.leaf_depth),
            leaf_offset=ints(self.leaf_offset),
            path_feature=ints(self.path_feature),
            path_z=np.asarray(self.path_z, dtype=np.float64),
            tree_root=ints(roots),
            tree_end=ints([*roots[1:], len(n["left"])]),
            tree_output=ints(outputs),
            base=base,
            max_depth=self.max_depth,
            weights=weights,
            table=table,
            table_offset=table_offset,
            float32_inputs=float32,
        )


def parse_lightgbm(booster: Any) -> TreeEnsemble:
    """A LightGBM Booster (or LGBM estimator) as a `TreeEnsemble`, from `booster.dump_model()`.

    The dump holds the same trees `predict` uses (its best iteration when one is set)."""
    booster = getattr(booster, "booster_", booster)
    dump = booster.dump_model()
    if dump.get("average_output"):
        raise UnsupportedTreeError("random-forest mode (boosting='rf') averages trees; not supported")
    k = int(dump.get("num_tree_per_iteration", 1))
    builder, roots, outputs, base = _Builder(), [], [], np.zeros(k)
    try:
        for t, info in enumerate(dump["tree_info"]):
            root, mean = builder.walk(info["tree_structure"], [], [], 0)
            roots.append(root)
            outputs.append(t % k)
            base[t % k] += mean
    except RecursionError as e:
        raise UnsupportedTreeError("a tree is too deep to parse") from e
    return builder.finish(int(dump["max_feature_idx"]) + 1, roots, outputs, base)


_SKLEARN = (
    "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
)  # fmt: skip


def _sklearn_node(tree: Any, node: int, leaf: np.ndarray) -> dict[str, Any]:
    """One scikit-learn tree as the nested nodes of a LightGBM dump (a leaf's value from `leaf`)."""
    cover = float(tree.weighted_n_node_samples[node])
    if tree.children_left[node] < 0:
        return {"leaf_value": float(leaf[node]), "leaf_count": cover}
    return {
        "split_feature": int(tree.feature[node]),
        "threshold": float(tree.threshold[node]),
        "decision_type": "<=",
        "missing_type": "None",
        "internal_count": cover,
        "left_child": _sklearn_node(tree, int(tree.children_left[node]), leaf),
        "right_child": _sklearn_node(tree, int(tree.children_right[node]), leaf),
    }


def parse_sklearn(model: Any) -> TreeEnsemble:
    """A fitted scikit-learn decision tree, random forest or extra-trees model as a `TreeEnsemble`:
    the space shap's TreeExplainer explains them in (a classifier's class probabilities, one output
    per class; a forest averages its trees)."""
    if type(model).__name__ not in _SKLEARN:
        raise UnsupportedTreeError(f"{type(model).__name__} is not a supported scikit-learn tree model")
    trees = [e.tree_ for e in getattr(model, "estimators_", [model])]
    if trees[0].n_outputs != 1:
        raise UnsupportedTreeError("multi-output trees are not supported")
    k = int(trees[0].value.shape[2]) if hasattr(model, "classes_") else 1
    builder, roots, outputs, base = _Builder(), [], [], np.zeros(k)
    try:
        for tree in trees:
            value = tree.value[:, 0, :]
            if k > 1:  # class fractions (older scikit-learn stores counts)
                value = value / value.sum(axis=1, keepdims=True)
            for c in range(k):
                nodes = _sklearn_node(tree, 0, value[:, c if k > 1 else 0] / len(trees))
                root, mean = builder.walk(nodes, [], [], 0)
                roots.append(root)
                outputs.append(c)
                base[c] += mean
    except RecursionError as e:
        raise UnsupportedTreeError("a tree is too deep to parse") from e
    return builder.finish(int(model.n_features_in_), roots, outputs, base, float32=True)


def _ensemble(model: Any) -> TreeEnsemble:
    """The parsed trees of `model`, cached per model (parsing costs more than a few rows)."""
    if isinstance(model, TreeEnsemble):
        return model
    parse: Callable[[Any], TreeEnsemble]
    if type(model).__name__ in _SKLEARN:
        stamp: tuple[int, ...] = tuple(id(e.tree_) for e in getattr(model, "estimators_", [model]))
        owner, parse = model, parse_sklearn
    else:
        owner = getattr(model, "booster_", model)
        if not type(owner).__module__.startswith("lightgbm"):
            raise UnsupportedTreeError(f"{type(model).__name__} is not a LightGBM or scikit-learn tree model")
        stamp, parse = (int(owner.num_trees()), int(getattr(owner, "best_iteration", 0) or 0)), parse_lightgbm
    cached = _PARSED.get(owner)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    ensemble = parse(owner)
    _PARSED[owner] = (stamp, ensemble)
    return ensemble


def _matrix(X: Any, e: TreeEnsemble) -> np.ndarray:
    if isinstance(X, pd.DataFrame) and not all(pd.api.types.is_numeric_dtype(d) for d in X.dtypes):
        raise UnsupportedTreeError("non-numeric columns (pandas categoricals) need the booster's own encoding")
    Xa = np.ascontiguousarray(X, dtype=np.float64)
    if Xa.ndim != 2 or Xa.shape[1] != e.n_features:
        raise InvalidInputError(f"X must have {e.n_features} columns (the model's features), got shape {Xa.shape}")
    if e.float32_inputs:
        if np.isnan(Xa).any():  # scikit-learn's learned missing-value directions are not parsed
            raise UnsupportedTreeError("missing values in the input of a scikit-learn tree are not supported")
        Xa = Xa.astype(np.float32).astype(np.float64)  # as scikit-learn's predict compares them
    return Xa


def _table_layout(depths: np.ndarray) -> tuple[np.ndarray, int]:
    """Where each tabulated leaf's 2^D x D block starts (-1: not tabulated), and the table's size."""
    sizes = (np.left_shift(1, np.minimum(depths, 62)) * depths).astype(np.int64)
    cap = 0
    for d in range(1, _TABLE_MAX_DEPTH + 1):
        if sizes[depths <= d].sum() <= _TABLE_BUDGET:
            cap = d
    offsets = np.full(len(depths), -1, dtype=np.int64)
    chosen = (depths <= cap) & (depths > 0)
    offsets[chosen] = np.concatenate([[0], np.cumsum(sizes[chosen])[:-1]]) if chosen.any() else []
    return offsets, int(sizes[chosen].sum())


def _weights(depth: int) -> np.ndarray:
    """w[d, a] = a! (d - 1 - a)! / d!, the Shapley weight of a coalition of a among d players."""
    w = np.zeros((depth + 1, depth + 1))
    for d in range(1, depth + 1):
        for a in range(d):
            w[d, a] = 1.0 / (d * comb(d - 1, a))
    return w


def _pick_device(device: str, rows: int) -> str:
    """ "cpu" or "cuda" for `device` and this many rows (see `tree_shap`)."""
    if device not in _DEVICES:
        raise InvalidInputError(f"device must be one of {', '.join(_DEVICES)}, got {device!r}")
    if device == "cpu" or (device == "auto" and rows < GPU_MIN_ROWS):
        return "cpu"  # decided before numba.cuda is imported: the CPU path never loads it
    from keel.explain._treeshap_cuda import cuda_available, real_gpu

    if device == "auto":  # never numba's CUDA simulator: it is far slower than the CPU path
        return "cuda" if real_gpu() else "cpu"
    if not cuda_available():
        raise InvalidInputError(
            "device='cuda' needs an NVIDIA GPU with its CUDA driver, and numba.cuda.is_available() is "
            "False on this machine; use device='cpu' (or 'auto', which uses a GPU only when there is one)"
        )
    return "cuda"


def tree_shap(model: Any, X: Any, *, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Exact path-dependent SHAP values of `X`'s rows: `(values[rows, outputs, features], base[outputs])`,
    in the raw (margin / log-odds) space; `base + values.sum(axis=2)` is the raw prediction.

    `model`: a LightGBM Booster or estimator, or a `TreeEnsemble`. Raises `UnsupportedTreeError`
    for trees it does not compute (see the module's docstring). `device`: "cpu"; "cuda" (a GPU
    through numba.cuda, `InvalidInputError` when there is none; same values to rounding); "auto":
    "cuda" on a real GPU for at least `GPU_MIN_ROWS` rows, else "cpu"."""
    from keel.explain._treeshap_kernels import shap_rows

    e = _ensemble(model)
    Xa = _matrix(X, e)
    if _pick_device(device, len(Xa)) == "cuda":
        from keel.explain._treeshap_cuda import shap_rows_cuda

        try:
            return shap_rows_cuda(e, Xa), e.base.copy()
        except Exception as exc:
            # The kernel is checked against the CPU path in numba's CUDA simulator only: a GPU whose
            # toolchain refuses it must not cost the user an explanation that "auto" can give on the CPU.
            if device != "auto":
                raise
            logger.warning("GPU TreeSHAP failed (%s); computing on the CPU", exc)
    out = np.zeros((len(Xa), e.n_outputs, e.n_features))
    shap_rows(
        Xa, e.left, e.right, e.feature, e.threshold, e.missing, e.default_left, e.pos, e.leaf_of,
        e.leaf_value, e.leaf_depth, e.leaf_offset, e.path_feature, e.path_z, e.tree_root, e.tree_end,
        e.tree_output, e.weights, e.table, e.table_offset, out,
    )  # fmt: skip
    return out, e.base.copy()


def tree_predict(model: Any, X: Any) -> np.ndarray:
    """The raw prediction (rows, outputs) of the parsed trees: what `tree_shap`'s values add up to."""
    from keel.explain._treeshap_kernels import predict_rows

    e = _ensemble(model)
    Xa = _matrix(X, e)
    out = np.zeros((len(Xa), e.n_outputs))
    predict_rows(
        Xa, e.left, e.right, e.feature, e.threshold, e.missing, e.default_left, e.leaf_of, e.leaf_value,
        e.tree_root, e.tree_output, out,
    )  # fmt: skip
    return out
