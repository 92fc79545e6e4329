"""A real PyTorch `nn.Sequential` read into plain float32 arrays, for `keel.edge.mlp` to build a DenseStack.

torch is imported only inside `read_sequential` (never at `import keel.edge`): recognising a Sequential
(`is_torch_sequential`) only looks at its class's MRO, so a model kind check never loads torch.

Accepted, module by module (index k as `list(model)` numbers them):
- `Flatten()` (start_dim=1, end_dim=-1) before the first Linear: a no-op on (rows, features) input;
- `Linear` (bias or not: a missing bias is zeros), each hidden one followed by one `ReLU`;
- `BatchNorm1d` right after a Linear, in eval mode with running statistics: FOLDED into that Linear
  (W * g / sqrt(var + eps), (b - mean) * g / sqrt(var + eps) + beta); anywhere else, or in train mode, refused;
- `Dropout` and `Identity`: skipped, Dropout only in eval mode (in train mode it drops units at random,
  so the C code could not agree with the module's forward pass: call `model.eval()` first);
- a final `Softmax(dim=1 or -1)` or `Sigmoid` (classifier heads; the C head recomputes them).
Anything else (Conv, LogSoftmax, Tanh, nested containers, ...) is refused, naming the module and index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from keel._optional import require
from keel.errors import InvalidInputError

OutActivation = Literal["none", "softmax", "sigmoid"]

_SUPPORTED = (
    "Flatten (first), Linear, ReLU after each hidden Linear, BatchNorm1d right after a Linear (eval, folded), "
    "Dropout / Identity (eval, skipped), and a final Softmax or Sigmoid"
)


@dataclass(frozen=True, eq=False)  # arrays inside: identity, not element-wise, equality
class TorchLayers:
    """The Linear layers of a Sequential in nn.Linear's layout (weight (n_out, n_in), bias (n_out,)),
    float32 values held as float64, and its output activation."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    out: OutActivation
    notes: tuple[str, ...]  # modules skipped or folded, in words


def is_torch_sequential(model: Any) -> bool:
    """True for a `torch.nn.Sequential` (or a subclass), without importing torch."""
    return any(c.__name__ == "Sequential" and c.__module__.startswith("torch.nn") for c in type(model).__mro__)


def _refuse(k: int, module: Any, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"module {k} ({type(module).__name__}) of the Sequential: {why}; keel.edge takes {_SUPPORTED}"
    )


def _np(tensor: Any) -> np.ndarray:
    # float32 first: the C tables are float32, so the values the C code holds are exactly the module's.
    return np.asarray(tensor.detach().cpu().float().numpy(), dtype=np.float64)


def read_sequential(seq: Any) -> TorchLayers:
    """The Linear layers and output activation of `seq`; raises InvalidInputError for any other layer."""
    nn = require("torch", extra="rl", purpose="Building a PyTorch model to C").nn
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    relu_after: list[bool] = []
    notes: list[str] = []
    out: OutActivation = "none"
    for k, module in enumerate(seq):
        if out != "none" and not isinstance(module, nn.Identity):
            raise _refuse(k, module, "nothing may follow the output Softmax / Sigmoid")
        if isinstance(module, nn.Linear):
            if layers and not relu_after[-1]:
                raise _refuse(k, module, "two Linear layers need a ReLU between them")
            w = _np(module.weight)
            b = np.zeros(w.shape[0]) if module.bias is None else _np(module.bias)
            layers.append((w, b))
            relu_after.append(False)
        elif isinstance(module, nn.ReLU):
            if not layers or relu_after[-1]:
                raise _refuse(k, module, "a ReLU must follow a Linear layer")
            relu_after[-1] = True
        elif isinstance(module, nn.BatchNorm1d):
            layers[-1] = _fold_batchnorm(k, module, layers, relu_after)
            notes.append(f"module {k} (BatchNorm1d) folded into the Linear before it")
        elif isinstance(module, nn.Dropout | nn.Identity):
            if module.training and isinstance(module, nn.Dropout):
                raise _refuse(k, module, "Dropout in train mode drops units at random; call model.eval() first")
        elif isinstance(module, nn.Flatten):
            if layers or module.start_dim != 1 or module.end_dim != -1:
                raise _refuse(k, module, "Flatten is only a no-op as Flatten() before the first Linear")
        elif isinstance(module, nn.Softmax | nn.Sigmoid):
            if not layers or relu_after[-1]:
                raise _refuse(k, module, "the output activation must directly follow the last Linear")
            if isinstance(module, nn.Softmax) and module.dim not in (None, 1, -1):
                raise _refuse(
                    k, module, f"Softmax over dim={module.dim}; the C head normalises over the outputs (dim=1)"
                )
            out = "softmax" if isinstance(module, nn.Softmax) else "sigmoid"
        else:
            raise _refuse(k, module, "this layer is not supported")
    if not layers:
        raise InvalidInputError(f"the Sequential holds no Linear layer; keel.edge takes {_SUPPORTED}")
    if relu_after[-1]:
        raise InvalidInputError(
            "the Sequential ends with a ReLU after its last Linear: the output layer must be a Linear "
            "(optionally followed by Softmax or Sigmoid)"
        )
    return TorchLayers(tuple(layers), out, tuple(notes))


def _fold_batchnorm(
    k: int, bn: Any, layers: list[tuple[np.ndarray, np.ndarray]], relu_after: list[bool]
) -> tuple[np.ndarray, np.ndarray]:
    if not layers or relu_after[-1]:
        raise _refuse(k, bn, "BatchNorm1d is folded only when it directly follows a Linear (before its ReLU)")
    if bn.training or bn.running_mean is None:
        raise _refuse(
            k, bn, "BatchNorm1d in train mode (or without running stats) uses batch statistics; call model.eval()"
        )
    mean, var = _np(bn.running_mean), _np(bn.running_var)
    gamma = _np(bn.weight) if bn.weight is not None else np.ones_like(mean)
    beta = _np(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + float(bn.eps))
    w, b = layers[-1]
    # Folded in float64 and stored in float32: agreement with the module is close, not bit-exact.
    return w * scale[:, None], (b - mean) * scale + beta
