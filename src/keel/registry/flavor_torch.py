"""The `torch` flavour: a PyTorch `nn.Sequential` of plain layers, saved as a layer list and safetensors.

Layers it saves (LAYERS in _torch_arch.py): Linear, ReLU, Tanh, Sigmoid, Softmax(dim=1 or -1),
Flatten(), Dropout, Identity, BatchNorm1d (with running statistics) and LayerNorm (over the
features). The artifact is that list as JSON (each layer's kind and constructor arguments, the
input width, and the labels of a `classes` attribute) plus the state_dict as safetensors: no pickle,
no torch.save, so it loads untrusted. Loading rebuilds the Sequential from the list, layer kind by
kind from a fixed table (nothing named in the file is imported), after checking every tensor's
name, dtype and shape against the layers. A network with any other layer is refused here: wrapped
in an object with predict(), it may be registered with flavor='pickle' (loading then needs trusted=True;
a bare nn.Module has no predict()).

Predictions run in eval mode under torch.no_grad(), in float32, on the signature's columns in
order. With `classes` (set `model.classes = [...]` before registering, as keel.edge reads it) the
model is a classifier: predict_proba is the module's own output where it ends with Softmax (or
Sigmoid over one output: [1-p, p]), else the softmax of its logits (sigmoid of one logit), and
predict is the label of highest probability. Without it, a regressor (one output: a 1-d array).
The flavour leaves torch's thread count as the process set it: torch.set_num_threads is
process-wide, so a model load must not change it under the server (keel's recipes set 1 thread).
torch is imported only when a torch model is saved or loaded, never at `import keel.registry`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from keel._optional import require
from keel.errors import InvalidInputError
from keel.registry._torch_arch import (
    LAYERS,
    Architecture,
    check_architecture,
    expected_tensors,
    read_artifact,
    write_artifact,
)
from keel.registry.flavor_base import BaseFlavor, RecordsForm

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TorchFlavor", "is_torch_module", "torch_classes"]


def _torch() -> Any:
    return require("torch", extra="rl", purpose="PyTorch models")


def is_torch_module(model: Any) -> bool:
    """True for any torch.nn.Module, found by its classes' names: torch is not imported to ask."""
    return any(c.__name__ == "Module" and c.__module__ == "torch.nn.modules.module" for c in type(model).__mro__)


def torch_classes(model: Any) -> tuple[Any, ...] | None:
    """The class labels a torch module names in its `classes` attribute, as plain values (None if none)."""
    labels = getattr(model, "classes", None) if is_torch_module(model) else None
    if labels is None:
        return None
    values = labels.tolist() if hasattr(labels, "tolist") else list(labels)  # a tensor or an array of labels
    return tuple(v.item() if hasattr(v, "item") else v for v in values)


@functools.cache
def _module_types() -> tuple[type, type]:
    """The loaded models' classes: nn.Sequential subclasses (keel.edge builds them as Sequentials) with
    scikit-learn's predict / predict_proba. Made on first use: defining them needs torch."""
    torch = _torch()

    class TorchSequential(torch.nn.Sequential):  # type: ignore[name-defined]
        """A loaded torch-flavour regressor: predict() gives the outputs (1-d for one output)."""

        head = "regression"
        n_features_in_ = 0

        def outputs(self, X: Any) -> np.ndarray:
            rows = np.ascontiguousarray(X, dtype=np.float32)
            if rows.ndim != 2 or rows.shape[1] != self.n_features_in_:
                raise InvalidInputError(f"the network takes {self.n_features_in_} features; got shape {rows.shape}")
            with torch.no_grad():
                return np.asarray(self(torch.from_numpy(rows)).numpy(), dtype=np.float64)

        def predict(self, X: Any) -> np.ndarray:
            out = self.outputs(X)
            return out[:, 0] if out.shape[1] == 1 else out

    class TorchSequentialClassifier(TorchSequential):
        """A loaded torch-flavour classifier: predict_proba() one column per label, predict() the labels."""

        classes_: np.ndarray

        def predict_proba(self, X: Any) -> np.ndarray:
            return _probabilities(self.outputs(X), self.head)

        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])

    for cls in (TorchSequential, TorchSequentialClassifier):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return TorchSequential, TorchSequentialClassifier


def _probabilities(out: np.ndarray, head: str) -> np.ndarray:
    if head == "softmax":
        return out
    if head in ("sigmoid", "logit"):
        p = out[:, 0] if head == "sigmoid" else 1.0 / (1.0 + np.exp(-out[:, 0]))
        return np.column_stack([1.0 - p, p])
    z = np.exp(out - out.max(axis=1, keepdims=True))  # logits: softmax, shifted so exp cannot overflow
    return np.asarray(z / z.sum(axis=1, keepdims=True))


