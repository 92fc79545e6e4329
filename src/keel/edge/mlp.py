"""Small multilayer perceptrons to C99, float32 or int8.

Accepted: scikit-learn `MLPClassifier` / `MLPRegressor` (alone or after StandardScaler /
MinMaxScaler / MaxAbsScaler steps of a Pipeline, folded into the first layer), and a `DenseStack`
built by `mlp_from_layers` (a list of `(weight, bias)` arrays in PyTorch's `nn.Linear` layout) or
`mlp_from_sequential` (a duck-typed PyTorch `nn.Sequential` of Linear + ReLU; torch is not imported),
and a real `torch.nn.Sequential` (`mlp_from_torch`, also taken directly by `mlp_to_c`; see
`keel.edge._torch` for the layers accepted, skipped, folded and refused).

- float32: plain loops over `const float` tables; hidden activations relu, identity, tanh or
  logistic (the last two call libm's tanhf / expf).
- int8 (relu only): see `keel.edge._int8`: symmetric int8 weights (per output channel for hidden
  layers, per tensor for the last so its int32 logits compare directly), int8 activations whose
  scales are calibrated on `calibration` rows (the version's training data), int32 accumulation,
  and a fixed-point requantisation (int32 multiplier + shift, as in gemmlowp / TFLite). The class
  is the argmax of the int32 logits, without expf. `NAME_predict` quantises its float input;
  `NAME_predict_int(const int8_t *, float *)` takes `round(feature * input_scale[i])` directly.

Scores are probabilities (softmax, or [1-p, p] for two classes; libm expf) unless
`probabilities=False`, which gives the logits and needs no libm; a regressor's scores are its outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from keel.edge._affine import Unwrapped, fold_first, unwrap
from keel.edge._carray import EXPF_BYTES, check_features, check_flash, check_name, float_table, head_c, header
from keel.edge._int8 import int8_model, plan_int8, quantize_input, run_int8
from keel.edge._torch import is_torch_sequential, read_sequential
from keel.edge.source import CModel, Quantize
from keel.errors import InvalidInputError, NotFittedError

__all__ = ["DenseStack", "int8_logits", "mlp_from_layers", "mlp_from_sequential", "mlp_from_torch", "mlp_to_c"]

_ACTIVATIONS = {
    "relu": "acc > 0.0f ? acc : 0.0f",
    "identity": "acc",
    "tanh": "tanhf(acc)",
    "logistic": "1.0f / (1.0f + expf(-acc))",
}
_FLOAT_CODE_ALLOWANCE = 300  # bytes of Cortex-M4 code for the loops and head (measured: 192 B for 64-32-10)


@dataclass(frozen=True, eq=False)  # arrays inside: identity, not element-wise, equality
class DenseStack:
    """A plain MLP: `h = act(h @ weights[l] + biases[l])`, the last layer without `activation`.

    weights[l] is shaped (n_in, n_out) as scikit-learn's `coefs_`; `out_activation` is 'softmax'
    (several classes), 'logistic' (two classes, one output) or 'identity' (a regressor).
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activation: str = "relu"
    out_activation: str = "identity"
    classes: tuple[Any, ...] | None = None

    def forward(self, X: np.ndarray) -> np.ndarray:
        """The last layer's pre-activation outputs (logits), float64, shaped (rows, n_out)."""
        h = np.asarray(X, dtype=np.float64)
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if layer < len(self.weights) - 1:
                h = _np_activation(self.activation, h)
        return h


