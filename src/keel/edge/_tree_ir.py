"""The common form of a fitted tree ensemble (`Ensemble`), read out of scikit-learn, LightGBM and
XGBoost models, and a float64 reference evaluator over it (the tests and the base-score probe use it).

Every tree is flat arrays in the model's own node order: `feature` (-1 at a leaf), `threshold`
(float64, as the library stores it), `left` / `right` child indices, and `value` (a leaf's class
counts for a forest classifier, its single value otherwise). How the library compares a feature
with a threshold is the ensemble's `rule`, because the C generator must emit the float32 threshold
that reproduces exactly that comparison:

- "sklearn": `float64(float32(x)) <= t` (scikit-learn casts X to float32, keeps float64 thresholds);
- "lightgbm": `x <= t` in float64 (exact for the C build when x is representable in float32);
- "xgboost": `float32(x) < float32(t)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from keel.errors import InvalidModelError, NotFittedError

__all__ = ["Ensemble", "Tree", "extract_ensemble", "go_left", "reference_scores"]

Rule = Literal["sklearn", "lightgbm", "xgboost"]
Aggregate = Literal["votes", "mean", "sum"]

_FORESTS = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
)
_SUPPORTED = (
    *_FORESTS,
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
    "LGBMClassifier",
    "LGBMRegressor",
    "Booster",
    "XGBClassifier",
    "XGBRegressor",
    "a keel LightGBM model (an object with a LightGBM `.booster`)",
)


@dataclass(frozen=True)
class Tree:
    feature: np.ndarray  # int64 (n_nodes,), -1 at a leaf
    threshold: np.ndarray  # float64 (n_nodes,)
    left: np.ndarray  # int64 (n_nodes,), -1 at a leaf
    right: np.ndarray
    value: np.ndarray  # float64 (n_nodes, n_classes) for "votes", (n_nodes, 1) otherwise


@dataclass(frozen=True)
class Ensemble:
    """A fitted tree ensemble in one form: what the C generator needs and nothing of the library."""

    trees: tuple[Tree, ...]
    kind: Literal["classifier", "regressor"]
    rule: Rule
    aggregate: Aggregate  # votes: mean of normalised leaf counts; mean: mean value; sum: base + sum
    n_features: int
    n_outputs: int  # classes for votes, margins (1 for binary) for sum, 1 for a regressor
    base: tuple[float, ...]  # the raw margin every "sum" starts from (prior, base_score, init)
    classes: tuple[Any, ...] | None
    source: str  # the model's class name, for notes

    @property
    def n_nodes(self) -> int:
        return sum(len(t.feature) for t in self.trees)


def extract_ensemble(model: Any) -> Ensemble:
    """Read a fitted model into an `Ensemble`; unfitted or unsupported models raise a clear error."""
    name = type(model).__name__
    if hasattr(model, "booster") and _is_lgb_booster(model.booster):
        # keel.registry's LightGBM wrapper (duck-typed: keel.edge never imports the registry).
        return _from_lightgbm(model.booster, getattr(model, "classes_", None), name)
    if name in _FORESTS or name.startswith("GradientBoosting"):
        _check_fitted(model, "estimators_" if "Forest" in name or "Trees" in name else "n_features_in_")
        if name.startswith("GradientBoosting"):
            return _from_sklearn_gb(model)
        return _from_sklearn_forest(model)
    if name in ("LGBMClassifier", "LGBMRegressor"):
        _check_fitted(model, "booster_")
        return _from_lightgbm(model.booster_, getattr(model, "classes_", None), name)
    if _is_lgb_booster(model):
        return _from_lightgbm(model, None, name)
    if name in ("XGBClassifier", "XGBRegressor"):
        _check_fitted(model, "n_features_in_")
        return _from_xgboost(model)
    raise InvalidModelError(f"cannot compile a {name} to C as a tree ensemble; supported: {', '.join(_SUPPORTED)}")


def _check_fitted(model: Any, attr: str) -> None:
    try:
        getattr(model, attr)
    except Exception as exc:  # sklearn raises NotFittedError, LightGBM/XGBoost their own errors
        raise NotFittedError(f"{type(model).__name__} is not fitted: call fit() before compiling it to C") from exc


def _is_lgb_booster(obj: Any) -> bool:
    return type(obj).__name__ == "Booster" and type(obj).__module__.startswith("lightgbm")


def _sk_tree(est: Any, votes: bool, scale: float = 1.0) -> Tree:
    t = est.tree_
    if t.n_outputs != 1:
        raise InvalidModelError("multi-output trees cannot be compiled to C; fit one model per target")
    leaf = t.children_left == -1
    if votes:
        # scikit-learn >= 1.4 stores class fractions; back to (weighted) counts so that the C code
        # divides exactly as predict_proba normalises.
        value = t.value[:, 0, :] * t.weighted_n_node_samples[:, None]
    else:
        value = t.value[:, 0, :1] * scale
    feature = np.where(leaf, -1, t.feature).astype(np.int64)
    return Tree(feature, t.threshold.astype(np.float64), t.children_left.astype(np.int64),
                t.children_right.astype(np.int64), value.astype(np.float64))  # fmt: skip


def _from_sklearn_forest(model: Any) -> Ensemble:
    estimators = getattr(model, "estimators_", [model])
    classifier = hasattr(model, "classes_")
    if classifier and isinstance(model.classes_, list):
        raise InvalidModelError("multi-output classifiers cannot be compiled to C")
    trees = tuple(_sk_tree(e, votes=classifier) for e in estimators)
    n_out = len(model.classes_) if classifier else 1
    return Ensemble(
        trees=trees,
        kind="classifier" if classifier else "regressor",
        rule="sklearn",
        aggregate="votes" if classifier else "mean",
        n_features=int(model.n_features_in_),
        n_outputs=n_out,
        base=(0.0,) * n_out,
        classes=tuple(model.classes_.tolist()) if classifier else None,
        source=type(model).__name__,
    )


def _from_sklearn_gb(model: Any) -> Ensemble:
    init = model.init_
    if not (isinstance(init, str) and init == "zero") and not type(init).__name__.startswith("Dummy"):
        raise InvalidModelError(
            f"GradientBoosting with init={type(init).__name__} gives a per-row start value; only the "
            "default prior (or init='zero') can be compiled to C"
        )
    lr = float(model.learning_rate)
    stages = model.estimators_  # (n_stages, K)
    trees = tuple(_sk_tree(stages[i, k], votes=False, scale=lr) for i in range(stages.shape[0])
                  for k in range(stages.shape[1]))  # fmt: skip
    classifier = hasattr(model, "classes_")
    ens = Ensemble(
        trees=trees,
        kind="classifier" if classifier else "regressor",
        rule="sklearn",
        aggregate="sum",
        n_features=int(model.n_features_in_),
        n_outputs=int(stages.shape[1]),
        base=(0.0,) * int(stages.shape[1]),
        classes=tuple(model.classes_.tolist()) if classifier else None,
        source=type(model).__name__,
    )
    fn = model.decision_function if classifier else model.predict
    return _with_probed_base(ens, fn, model)


def _with_probed_base(ens: Ensemble, raw: Any, model: Any = None) -> Ensemble:
    """The start margin, read as the model's raw output at a zero row minus the trees' sum there:
    one rule for scikit-learn priors, XGBoost's base_score (logit or not) and LightGBM (zero)."""
    zero = np.zeros((1, ens.n_features))
    probe: Any = zero
    names = getattr(model, "feature_names_in_", None)
    if names is not None:  # a model fitted on a DataFrame warns when it scores a bare array
        import pandas as pd

        probe = pd.DataFrame(zero, columns=list(names))
    model_raw = np.asarray(raw(probe), dtype=np.float64).reshape(-1)
    trees_raw = reference_scores(ens, zero.astype(np.float32))[0]
    base = tuple(float(v) for v in model_raw - trees_raw)
    return Ensemble(**{**ens.__dict__, "base": base})