def _layer_spec(nn: Any, k: int, module: Any) -> dict[str, Any]:
    """One layer as its kind and constructor arguments; InvalidInputError for a layer keel does not rebuild."""
    kind = type(module).__name__
    if kind not in LAYERS or type(module) is not getattr(nn, kind):  # a subclass may override forward()
        raise InvalidInputError(
            f"layer {k} of the Sequential is a {type(module).__module__}.{type(module).__qualname__}; the torch "
            f"flavour saves nn.Sequential of {', '.join(LAYERS)} only. Wrap this network in an object with "
            "predict() and register that with flavor='pickle' (loading it then needs trusted=True)."
        )
    spec: dict[str, Any] = {"kind": kind}
    if kind == "Linear":
        spec.update(in_features=module.in_features, out_features=module.out_features, bias=module.bias is not None)
    elif kind == "Softmax":
        spec["dim"] = module.dim
    elif kind == "Flatten" and (module.start_dim, module.end_dim) != (1, -1):
        raise InvalidInputError(f"layer {k} is Flatten({module.start_dim}, {module.end_dim}); only Flatten() is saved")
    elif kind == "Dropout":
        spec["p"] = float(module.p)
    elif kind == "BatchNorm1d":
        if not module.track_running_stats:
            raise InvalidInputError(
                f"layer {k} (BatchNorm1d) has no running statistics: it normalises by each batch, so a row's "
                "prediction would depend on the rows beside it"
            )
        spec.update(num_features=module.num_features, eps=float(module.eps), affine=bool(module.affine))
        spec["momentum"] = None if module.momentum is None else float(module.momentum)
    elif kind == "LayerNorm":
        affine = bool(module.elementwise_affine)
        spec.update(normalized_shape=list(module.normalized_shape), eps=float(module.eps), elementwise_affine=affine)
        spec["bias"] = affine and module.bias is not None
    return spec


def _architecture(model: Any) -> Architecture:
    nn = _torch().nn
    if type(model) is not nn.Sequential and type(model) not in _module_types():
        raise InvalidInputError(
            f"the torch flavour saves a torch.nn.Sequential, not a {type(model).__qualname__} (its forward() is "
            "code keel cannot rebuild). Wrap it in an object with predict() and register that with "
            "flavor='pickle' (loading it then needs trusted=True)."
        )
    layers = [_layer_spec(nn, k, module) for k, module in enumerate(model)]
    first = next((layer for layer in layers if layer["kind"] in ("Linear", "BatchNorm1d", "LayerNorm")), None)
    if first is None:
        raise InvalidInputError("the Sequential holds no Linear layer: there is nothing to save")
    n_features = first.get("in_features") or first.get("num_features") or first["normalized_shape"][0]
    classes = torch_classes(model)
    spec = {"format": "keel.torch_sequential/1", "n_features": n_features, "layers": layers}
    try:  # the same checks load() makes, so a model that could not load again is refused now
        return check_architecture({**spec, "classes": None if classes is None else list(classes)})
    except InvalidInputError as exc:  # an InvalidModelError: here it is the caller's model, not a stored file
        raise InvalidInputError(f"Cannot save this Sequential. {exc}") from None


def _build(arch: Architecture, body: bytes) -> Any:
    """The Sequential the checked layer list describes, holding the (checked) tensors, in eval mode."""
    torch = _torch()
    safetensors_torch = require("safetensors.torch", extra="rl", purpose="PyTorch models")
    nn = torch.nn
    with torch.device("meta"):  # no memory and no random init for weights that load_state_dict replaces
        modules = [
            getattr(nn, layer["kind"])(**{k: v for k, v in layer.items() if k != "kind"}) for layer in arch.layers
        ]
    regressor, classifier = _module_types()
    model = (regressor if arch.classes is None else classifier)(*modules)
    tensors = safetensors_torch.load(body)
    model.load_state_dict(tensors, strict=True, assign=True)
    model.eval()
    model.head, model.n_features_in_ = arch.head, arch.n_features
    if arch.classes is not None:
        model.classes = list(arch.classes)  # what keel.edge and a second save() read
        model.classes_ = np.asarray(arch.classes)
    return model


class TorchFlavor(BaseFlavor):
    name = "torch"
    format = "layer list JSON + safetensors"
    checks_loaded = True  # registration predicts with the module rebuilt from its bytes, in eval mode, as serving will

    def accepts(self, model: Any) -> bool:
        # Every torch module is ours, so one keel cannot rebuild gets save()'s clear refusal
        # (naming the layer, and flavor='pickle') instead of the callable flavour's.
        return is_torch_module(model)

    def save(self, model: Any) -> bytes:
        safetensors_torch = require("safetensors.torch", extra="rl", purpose="PyTorch models")
        arch = _architecture(model)
        state = model.state_dict()
        expected = expected_tensors(arch)
        if set(state) != set(expected):
            raise InvalidInputError(f"the Sequential's state_dict holds {sorted(state)}, not {sorted(expected)}")
        tensors = {
            name: state[name].detach().to("cpu", dtype=_torch().float32 if dtype == "F32" else _torch().int64)
            for name, (dtype, _) in expected.items()
        }
        return write_artifact(arch, bytes(safetensors_torch.save({k: v.contiguous() for k, v in tensors.items()})))

    def audit(self, data: bytes, *, trusted: bool) -> None:
        """The layer list and the tensors' header are checked; nothing is built (torch is not needed)."""
        read_artifact(data)

    def load(self, data: bytes, *, trusted: bool) -> Any:
        # `trusted` changes nothing: the artifact holds no code, and a layer outside LAYERS is never built.
        arch, body = read_artifact(data)
        return _build(arch, body)

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        return "array"  # the network takes the signature's columns in order, as floats

    def prepare(self, model: Any, frame: pd.DataFrame) -> Any:
        return frame.to_numpy(dtype=np.float32)

    def labels_from_proba(self, model: Any, proba: np.ndarray) -> np.ndarray | None:
        classes = getattr(model, "classes_", None)
        return None if classes is None else np.asarray(classes[np.argmax(proba, axis=1)])

    def describe(self, model: Any) -> dict[str, Any]:
        out = {**super().describe(model)}
        if type(model) in _module_types():
            out["layers"] = [dict(layer) for layer in _architecture(model).layers]
            out["parameters"] = int(sum(p.numel() for p in model.parameters()))
            out["head"] = model.head
        return out
