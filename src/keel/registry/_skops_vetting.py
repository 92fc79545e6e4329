"""Vetting of skops files before an untrusted load: the allow-list walk of `schema.json`, and the
bounds checks of the tree arrays a loaded model holds.

skops rebuilds each object of a file with a node kind named in its schema. `vet_skops` walks that
schema without loading anything (and without importing modules outside _PACKAGES) and refuses
every node keel does not trust; `check_tree_arrays` then checks, on the loaded model, the node
arrays scikit-learn indexes without bounds checks. Verdicts are kept per SHA-256 of the file.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import sys
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from keel.errors import InvalidModelError, UnsafeLoadError

__all__ = ["check_tree_arrays", "skops_audit", "skops_io", "vet_skops"]

# What an untrusted skops file may contain. skops rebuilds each object with a node kind named in
# the file ('__loader__'); each kind gets its own rule, and a kind not named here is refused.
# Objects are rebuilt from their state without calling __init__, so a class is safe to trust when
# its methods do nothing with that state but compute: scikit-learn's estimators and the helper
# types they hold. A reference to a function or a class as a *value* (FunctionTransformer.func,
# partial, a scorer, numpy.memmap as a "dtype") is something the model will call, with arguments
# the file chose: any such reference needs trusted=True, except the pure numeric kernels below.
_PACKAGES = (
    "builtins",
    "collections",
    "numpy",
    "scipy",
    "sklearn",
    "lightgbm",
    "xgboost",
)  # the only modules imported to check a name
_CONTAINERS = {
    "DictNode": ("builtins.dict", "collections.OrderedDict", "sklearn.utils._bunch.Bunch"),
    "DefaultDictNode": ("collections.defaultdict",),
    "ListNode": ("builtins.list",),
    "SetNode": ("builtins.set",),
    "TupleNode": ("builtins.tuple",),  # never a namedtuple: skops would call its class
    "SliceNode": ("builtins.slice",),
    "BytesNode": ("builtins.bytes",),
    "BytearrayNode": ("builtins.bytearray",),
}
# Rebuilt from their state: classes that are not estimators but that fitted estimators hold.
_MODEL_PARTS = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.metrics._scorer._PassthroughScorer",
    "sklearn.compose._column_transformer.make_column_selector",
    "lightgbm.basic.Booster",
    "xgboost.core.Booster",
)
# ... and families of them, by base class.
_MODEL_PART_BASES = (
    "sklearn.base.BaseEstimator",  # every estimator, transformer, pipeline and meta-estimator
    "sklearn._loss.link.BaseLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.loss.BaseLoss",
    "sklearn.metrics._dist_metrics.DistanceMetric",
    "sklearn.model_selection._split.BaseCrossValidator",
    "sklearn.model_selection._split.BaseShuffleSplit",
)
# Types a model keeps as a value (a dtype= parameter) and may call on data: harmless constructors.
_VALUE_TYPES = (
    "builtins.int",
    "builtins.float",
    "builtins.str",
    "builtins.bool",
    "builtins.complex",
    "builtins.object",
    "builtins.list",
    "builtins.tuple",
    "builtins.dict",
    "builtins.set",
    "collections.OrderedDict",
)
# Functions that only compute on arrays: numpy / scipy.special ufuncs (checked by type), the
# score functions scikit-learn's feature selectors hold by default, and the input check that a
# HistGradientBoosting model with categorical features holds (as a functools.partial, the one
# partial allowed: of these functions only).
_PURE_FUNCTIONS = (
    ("sklearn.utils.validation.check_array",)
    + tuple(
        f"sklearn.feature_selection._univariate_selection.{f}"
        for f in ("f_classif", "f_regression", "chi2", "r_regression", "f_oneway")
    )
    + tuple(f"sklearn.feature_selection._mutual_info.{f}" for f in ("mutual_info_classif", "mutual_info_regression"))
)
# Node kinds that always hold a function reference (or build one): trusted=True only.
_CALLABLE_NODES = {
    "PartialNode": "a functools.partial",
    "MethodNode": "a bound method",
    "OperatorFuncNode": "an operator function",
}


_VETTED: OrderedDict[bytes, tuple[list[str], list[str]]] = OrderedDict()
_AUDITS: OrderedDict[bytes, list[str]] = OrderedDict()
_AUDITS_KEPT = 256
_audits_lock = threading.Lock()


def _cached(cache: OrderedDict[bytes, Any], data: bytes, compute: Callable[[bytes], Any]) -> Any:
    """compute(data), kept per SHA-256 of the bytes (the last 256 files): the answer depends on nothing else."""
    key = hashlib.sha256(data).digest()
    with _audits_lock:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit
    found = compute(data)
    with _audits_lock:
        cache[key] = found
        while len(cache) > _AUDITS_KEPT:
            cache.popitem(last=False)
    return found


# Array-library adapters inside scikit-learn. skops' import lists every estimator with
# sklearn.utils.all_estimators, whose package walk imports each package it passes, these too:
# the torch one imports torch (a second or more), which a model load never needs.
_ADAPTERS = tuple(f"sklearn.externals.array_api_compat.{lib}" for lib in ("torch", "cupy", "dask"))
_import_lock = threading.Lock()


def skops_io() -> ModuleType:
    """`skops.io`, imported without letting its estimator scan import torch, cupy or dask.

    The adapters are hidden during that import only (an ImportError, which the walk skips) and
    importable again afterwards, for scikit-learn's array API support when it is used.
    """
    module = sys.modules.get("skops.io")
    if module is not None:
        return module
    with _import_lock:
        hidden = [name for name in _ADAPTERS if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # "import halted": an ImportError
        try:
            import skops.io
        finally:
            for name in hidden:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
    return skops.io


def skops_audit(data: bytes) -> list[str]:
    """The types a skops file would construct that are not skops' defaults (what trusted=True loads).

    Auditing parses the whole file a second time, which costs as much as loading it, hence the cache.
    """
    sio = skops_io()
    return list(_cached(_AUDITS, data, lambda d: list(sio.get_untrusted_types(data=d))))


def vet_skops(data: bytes) -> list[str]:
    """The 'module.name's of a skops file, once every object in it passed keel's allow-list.

    Reads only the file's schema (no array is loaded, nothing is imported outside _PACKAGES), so
    it is cheap; registration runs it on every scikit-learn model, serving finds it cached.
    Raises UnsafeLoadError naming what needs trusted=True, InvalidModelError for a malformed file.
    """
    vetted, refused = _cached(_VETTED, data, _vet_schema)
    if refused:
        shown = "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise UnsafeLoadError(
            f"This scikit-learn model holds what keel does not load untrusted: {shown}. Functions and "
            "types other than scikit-learn's own can run code of the file's choosing when the model "
            "predicts. Load it with trusted=True if you trust where it came from (the server never does)."
        )
    return list(vetted)


def _vet_schema(data: bytes) -> tuple[list[str], list[str]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, RuntimeError) as exc:
        raise InvalidModelError(
            f"This is not a readable skops (scikit-learn) file: {type(exc).__name__}: {exc}"
        ) from None
    from skops.io._protocol import PROTOCOL

    if not isinstance(schema, dict) or schema.get("protocol") != PROTOCOL:
        # Older protocols rebuild objects with older node kinds: vetted rules are for this one only.
        got = schema.get("protocol") if isinstance(schema, dict) else None
        return [], [f"a file of skops protocol {got!r}, not {PROTOCOL} (save it again with this skops)"]
    vetted: set[str] = set()
    refused: list[str] = []
    cached: set[str] = set()
    # A file names the same few (kind, type) pairs thousands of times (a forest: one per tree and
    # array); each verdict is taken once per walk, which was most of a first load's vetting.
    verdicts: dict[tuple[str, str], str | None] = {}
    stack: list[Any] = [schema]
    while stack:  # iterative: a deeply nested file must not exhaust the recursion limit here
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        loader = node.get("__loader__")
        if loader is None:
            continue
        path = f"{node.get('__module__')}.{node.get('__class__')}"
        if loader == "PartialNode" and _pure_partial(node):
            vetted.add(path)
            continue
        if loader == "CachedNode":  # a second reference to an object vetted where it first appears
            cached.add(path)
            continue
        key = (str(loader), path)
        why = verdicts[key] if key in verdicts else verdicts.setdefault(key, _refusal(*key))
        if why is None:
            vetted.add(path)
        elif why not in refused:
            refused.append(why)
    refused += [f"{p} (a reference to an object that is not in the file)" for p in sorted(cached - vetted)]
    return sorted(vetted), refused


def _pure_partial(node: dict[str, Any]) -> bool:
    """A functools.partial of one of _PURE_FUNCTIONS (its arguments are vetted as nodes of their own)."""
    func = (node.get("content") or {}).get("func") if isinstance(node.get("content"), dict) else None
    if not isinstance(func, dict) or func.get("__loader__") not in ("FunctionNode", "CachedNode"):
        return False
    path = f"{func.get('__module__')}.{func.get('__class__')}"
    # A CachedNode stands for an object found elsewhere in the file, which is vetted where it is.
    return node.get("__module__") == "functools" and path in _PURE_FUNCTIONS and callable(_resolve(path))


def _refusal(loader: str, path: str) -> str | None:
    """Why a skops node may not be loaded untrusted, or None when it may."""
    if loader == "JsonNode":  # plain JSON values: nothing is imported or called
        return None
    if loader in _CONTAINERS:
        return None if path in _CONTAINERS[loader] else f"{path} (a container of an unknown type)"
    if loader in _CALLABLE_NODES:
        return f"{path} ({_CALLABLE_NODES[loader]}: trusted=True only)"
    obj = _resolve(path)
    if loader == "FunctionNode":
        pure = (isinstance(obj, np.ufunc) and path.startswith(("numpy.", "scipy.special."))) or (
            path in _PURE_FUNCTIONS and callable(obj)
        )
        return None if pure else f"{path} (a function reference: trusted=True only)"
    if not isinstance(obj, type):  # every other node names a class, never a function or an instance
        return f"{path} (not a class keel knows)"
    if loader == "ObjectNode":
        return None if _is_model_part(obj) else f"{path} (a type that is not part of a scikit-learn model)"
    if loader == "TreeNode":
        return None if path == "sklearn.tree._tree.Tree" else f"{path} (not a scikit-learn tree)"
    if loader == "LossNode":
        return (
            None
            if obj.__module__ in ("sklearn._loss._loss", "sklearn.linear_model._sgd_fast")
            else f"{path} (not a scikit-learn loss)"
        )
    if loader == "NdArrayNode":  # skops calls the class on the loaded array unless it is ndarray
        return None if obj is np.ndarray or issubclass(obj, np.generic) else f"{path} (not a numpy array type)"
    if loader == "TypeNode":
        return (
            None
            if path in _VALUE_TYPES or issubclass(obj, np.generic)
            else f"{path} (a class reference: trusted=True only)"
        )
    exact = {
        "MaskedArrayNode": np.ma.MaskedArray,
        "DTypeNode": np.dtype,
        "RandomStateNode": np.random.RandomState,
        "RandomGeneratorNode": np.random.Generator,
    }
    if loader in exact:
        return None if obj is exact[loader] else f"{path} (not a {exact[loader].__name__})"
    if loader == "SparseMatrixNode":
        import scipy.sparse as sp

        sparse = (sp.spmatrix,) + ((sp.sparray,) if hasattr(sp, "sparray") else ())
        return (
            None
            if issubclass(obj, sparse) and obj.__module__.startswith("scipy.sparse")
            else f"{path} (not a scipy sparse matrix)"
        )
    return f"{path} (stored as {loader}, which keel does not load untrusted)"


def _resolve(path: str) -> Any:
    """The object 'module.name' names, importing only modules of _PACKAGES (None if there is none)."""
    module, _, name = path.rpartition(".")
    if not module or module.split(".")[0] not in _PACKAGES or not name.isidentifier():
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except Exception:  # noqa: BLE001 - a missing or broken module: nothing to trust
        return None


def _is_model_part(cls: type) -> bool:
    if not cls.__module__.startswith(("sklearn.", "lightgbm.", "xgboost.")):
        return False  # a subclass of BaseEstimator in your own module is your code: trusted=True
    if f"{cls.__module__}.{cls.__qualname__}" in _MODEL_PARTS:
        return True
    bases = [b for b in (_resolve(p) for p in _MODEL_PART_BASES) if isinstance(b, type)]
    return issubclass(cls, tuple(bases))


def check_tree_arrays(model: Any) -> None:
    """Refuse trees whose node arrays would make scikit-learn read outside its arrays.

    scikit-learn indexes tree nodes and features without bounds checks (skops does not trust
    Tree or TreePredictor for this reason): a crafted file would crash the server at its first
    prediction. Every child must come after its parent and inside the tree, every split feature
    inside the input the estimator checked.
    """
    try:
        from sklearn.base import BaseEstimator
        from sklearn.tree._tree import Tree
    except ImportError:  # pragma: no cover
        return
    seen: set[int] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, np.ndarray) and obj.dtype == object:
            stack.extend(obj.flat)
        elif isinstance(obj, BaseEstimator):
            state = vars(obj)
            stack.extend(state.values())
            n_in = state.get("n_features_in_")
            tree = state.get("tree_")
            if isinstance(tree, Tree):
                _check_tree(tree, n_in)
            subs = state.get("estimators_")
            if n_in is not None and subs is not None:
                features = state.get("estimators_features_")
                for i, sub in enumerate(np.asarray(subs, dtype=object).ravel()):
                    if isinstance(getattr(sub, "tree_", None), Tree):  # fed the ensemble's X, unchecked
                        want = n_in if features is None else len(features[i])
                        if getattr(sub, "n_features_in_", None) != want:
                            raise InvalidModelError(
                                f"A tree of this {type(obj).__name__} expects another number of features than the ensemble"
                            )
            for predictors in state.get("_predictors") or ():
                for predictor in predictors:
                    _check_predictor(predictor, n_in, state.get("_bin_mapper"))


def _check_tree(tree: Any, n_features: Any) -> None:
    count = int(tree.node_count)
    if not 0 < count <= int(tree.capacity) or (n_features is not None and int(tree.n_features) != int(n_features)):
        raise InvalidModelError(
            "A decision tree in this model has inconsistent sizes (node count, capacity or features)"
        )
    left = tree.children_left  # read only once the count is known to fit the arrays
    _check_nodes("decision tree", left != -1, left, tree.children_right, tree.feature, int(tree.n_features))


def _check_predictor(predictor: Any, n_features: Any, bin_mapper: Any) -> None:
    """A HistGradientBoosting tree: nodes as in _check_nodes, categorical splits inside the bitsets."""
    what = "histogram gradient-boosting tree"
    if n_features is None:
        raise InvalidModelError(f"A {what} in this model belongs to an estimator without n_features_in_")
    try:
        nodes = predictor.nodes
        inner = ~nodes["is_leaf"].astype(bool)
        categorical = nodes["is_categorical"].astype(bool) & inner
        bitset_idx, feature = nodes["bitset_idx"][categorical], nodes["feature_idx"][categorical]
        bitsets = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
        known = getattr(bin_mapper, "is_categorical_", None)
        known = np.zeros(int(n_features), dtype=bool) if known is None else np.asarray(known, dtype=bool)
        ok = len(known) == int(n_features) and bool(np.all(bitset_idx < bitsets))
        ok = ok and bool(np.all(feature < len(known))) and bool(np.all(known[feature[feature < len(known)]]))
        arrays = (nodes["left"], nodes["right"], nodes["feature_idx"])
    except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise InvalidModelError(f"A {what} in this model is malformed: {exc}") from None
    if not ok:
        raise InvalidModelError(f"A {what} in this model has categorical splits outside its bitsets")
    _check_nodes(what, inner, *arrays, int(n_features))


def _check_nodes(what: str, inner: np.ndarray, left: Any, right: Any, feature: Any, n_features: int) -> None:
    """Every split node's children come after it and inside the tree; its feature is inside the input."""
    n = len(inner)
    idx = np.arange(n)[inner]
    left, right, feature = (np.asarray(a)[inner].astype(np.int64) for a in (left, right, feature))
    ok = bool(np.all((left > idx) & (left < n) & (right > idx) & (right < n))) and bool(
        np.all((feature >= 0) & (feature < n_features))
    )
    if not ok:
        raise InvalidModelError(
            f"A {what} in this model points outside its nodes or features; it was not saved by scikit-learn"
        )
