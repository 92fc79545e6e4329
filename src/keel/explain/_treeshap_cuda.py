"""Keel's exact TreeSHAP on an NVIDIA GPU: a `numba.cuda` port of `_treeshap_kernels.shap_rows`.

Same numbers as the CPU path from the same parsed `TreeEnsemble` and its tables; only the order in
which contributions are summed differs (atomic adds), so results agree to rounding (~1e-16).

One thread per (row, leaf), rows varying fastest: the threads of a warp read the same leaf's path
and table entries (one broadcast read) and add into different rows' outputs (no atomic conflicts
within a warp). A thread finds its leaf's failed-feature mask by walking from the leaf up to the
root (a `parent` array built here), O(depth) instead of the CPU's one preorder pass per tree,
which needs a per-thread array as wide as a tree. Both of the CPU's leaf paths are ported:
tabulated leaves read their D numbers off the table, longer paths run `leaf_shap` per thread with a
64-entry local buffer (paths hold at most 62 distinct features). float64 throughout.

`numba.cuda` is imported only inside functions: `import keel.explain` never loads it, and the
CPU path never pays for it. Under `NUMBA_ENABLE_CUDASIM=1` the kernel runs in numba's simulator
(on the CPU, slowly, same semantics): how the tests check it on machines without a GPU.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from keel.explain.treeshap import TreeEnsemble

THREADS = 128  # threads per block
MAX_BLOCKS = 1 << 16  # a grid-stride loop covers the rest
CHUNK_BYTES = 1 << 29  # rows go to the device in chunks whose input + output stay under 512 MB
LOCAL = 64  # the per-thread coefficient buffer: > 62 distinct features + 1
# numba.cuda, set by `_kernel()`. A module global, not a local: the simulator swaps its fake
# `cuda` module into a kernel's globals, and a closure variable would escape the swap.
cuda: Any = None


def _numba_cuda() -> Any:
    """numba.cuda, typed Any: numba's partial annotations would make mypy strict reject its calls."""
    return importlib.import_module("numba.cuda")


def cuda_available() -> bool:
    """Whether `numba.cuda` can run kernels here: a GPU with a driver, or the simulator."""
    try:
        return bool(_numba_cuda().is_available())
    except Exception:  # noqa: BLE001 -- a broken driver install is "no GPU", not a crash
        return False


def real_gpu() -> bool:
    """Whether a real GPU (not numba's CUDA simulator) is available."""
    try:
        import numba
    except ImportError:
        return False
    return not getattr(numba.config, "ENABLE_CUDASIM", 0) and cuda_available()


@cache
def _device_functions() -> tuple[Any, Any]:
    """The kernel's device functions, `goes_left` and `leaf_shap`; defined in a function so that
    numba.cuda loads lazily."""
    import math

    global cuda
    cuda = _numba_cuda()

    zero_threshold = 1.0000000180025095e-35  # LightGBM's kZeroThreshold (see _treeshap_kernels)

    @cuda.jit(device=True)  # type: ignore[untyped-decorator]
    def goes_left(x: float, threshold: float, missing: int, default_left: int) -> bool:
        if missing != 2 and math.isnan(x):
            x = 0.0
        if missing == 1 and x >= -zero_threshold and x <= zero_threshold:
            return default_left == 1
        if missing == 2 and math.isnan(x):
            return default_left == 1
        return x <= threshold

    @cuda.jit(device=True)  # type: ignore[untyped-decorator]
    def leaf_shap(
        val: float, d: int, off: int, fails: int, path_feature: Any, path_z: Any, weights: Any, c: Any, out: Any,
        i: int, o: int,
    ) -> None:  # fmt: skip
        # _treeshap_kernels.leaf_shap, line for line, adding into out[i, o, :] atomically.
        zs = 1.0
        m = 0
        c[0] = 1.0
        for p in range(d):
            z = path_z[off + p]
            if (fails >> p) & 1:
                zs *= z
            else:
                c[m + 1] = c[m]
                for a in range(m, 0, -1):
                    c[a] = z * c[a] + c[a - 1]
                c[0] *= z
                m += 1
        if m < d:
            r = 0.0
            for a in range(m + 1):
                r += weights[d, a] * c[a]
            cold = -val * zs * r
            for p in range(d):
                if (fails >> p) & 1:
                    cuda.atomic.add(out, (i, o, path_feature[off + p]), cold)
        for p in range(d):
            if not (fails >> p) & 1:
                z = path_z[off + p]
                h = c[m]
                r = weights[d, m - 1] * h
                for a in range(m - 1, 0, -1):
                    h = c[a] - z * h
                    r += weights[d, a - 1] * h
                cuda.atomic.add(out, (i, o, path_feature[off + p]), val * (1.0 - z) * zs * r)

    return goes_left, leaf_shap