def _np_activation(kind: str, h: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return np.asarray(np.maximum(h, 0.0))
    if kind == "tanh":
        return np.asarray(np.tanh(h))
    if kind == "logistic":
        return np.asarray(1.0 / (1.0 + np.exp(-h)))
    return h


def mlp_from_layers(
    layers: Sequence[tuple[Any, Any]], activation: str = "relu", classes: Sequence[Any] | None = None
) -> DenseStack:
    """A DenseStack from `(weight, bias)` pairs in PyTorch's layout: weight (n_out, n_in), bias (n_out,).

    `classes`: labels of a classifier's outputs (softmax over them; with two labels and one output,
    a sigmoid), None for a regressor. `activation` sits between layers, never after the last.
    """
    if activation not in _ACTIVATIONS:
        raise InvalidInputError(f"activation {activation!r} is not supported: use one of {', '.join(_ACTIVATIONS)}")
    if not layers:
        raise InvalidInputError("mlp_from_layers needs at least one (weight, bias) pair")
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for k, (w, b) in enumerate(layers):
        w2 = np.asarray(w, dtype=np.float64)
        b1 = np.asarray(b, dtype=np.float64).ravel()
        if w2.ndim != 2 or b1.shape[0] != w2.shape[0] or (weights and weights[-1].shape[1] != w2.shape[1]):
            raise InvalidInputError(
                f"layer {k}: weight {w2.shape} and bias {b1.shape} do not chain: each weight must be "
                "(n_out, n_in) as nn.Linear.weight, with n_in equal to the previous layer's n_out"
            )
        weights.append(w2.T.copy())
        biases.append(b1)
    n_out = weights[-1].shape[1]
    labels = None if classes is None else tuple(classes)
    if labels is None:
        out = "identity"
    elif len(labels) == n_out and n_out > 1:
        out = "softmax"
    elif len(labels) == 2 and n_out == 1:
        out = "logistic"
    else:
        raise InvalidInputError(
            f"{len(labels)} classes do not fit {n_out} outputs: give one label per output (or 2 for one output)"
        )
    return DenseStack(tuple(weights), tuple(biases), activation, out, labels)


def mlp_from_sequential(seq: Any, classes: Sequence[Any] | None = None) -> DenseStack:
    """A DenseStack from a PyTorch `nn.Sequential` of Linear and ReLU modules, read by duck typing.

    Each module is recognised by its class name ('Linear', 'ReLU'); Linear's `weight` and `bias`
    may be tensors (read through `.detach().cpu().numpy()`) or arrays. Anything else is refused.
    """
    layers: list[tuple[Any, Any]] = []
    relu_after: list[bool] = []
    for k, module in enumerate(seq):
        kind = type(module).__name__
        if kind == "Linear":
            layers.append((_array(module.weight), _array(module.bias)))
            relu_after.append(False)
        elif kind == "ReLU" and layers and not relu_after[-1]:
            relu_after[-1] = True
        else:
            raise InvalidInputError(
                f"module {k} ({kind}) of the Sequential is not supported: only Linear layers, each "
                "hidden one followed by one ReLU, and no activation after the last Linear"
            )
    if not layers or relu_after[-1] or not all(relu_after[:-1]):
        raise InvalidInputError("the Sequential must alternate Linear and ReLU and end with a Linear")
    return mlp_from_layers(layers, "relu", classes)


def mlp_from_torch(model: Any, classes: Sequence[Any] | None = None) -> DenseStack:
    """A DenseStack from a real `torch.nn.Sequential` (torch imported here only), weights read as float32.

    Classifier or regressor: `classes` (labels in output order) makes it a classifier; when None,
    the module's own `classes` attribute is used (set `model.classes = [...]` before building:
    `compile_model` and `ws.edge.build` pass no labels). Without labels it is a regressor, which
    must end with its last Linear: a final Softmax / Sigmoid without labels is refused. Softmax
    needs one output per label; Sigmoid one output and two labels. The C head recomputes the final
    Softmax / Sigmoid (a Sequential without one still gets softmax probabilities as scores when it
    has labels: the class, the argmax of the logits, is the same).
    """
    read = read_sequential(model)
    labels = classes if classes is not None else getattr(model, "classes", None)
    n_out = read.layers[-1][0].shape[0]
    if labels is None:
        if read.out != "none":
            raise InvalidInputError(
                f"the Sequential ends with a {read.out.capitalize()}, a classifier head, but has no class labels: "
                "pass classes=[...] or set model.classes = [...] (one label per output; two for one sigmoid output)"
            )
        return mlp_from_layers(read.layers, "relu", None)
    labels = [c.item() if hasattr(c, "item") else c for c in labels]  # tensors / numpy scalars to plain values
    if read.out == "sigmoid" and n_out != 1:
        raise InvalidInputError(
            f"a final Sigmoid over {n_out} outputs is multilabel, which keel.edge does not build; "
            "use one output with Sigmoid (two classes) or Softmax over one output per class"
        )
    if read.out == "softmax" and n_out < 2:
        raise InvalidInputError("a final Softmax over one output is constant; use Sigmoid for two classes")
    return mlp_from_layers(read.layers, "relu", labels)


def _array(tensor: Any) -> np.ndarray:
    if tensor is None:
        raise InvalidInputError("a Linear layer without bias is not supported; use bias=True")
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor, dtype=np.float64)