def _from_lightgbm(booster: Any, classes: Any, source: str) -> Ensemble:
    dump = booster.dump_model()
    k = int(dump["num_tree_per_iteration"])
    objective = str(dump.get("objective", ""))
    if dump.get("average_output"):
        raise InvalidModelError("LightGBM random-forest mode (average_output) is not supported in C")
    classifier = objective.startswith(("binary", "multiclass"))
    if not classifier and not objective.startswith(("regression", "huber", "fair", "quantile")):
        raise InvalidModelError(f"LightGBM objective {objective!r} cannot be compiled to C")
    trees = tuple(_lgb_tree(info["tree_structure"]) for info in dump["tree_info"])
    if classes is None and classifier:
        classes = list(range(max(k, 2)))
    ens = Ensemble(
        trees=trees,
        kind="classifier" if classifier else "regressor",
        rule="lightgbm",
        aggregate="sum",
        n_features=int(dump["max_feature_idx"]) + 1,
        n_outputs=k,
        base=(0.0,) * k,
        classes=tuple(np.asarray(classes).tolist()) if classifier else None,
        source=source,
    )
    return _with_probed_base(ens, lambda x: booster.predict(x, raw_score=True))


def _lgb_tree(root: dict[str, Any]) -> Tree:
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    value: list[float] = []

    def visit(node: dict[str, Any]) -> int:
        i = len(feature)
        feature.append(-1)
        threshold.append(0.0)
        left.append(-1)
        right.append(-1)
        value.append(float(node.get("leaf_value", 0.0)))
        if "split_feature" in node:
            if node["decision_type"] != "<=" or node.get("missing_type") == "Zero":
                raise InvalidModelError(
                    "LightGBM categorical splits and zero_as_missing cannot be compiled to C; "
                    "refit with numerical features and zero_as_missing=False"
                )
            feature[i] = int(node["split_feature"])
            threshold[i] = float(node["threshold"])
            left[i] = visit(node["left_child"])
            right[i] = visit(node["right_child"])
        return i

    visit(root)
    return Tree(np.array(feature), np.array(threshold), np.array(left), np.array(right),
                np.array(value)[:, None])  # fmt: skip