@cache
def _kernel() -> Any:
    """The kernel (compiled at its first launch for the arrays' types)."""
    from numba import float64

    goes_left, leaf_shap = _device_functions()

    @cuda.jit  # type: ignore[untyped-decorator]
    def shap_kernel(
        X: Any, left: Any, feature: Any, threshold: Any, missing: Any, default_left: Any, pos: Any,
        parent: Any, leaf_node: Any, leaf_out: Any, leaf_value: Any, leaf_depth: Any, leaf_offset: Any,
        path_feature: Any, path_z: Any, weights: Any, table: Any, table_offset: Any, out: Any,
    ) -> None:  # fmt: skip
        c = cuda.local.array(LOCAL, float64)
        n = X.shape[0]
        total = n * leaf_node.shape[0]
        for k in range(cuda.grid(1), total, cuda.gridsize(1)):
            leaf = k // n
            i = k - leaf * n
            d = leaf_depth[leaf]
            if d == 0:  # a one-leaf tree explains nothing
                continue
            # The failed-feature mask: every ancestor whose branch towards this leaf the row does
            # not take fails its feature (a repeated feature sets the same bit, as on the CPU).
            mask = 0
            node = leaf_node[leaf]
            up = parent[node]
            while up >= 0:
                f = feature[up]
                if goes_left(X[i, f], threshold[up], missing[up], default_left[up]) != (left[up] == node):
                    mask |= 1 << pos[up]
                node = up
                up = parent[node]
            o = leaf_out[leaf]
            off = leaf_offset[leaf]
            at = table_offset[leaf]
            if at >= 0:
                at += mask * d
                for p in range(d):
                    cuda.atomic.add(out, (i, o, path_feature[off + p]), table[at + p])
            else:
                leaf_shap(leaf_value[leaf], d, off, mask, path_feature, path_z, weights, c, out, i, o)

    return shap_kernel


def _layout(e: TreeEnsemble) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each node's parent (-1 at roots), each leaf's node id, each leaf's output column."""
    parent = np.full(len(e.left), -1, dtype=np.int64)
    inner = np.flatnonzero(e.left >= 0)
    parent[e.left[inner]] = inner
    parent[e.right[inner]] = inner
    leaves = np.flatnonzero(e.left < 0)
    leaf_node = np.empty(len(e.leaf_value), dtype=np.int64)
    leaf_node[e.leaf_of[leaves]] = leaves
    tree = np.searchsorted(e.tree_root, leaf_node, side="right") - 1
    return parent, leaf_node, e.tree_output[tree].astype(np.int64)


def shap_rows_cuda(e: TreeEnsemble, X: np.ndarray) -> np.ndarray:
    """`tree_shap`'s values (rows, outputs, features) for the float64 matrix `X`, computed on the GPU."""
    kernel = _kernel()
    cuda = _numba_cuda()
    parent, leaf_node, leaf_out = _layout(e)
    table = e.table if e.table.size else np.zeros(1)  # a zero-length device array is not launchable everywhere
    model = [cuda.to_device(np.ascontiguousarray(a)) for a in (
        e.left, e.feature, e.threshold, e.missing, e.default_left, e.pos, parent, leaf_node, leaf_out,
        e.leaf_value, e.leaf_depth, e.leaf_offset, e.path_feature, e.path_z, e.weights, table, e.table_offset,
    )]  # fmt: skip
    out = np.zeros((len(X), e.n_outputs, e.n_features))
    row_bytes = 8 * (X.shape[1] + e.n_outputs * e.n_features)
    step = max(1, CHUNK_BYTES // row_bytes)
    for start in range(0, len(X), step):
        x = cuda.to_device(np.ascontiguousarray(X[start : start + step]))
        d_out = cuda.to_device(out[start : start + step])
        total = x.shape[0] * len(leaf_node)
        blocks = max(1, min(MAX_BLOCKS, -(-total // THREADS)))
        kernel[blocks, THREADS](x, *model, d_out)
        out[start : start + step] = d_out.copy_to_host()
    return out