def mlp_to_c(
    model: Any,
    name: str,
    *,
    feature_names: Sequence[str],
    quantize: Quantize = "float32",
    calibration: Any = None,
    probabilities: bool = True,
    input_scales: Literal["tensor", "feature"] = "feature",
    per_channel: bool = True,
    max_flash_bytes: int | None = None,
) -> CModel:
    """C99 source of a fitted MLP; see the module docstring. `calibration` (rows of raw features, as
    the model takes them) is required for int8; `input_scales` chooses one input scale per feature
    (the default: safe when features differ in range) or one for all ('tensor': 4 bytes instead of
    4 per feature, for features that share a range, e.g. pixels);
    `per_channel` one int8 scale per hidden unit (more exact) or one per hidden layer (smaller: no
    multiplier tables)."""
    check_name(name)
    stack, u = _stack_of(model)
    stack = _folded(stack, u)
    n_in = stack.weights[0].shape[0]
    features = check_features(feature_names, n_in, "MLP")
    head = _head(stack, probabilities)
    shape = " -> ".join(str(w.shape[0]) for w in stack.weights) + f" -> {stack.weights[-1].shape[1]}"
    notes = [f"MLP {shape}, hidden activation {stack.activation}, {quantize}"]
    if u.steps:
        notes.append("scalers folded into the first layer (no scaling in C): " + ", ".join(u.steps))
    notes.append(_HEAD_NOTES[head])
    if quantize == "int8":
        X = _calibration_rows(calibration, n_in)
        return int8_model(name, stack, head, X, input_scales, per_channel, features, tuple(notes), max_flash_bytes)
    if quantize != "float32":
        raise InvalidInputError(f"quantize={quantize!r} is not available for MLPs: use 'float32' or 'int8'")
    n_params = sum(w.size + b.size for w, b in zip(stack.weights, stack.biases, strict=True))
    libm = head in ("sigmoid", "softmax") or stack.activation in ("tanh", "logistic")
    estimate = 4 * n_params + _FLOAT_CODE_ALLOWANCE + (EXPF_BYTES if libm else 0)
    check_flash(estimate, max_flash_bytes, f"float MLP {name!r}")
    return CModel(
        name=name,
        files={
            f"{name}.h": header(name, f"{name}: MLP {shape}, float32."),
            f"{name}.c": _float_source(name, stack, head),
        },
        kind="regressor" if stack.classes is None else "classifier",
        feature_names=features,
        n_outputs=2 if head == "sigmoid" else stack.weights[-1].shape[1],
        classes=stack.classes,
        quantize="float32",
        notes=tuple(notes),
        details={"weight_bytes": 4 * n_params, "flash_estimate": estimate, "layers": shape, "head": head},
    )


def int8_logits(
    model: Any,
    X: Any,
    *,
    calibration: Any,
    input_scales: Literal["tensor", "feature"] = "feature",
    per_channel: bool = True,
) -> tuple[np.ndarray, float]:
    """The int32 logits the int8 C build computes for float rows X, bit for bit (numpy, no compiler),
    and their scale (real logit = int logit * scale); the class is their argmax (sign for one output)."""
    stack, u = _stack_of(model)
    stack = _folded(stack, u)
    n_in = stack.weights[0].shape[0]
    plan = plan_int8(stack, _calibration_rows(calibration, n_in), input_scales == "feature", per_channel)
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != n_in:
        raise InvalidInputError(f"X must be 2-D with {n_in} columns; got shape {rows.shape}")
    return run_int8(plan, quantize_input(plan, rows)), plan.out_scale


_HEAD_NOTES = {
    "value": "scores: the predicted value(s); returns 0",
    "decision": "scores: the logits (probabilities=False, no libm); class = argmax (sign for one output)",
    "sigmoid": "scores: [1-p, p] with p = 1/(1+expf(-logit)) (libm expf); class = logit > 0, without expf",
    "softmax": "scores: softmax probabilities (libm expf); class = argmax of the logits, without expf",
}