def _from_xgboost(model: Any) -> Ensemble:
    booster = model.get_booster()
    learner = json.loads(booster.save_raw("json"))["learner"]
    objective = learner["objective"]["name"]
    supported = ("binary:logistic", "multi:softprob", "multi:softmax", "reg:squarederror")
    if objective not in supported:
        raise InvalidModelError(f"XGBoost objective {objective!r} cannot be compiled to C; supported: {supported}")
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise InvalidModelError(f"XGBoost booster {gb.get('name')!r} cannot be compiled to C; use gbtree")
    raw_trees = gb["model"]["trees"]
    k = max(int(learner["learner_model_param"]["num_class"]), 1)
    info = gb["model"]["tree_info"]
    if any(int(c) != i % k for i, c in enumerate(info)):
        raise InvalidModelError("XGBoost trees are not in round-robin class order; cannot compile")
    trees = tuple(_xgb_tree(t) for t in raw_trees)
    classifier = objective.startswith(("binary", "multi"))
    ens = Ensemble(
        trees=trees,
        kind="classifier" if classifier else "regressor",
        rule="xgboost",
        aggregate="sum",
        n_features=int(model.n_features_in_),
        n_outputs=k,
        base=(0.0,) * k,
        classes=tuple(np.asarray(model.classes_).tolist()) if classifier else None,
        source=type(model).__name__,
    )
    return _with_probed_base(ens, lambda x: model.predict(x, output_margin=True), model)


def _xgb_tree(t: dict[str, Any]) -> Tree:
    left = np.asarray(t["left_children"], dtype=np.int64)
    if any(int(s) != 0 for s in t["split_type"]):
        raise InvalidModelError("XGBoost categorical splits cannot be compiled to C")
    cond = np.asarray(t["split_conditions"], dtype=np.float32).astype(np.float64)
    leaf = left == -1
    feature = np.where(leaf, -1, np.asarray(t["split_indices"], dtype=np.int64))
    return Tree(feature, np.where(leaf, 0.0, cond), left, np.asarray(t["right_children"], dtype=np.int64),
                np.where(leaf, cond, 0.0)[:, None])  # fmt: skip


def go_left(rule: Rule, x: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """The library's own comparison, for x given as the float64 values the caller holds."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if rule == "sklearn":
        return np.asarray(x.astype(np.float32).astype(np.float64) <= t)
    if rule == "lightgbm":
        return np.asarray(x <= t)
    return np.asarray(x.astype(np.float32) < t.astype(np.float32))


def _leaves(tree: Tree, rule: Rule, X: np.ndarray) -> np.ndarray:
    node = np.zeros(len(X), dtype=np.int64)
    for _ in range(len(tree.feature)):
        f = tree.feature[node]
        inner = f >= 0
        if not inner.any():
            break
        rows = np.flatnonzero(inner)
        lf = go_left(rule, X[rows, f[rows]], tree.threshold[node[rows]])
        node[rows] = np.where(lf, tree.left[node[rows]], tree.right[node[rows]])
    return node


def reference_scores(ens: Ensemble, X: np.ndarray) -> np.ndarray:
    """Float64 scores of the ensemble as the generated C defines them (probabilities for votes,
    the mean for forests' regressors, raw margins for boosting)."""
    X = np.asarray(X, dtype=np.float64)
    out: np.ndarray = np.zeros((len(X), ens.n_outputs)) + np.asarray(ens.base)[None, :]
    for i, tree in enumerate(ens.trees):
        v = tree.value[_leaves(tree, ens.rule, X)]
        if ens.aggregate == "votes":
            out += v / v.sum(axis=1, keepdims=True)
        elif ens.aggregate == "mean":
            out += v
        else:
            out[:, i % ens.n_outputs] += v[:, 0]
    if ens.aggregate != "sum":
        out /= len(ens.trees)
    return out
