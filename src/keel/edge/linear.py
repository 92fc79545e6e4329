"""Linear and logistic models to C99: one `const float` weight table, one loop, no scaler code.

Accepted: LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor, LinearSVR (the value);
LogisticRegression (binary: sigmoid, multiclass: softmax, as scikit-learn's `predict_proba`);
LinearSVC, SGDClassifier, RidgeClassifier (their `decision_function`); and Pipelines of
StandardScaler / MinMaxScaler / MaxAbsScaler ending in one of those, the scalers folded into the
weights. The class is the argmax of the decision function (its sign for two classes), so it needs
no `expf`; only the probabilities of a LogisticRegression use `expf` (libm), and
`probabilities=False` drops them (scores are then the decision values and the C needs no libm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.edge._affine import fold_first, unwrap
from keel.edge._carray import EXPF_BYTES, check_features, check_flash, check_name, float_table, head_c, header
from keel.edge.source import CModel
from keel.errors import InvalidInputError, NotFittedError

__all__ = ["linear_to_c"]

_REGRESSORS = ("LinearRegression", "Ridge", "Lasso", "ElasticNet", "SGDRegressor", "LinearSVR")
_DECISION = ("LinearSVC", "SGDClassifier", "RidgeClassifier")
_CODE_ALLOWANCE = 200  # bytes of Cortex-M4 code for the loop and head (measured: 128 B, linked, -Os)


@dataclass(frozen=True)
class _Linear:
    weight: np.ndarray  # (n_in, n_out)
    bias: np.ndarray  # (n_out,)
    head: str  # 'value' | 'decision' | 'sigmoid' | 'softmax'
    classes: tuple[Any, ...] | None


def linear_to_c(
    model: Any,
    name: str,
    *,
    feature_names: Sequence[str],
    probabilities: bool = True,
    max_flash_bytes: int | None = None,
) -> CModel:
    """C99 source of a fitted linear model (or scaler pipeline ending in one); see the module docstring."""
    check_name(name)
    u = unwrap(model)
    lin = _extract(u.estimator, probabilities)
    weight, bias = fold_first(lin.weight, lin.bias, u)
    n_in, n_out = weight.shape
    features = check_features(feature_names, n_in, type(u.estimator).__name__)
    estimate = 4 * weight.size + 4 * bias.size + _CODE_ALLOWANCE + (EXPF_BYTES if lin.head in _EXPF else 0)
    check_flash(estimate, max_flash_bytes, f"linear model {name!r}")
    n_scores = 2 if lin.head == "sigmoid" else n_out
    notes = [f"{type(u.estimator).__name__}: {n_in} features, {n_out} weight rows, float32 weights"]
    if u.steps:
        notes.append("scalers folded into the weights (no scaling in C): " + ", ".join(u.steps))
    notes.append(_HEAD_NOTES[lin.head])
    return CModel(
        name=name,
        files={f"{name}.h": header(name, f"{name}: linear model."), f"{name}.c": _source(name, weight, bias, lin.head)},
        kind="regressor" if lin.classes is None else "classifier",
        feature_names=features,
        n_outputs=n_scores,
        classes=lin.classes,
        quantize="float32",
        notes=tuple(notes),
        details={"weight_bytes": 4 * (weight.size + bias.size), "flash_estimate": estimate, "head": lin.head},
    )


_EXPF = ("sigmoid", "softmax")
_HEAD_NOTES = {
    "value": "scores: the predicted value(s); returns 0",
    "decision": "scores: decision_function values (one for two classes); class = argmax (sign for two)",
    "sigmoid": "scores: [1-p, p] with p = 1/(1+expf(-d)) (libm expf); class = d > 0, computed without expf",
    "softmax": "scores: softmax probabilities (libm expf); class = argmax of the decision values, without expf",
}


def _extract(est: Any, probabilities: bool) -> _Linear:
    kind = type(est).__name__
    if kind not in _REGRESSORS + _DECISION + ("LogisticRegression",):
        raise InvalidInputError(
            f"{kind} is not a linear model keel.edge can write as C: use one of "
            f"{', '.join(_REGRESSORS + _DECISION + ('LogisticRegression',))} (or a Pipeline of scalers ending in one)"
        )
    if not hasattr(est, "coef_"):
        raise NotFittedError(f"{kind} is not fitted; call fit() before converting it to C")
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))  # (n_out, n_in)
    bias = np.broadcast_to(np.asarray(est.intercept_, dtype=np.float64), (coef.shape[0],)).copy()
    if kind in _REGRESSORS:
        return _Linear(coef.T, bias, "value", None)
    classes = tuple(np.asarray(est.classes_).tolist())
    if kind == "LogisticRegression" and probabilities:
        head = "sigmoid" if coef.shape[0] == 1 else "softmax"
    else:
        head = "decision"
    return _Linear(coef.T, bias, head, classes)


def _source(name: str, weight: np.ndarray, bias: np.ndarray, head: str) -> str:
    n_in, n_out = weight.shape
    parts = [f'#include "{name}.h"\n']
    if head in ("sigmoid", "softmax"):
        parts.append("#include <math.h> /* expf, for the probabilities only */\n")
    parts += [
        f"#define N_IN {n_in}\n#define N_OUT {n_out}\n",
        "/* weights[j][i]: output j, feature i (any scaler already folded in) */\n",
        float_table(f"{name}_w", weight.T),
        float_table(f"{name}_b", bias),
        f"\nint {name}_predict(const float *features, float *scores)\n{{\n",
        "    float z[N_OUT];\n    int i, j, best = 0;\n",
        "    for (j = 0; j < N_OUT; ++j) {\n",
        f"        float acc = {name}_b[j];\n",
        f"        for (i = 0; i < N_IN; ++i) acc += {name}_w[j * N_IN + i] * features[i];\n",
        "        z[j] = acc;\n    }\n",
        head_c(head, n_out),
        "}\n",
    ]
    return "".join(parts)
