"""Compiled kernels of Keel's exact path-dependent TreeSHAP (see `treeshap.py` for the maths).

Kept apart, and imported only inside `treeshap.py`'s functions, so that `import keel.explain`
never loads numba. Every kernel is `@njit(cache=True, nogil=True)`: the first call in a fresh
environment compiles (a few seconds), later processes load the machine code from `__pycache__`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

Arr = np.ndarray  # numba ignores annotations; these are for mypy and readers

# LightGBM's kZeroThreshold is the float 1e-35f; compared as a double it is this value.
ZERO_THRESHOLD = 1.0000000180025095e-35
BLOCK = 256  # rows per block in shap_rows


@njit(cache=True, nogil=True)
def goes_left(x: float, threshold: float, missing: int, default_left: int) -> bool:
    # LightGBM's NumericalDecision: NaN counts as 0 unless NaN is the missing marker;
    # the missing marker (0 for 'Zero', NaN for 'NaN') follows the default direction.
    if missing != 2 and np.isnan(x):
        x = 0.0
    if missing == 1 and -ZERO_THRESHOLD <= x <= ZERO_THRESHOLD:
        return default_left == 1
    if missing == 2 and np.isnan(x):
        return default_left == 1
    return x <= threshold


@njit(cache=True, nogil=True)
def leaf_shap(
    val: float, depth: int, off: int, fails: int, path_feature: Arr, path_z: Arr, w: Arr, c: Arr, out: Arr
) -> None:
    # c holds the coefficients of prod_{j in S} (z_j + t): c[a] sums prod_{S minus A} z over
    # |A| = a, so R(S) = sum_a w[a] c[a] is a leaf's Shapley sum in O(|S|) once c is built.
    zs = 1.0
    m = 0
    c[0] = 1.0
    for p in range(depth):
        z = path_z[off + p]
        if (fails >> p) & 1:
            zs *= z
        else:
            c[m + 1] = c[m]
            for a in range(m, 0, -1):
                c[a] = z * c[a] + c[a - 1]
            c[0] *= z
            m += 1
    if m < depth:  # features the row fails: each gets -val * Z(P minus S) * R(S)
        r = 0.0
        for a in range(m + 1):
            r += w[a] * c[a]
        cold = -val * zs * r
        for p in range(depth):
            if (fails >> p) & 1:
                out[path_feature[off + p]] += cold
    for p in range(depth):
        if not (fails >> p) & 1:
            # R(S minus i): divide (z_i + t) out of c, top down (stable: each step scales by z_i <= 1)
            z = path_z[off + p]
            h = c[m]
            r = w[m - 1] * h
            for a in range(m - 1, 0, -1):
                h = c[a] - z * h
                r += w[a - 1] * h
            out[path_feature[off + p]] += val * (1.0 - z) * zs * r


@njit(cache=True, nogil=True)
def shap_rows(
    X: Arr,
    left: Arr,
    right: Arr,
    feature: Arr,
    threshold: Arr,
    missing: Arr,
    default_left: Arr,
    pos: Arr,
    leaf_of: Arr,
    leaf_value: Arr,
    leaf_depth: Arr,
    leaf_offset: Arr,
    path_feature: Arr,
    path_z: Arr,
    tree_root: Arr,
    tree_end: Arr,
    tree_output: Arr,
    weights: Arr,
    table: Arr,
    table_offset: Arr,
    out: Arr,
) -> Arr:
    # Nodes are numbered in preorder, so one pass over a tree's nodes sees every parent before its
    # children: no stack, and the failed-feature mask of each node is set before it is read.
    width = 1
    for t in range(tree_root.shape[0]):
        width = max(width, tree_end[t] - tree_root[t])
    fails = np.zeros(width, dtype=np.int64)
    c = np.empty(weights.shape[0] + 2, dtype=np.float64)
    # Rows in blocks, trees outside rows within a block: a tree's nodes and tables stay in cache
    # while the block's rows pass through it (the tables of all trees are far larger than a cache).
    for start in range(0, X.shape[0], BLOCK):
        for t in range(tree_root.shape[0]):
            root = tree_root[t]
            for i in range(start, min(start + BLOCK, X.shape[0])):
                x = X[i]
                row = out[i, tree_output[t]]
                fails[0] = 0
                for node in range(root, tree_end[t]):
                    mask = fails[node - root]
                    if left[node] >= 0:
                        bit = np.int64(1) << pos[node]
                        if goes_left(x[feature[node]], threshold[node], missing[node], default_left[node]):
                            fails[left[node] - root], fails[right[node] - root] = mask, mask | bit
                        else:
                            fails[left[node] - root], fails[right[node] - root] = mask | bit, mask
                        continue
                    leaf = leaf_of[node]
                    d = leaf_depth[leaf]
                    off = leaf_offset[leaf]
                    at = table_offset[leaf]
                    if at >= 0:  # tabulated: the row's contributions for this failed set, read off
                        at += mask * d
                        for p in range(d):
                            row[path_feature[off + p]] += table[at + p]
                    elif d > 0:
                        leaf_shap(leaf_value[leaf], d, off, mask, path_feature, path_z, weights[d], c, row)
    return out


@njit(cache=True, nogil=True)
def predict_rows(
    X: Arr,
    left: Arr,
    right: Arr,
    feature: Arr,
    threshold: Arr,
    missing: Arr,
    default_left: Arr,
    leaf_of: Arr,
    leaf_value: Arr,
    tree_root: Arr,
    tree_output: Arr,
    out: Arr,
) -> Arr:
    for i in range(X.shape[0]):
        x = X[i]
        for t in range(tree_root.shape[0]):
            node = tree_root[t]
            while left[node] >= 0:
                if goes_left(x[feature[node]], threshold[node], missing[node], default_left[node]):
                    node = left[node]
                else:
                    node = right[node]
            out[i, tree_output[t]] += leaf_value[leaf_of[node]]
    return out


@njit(cache=True, nogil=True)
def tabulate(
    leaf_value: Arr, leaf_depth: Arr, leaf_offset: Arr, path_z: Arr, weights: Arr, table_offset: Arr, table: Arr
) -> Arr:
    # Fast TreeSHAP v2's trade: a leaf's contributions depend on the row only through the set of
    # path features it fails, so for short paths all 2^D answers are computed once, per model.
    depth_max = weights.shape[0]
    local = np.arange(depth_max, dtype=np.int64)
    c = np.empty(depth_max + 2, dtype=np.float64)
    for leaf in range(leaf_value.shape[0]):
        at = table_offset[leaf]
        if at < 0:
            continue
        d = leaf_depth[leaf]
        z = path_z[leaf_offset[leaf] : leaf_offset[leaf] + d]
        for fails in range(1 << d):
            start = at + fails * d
            leaf_shap(leaf_value[leaf], d, 0, fails, local, z, weights[d], c, table[start : start + d])
    return table