def _stack_of(model: Any) -> tuple[DenseStack, Unwrapped]:
    u = unwrap(model)
    est = u.estimator
    if isinstance(est, DenseStack):
        return est, u
    if is_torch_sequential(est):
        return mlp_from_torch(est), u
    kind = type(est).__name__
    if kind not in ("MLPClassifier", "MLPRegressor"):
        raise InvalidInputError(
            f"{kind} is not an MLP keel.edge can write as C: use MLPClassifier, MLPRegressor, or "
            "mlp_from_layers / mlp_from_sequential for other networks"
        )
    if not hasattr(est, "coefs_"):
        raise NotFittedError(f"{kind} is not fitted; call fit() before converting it to C")
    out = est.out_activation_
    classes = tuple(np.asarray(est.classes_).tolist()) if kind == "MLPClassifier" else None
    if classes is not None and out == "logistic" and len(classes) != 2:
        raise InvalidInputError("a multilabel MLPClassifier (several logistic outputs) is not supported")
    weights = tuple(np.asarray(w, dtype=np.float64) for w in est.coefs_)
    biases = tuple(np.asarray(b, dtype=np.float64) for b in est.intercepts_)
    return DenseStack(weights, biases, est.activation, out, classes), u


def _folded(stack: DenseStack, u: Unwrapped) -> DenseStack:
    if stack.activation not in _ACTIVATIONS:
        raise InvalidInputError(
            f"activation {stack.activation!r} is not supported: use one of {', '.join(_ACTIVATIONS)}"
        )
    w0, b0 = fold_first(stack.weights[0], stack.biases[0], u)
    return DenseStack(
        (w0, *stack.weights[1:]), (b0, *stack.biases[1:]), stack.activation, stack.out_activation, stack.classes
    )


def _head(stack: DenseStack, probabilities: bool) -> str:
    if stack.classes is None:
        return "value"
    if not probabilities:
        return "decision"
    return "sigmoid" if stack.out_activation == "logistic" else "softmax"


def _calibration_rows(calibration: Any, n_in: int) -> np.ndarray:
    if calibration is None:
        raise InvalidInputError(
            "quantize='int8' needs calibration=X: rows of the training data, as the model takes them"
        )
    X = np.asarray(calibration, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_in or X.shape[0] == 0 or not np.isfinite(X).all():
        raise InvalidInputError(
            f"calibration must be a non-empty, finite 2-D array with {n_in} columns; got shape {X.shape}"
        )
    return X


def _float_source(name: str, stack: DenseStack, head: str) -> str:
    widths = [w.shape[1] for w in stack.weights]
    parts = [f'#include "{name}.h"\n']
    if head in ("sigmoid", "softmax") or stack.activation in ("tanh", "logistic"):
        parts.append("#include <math.h> /* expf / tanhf: probabilities and smooth activations only */\n")
    parts.append(f"#define N_OUT {widths[-1]}\n")
    for k, (w, b) in enumerate(zip(stack.weights, stack.biases, strict=True)):
        parts.append(f"/* layer {k}: weights[j][i], output j, input i */\n")
        parts += [float_table(f"{name}_w{k}", w.T), float_table(f"{name}_b{k}", b)]
    parts.append(f"\nint {name}_predict(const float *features, float *scores)\n{{\n")
    parts.append(f"    float h[2][{max(widths)}], z[N_OUT];\n    int i, j, best = 0;\n")
    src = "features"
    for k, w in enumerate(stack.weights):
        last = k == len(stack.weights) - 1
        dst = "z" if last else f"h[{k % 2}]"
        act = "acc" if last else _ACTIVATIONS[stack.activation]
        parts += [
            f"    for (j = 0; j < {w.shape[1]}; ++j) {{\n        float acc = {name}_b{k}[j];\n",
            f"        for (i = 0; i < {w.shape[0]}; ++i) acc += {name}_w{k}[j * {w.shape[0]} + i] * {src}[i];\n",
            f"        {dst}[j] = {act};\n    }}\n",
        ]
        src = dst
    parts += [head_c(head, widths[-1]), "}\n"]
    return "".join(parts)
