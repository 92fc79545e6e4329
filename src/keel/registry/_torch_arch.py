"""The `torch` flavour's artifact, read without torch: the layer list (JSON) and the safetensors header.

Everything here is plain Python on bytes anyone who can write artifacts may have written, so it
checks before anything is built: only the layer kinds of LAYERS, with exactly their constructor
arguments in range; widths that chain from the input features to the output; and a safetensors
header naming exactly the tensors those layers hold, with their shapes and dtypes, inside the
bytes. `flavor_torch` builds the module only from what passed (and audit() stops here).

The artifact: MAGIC, the JSON's length (8 bytes, little-endian), the JSON, then the safetensors
bytes of the state_dict. No pickle anywhere: safetensors is a JSON header plus raw tensor bytes.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidModelError

__all__ = ["MAGIC", "FORMAT", "LAYERS", "Architecture", "read_artifact", "expected_tensors", "check_tensors"]

MAGIC = b"keel-torch\x00"
FORMAT = "keel.torch_sequential/1"
MAX_HEADER_BYTES = 1 << 20  # a layer list is a few kB; the limit only bounds hostile bytes
MAX_LAYERS = 512
MAX_WIDTH = 1 << 20
MAX_PARAMETERS = 1 << 28  # 1 GiB of float32: far above a model worth serving from a Sequential
_SCALAR_KINDS = (str, int, float, bool)

# kind -> its constructor arguments and what each may be. Nothing here runs code: every one of
# these modules' forward passes is a fixed tensor operation of its arguments and tensors.
_INT, _BOOL, _POS_FLOAT, _PROB, _MOMENTUM, _DIM, _SHAPE = "int", "bool", "eps", "p", "momentum", "dim", "shape"
LAYERS: dict[str, dict[str, str]] = {
    "Linear": {"in_features": _INT, "out_features": _INT, "bias": _BOOL},
    "ReLU": {},
    "Tanh": {},
    "Sigmoid": {},
    "Softmax": {"dim": _DIM},
    "Flatten": {},  # Flatten() only: start_dim=1, end_dim=-1 is a no-op on (rows, features)
    "Dropout": {"p": _PROB},
    "Identity": {},
    "BatchNorm1d": {"num_features": _INT, "eps": _POS_FLOAT, "momentum": _MOMENTUM, "affine": _BOOL},
    "LayerNorm": {"normalized_shape": _SHAPE, "eps": _POS_FLOAT, "elementwise_affine": _BOOL, "bias": _BOOL},
}
_PASS_THROUGH = ("Dropout", "Identity")  # in eval mode: a classifier's head is the last layer before these

Tensors = dict[str, tuple[str, tuple[int, ...]]]  # name -> (safetensors dtype, shape)


@dataclass(frozen=True)
class Architecture:
    """A checked layer list: the Sequential's layers in order, its input and output widths, its labels."""

    layers: tuple[dict[str, Any], ...]  # {"kind": ..., **constructor arguments}
    n_features: int
    n_outputs: int
    classes: tuple[Any, ...] | None
    head: str  # "regression", "softmax" / "sigmoid" (the module's own output), "logits" / "logit" (keel applies it)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "n_features": self.n_features,
            "classes": None if self.classes is None else list(self.classes),
            "layers": [dict(layer) for layer in self.layers],
        }


def _bad(why: str) -> InvalidModelError:
    return InvalidModelError(
        f"Not a torch network keel can rebuild: {why}. The torch flavour builds nn.Sequential "
        f"of {', '.join(LAYERS)} only; wrap another network in an object with predict() and register that "
        "with flavor='pickle' (loading it then needs trusted=True)."
    )


def _argument(kind: str, name: str, rule: str, value: Any) -> None:
    """Refuse a constructor argument outside what its layer takes (types exact: bool is not an int)."""
    is_int = type(value) is int
    ok = {
        _INT: is_int and 1 <= value <= MAX_WIDTH,
        _BOOL: type(value) is bool,
        _POS_FLOAT: type(value) in (int, float) and math.isfinite(value) and 0 < value < 1,
        _PROB: type(value) in (int, float) and 0 <= value <= 1,
        _MOMENTUM: value is None or (type(value) in (int, float) and 0 <= value <= 1),
        _DIM: is_int and value in (1, -1),
        _SHAPE: isinstance(value, list) and len(value) == 1 and type(value[0]) is int and 1 <= value[0] <= MAX_WIDTH,
    }[rule]
    if not ok:
        raise _bad(f"{kind} argument {name}={value!r} is out of range")


def _check_layer(k: int, layer: Any) -> str:
    if not isinstance(layer, dict) or not isinstance(layer.get("kind"), str):
        raise _bad(f"layer {k} is not an object with a 'kind'")
    kind = layer["kind"]
    if kind not in LAYERS:
        raise _bad(f"layer {k} is of kind {kind[:80]!r}")  # a 'Lambda', an import path: never imported
    args = LAYERS[kind]
    if set(layer) != {"kind", *args}:
        raise _bad(f"layer {k} ({kind}) takes the arguments {sorted(args)}, got {sorted(set(layer) - {'kind'})}")
    for name, rule in args.items():
        _argument(kind, name, rule, layer[name])
    return kind


def _width_after(k: int, layer: dict[str, Any], width: int) -> int:
    """The features after layer k, refusing a layer that does not take `width` features."""
    kind = layer["kind"]
    takes = {"Linear": "in_features", "BatchNorm1d": "num_features"}.get(kind)
    if takes is not None and layer[takes] != width:
        raise _bad(f"layer {k} ({kind}) takes {layer[takes]} features but gets {width}")
    if kind == "LayerNorm" and layer["normalized_shape"] != [width]:
        raise _bad(f"layer {k} (LayerNorm) normalises {layer['normalized_shape']} but gets {width} features")
    return int(layer["out_features"]) if kind == "Linear" else width


def _labels(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) < 2:
        raise _bad("'classes' must be a list of two or more labels")
    for c in value:
        if type(c) not in _SCALAR_KINDS or (type(c) is float and not math.isfinite(c)):
            raise _bad(f"class label {c!r} is not a string, a number or a boolean")
    if len({(type(c), c) for c in value}) != len(value):
        raise _bad("class labels repeat")
    return tuple(value)


def _head(layers: tuple[dict[str, Any], ...], n_out: int, classes: tuple[Any, ...] | None) -> str:
    """How class probabilities come from the output: the module's own Softmax/Sigmoid, or keel's."""
    if classes is None:
        return "regression"
    last = next((layer["kind"] for layer in reversed(layers) if layer["kind"] not in _PASS_THROUGH), "")
    if n_out == 1:
        if len(classes) != 2:
            raise _bad(f"one output gives two classes, not {len(classes)}")
        return "sigmoid" if last == "Sigmoid" else "logit"
    if n_out != len(classes):
        raise _bad(f"{n_out} outputs for {len(classes)} class labels")
    if last == "Sigmoid":
        raise _bad(f"a final Sigmoid over {n_out} outputs is multilabel; end with Softmax or with the last Linear")
    return "softmax" if last == "Softmax" else "logits"


def check_architecture(spec: Any) -> Architecture:
    """The layer list as JSON parsed it, checked; InvalidModelError naming what is wrong."""
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise _bad(f"the header is not a {FORMAT} object")
    if set(spec) != {"format", "n_features", "classes", "layers"}:
        raise _bad(f"the header has the keys {sorted(spec)}, not format, n_features, classes, layers")
    layers, width = spec["layers"], spec["n_features"]
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise _bad(f"'layers' must be a list of 1 to {MAX_LAYERS} layers")
    if type(width) is not int or not 1 <= width <= MAX_WIDTH:
        raise _bad(f"n_features={width!r} is not a positive width")
    n_features = width
    kinds = [_check_layer(k, layer) for k, layer in enumerate(layers)]
    if "Linear" not in kinds:
        raise _bad("it holds no Linear layer")
    for k, layer in enumerate(layers):
        width = _width_after(k, layer, width)
    checked = tuple(dict(layer) for layer in layers)
    classes = _labels(spec["classes"])
    return Architecture(checked, n_features, width, classes, _head(checked, width, classes))


def expected_tensors(arch: Architecture) -> Tensors:
    """The state_dict the layers hold, as nn.Sequential names it ('0.weight'), with dtypes and shapes."""
    out: Tensors = {}
    for k, layer in enumerate(arch.layers):
        kind = layer["kind"]
        if kind == "Linear":
            out[f"{k}.weight"] = ("F32", (layer["out_features"], layer["in_features"]))
            if layer["bias"]:
                out[f"{k}.bias"] = ("F32", (layer["out_features"],))
        elif kind == "BatchNorm1d":
            n = (layer["num_features"],)
            if layer["affine"]:
                out.update({f"{k}.weight": ("F32", n), f"{k}.bias": ("F32", n)})
            out.update({f"{k}.running_mean": ("F32", n), f"{k}.running_var": ("F32", n)})
            out[f"{k}.num_batches_tracked"] = ("I64", ())
        elif kind == "LayerNorm" and layer["elementwise_affine"]:
            out[f"{k}.weight"] = ("F32", tuple(layer["normalized_shape"]))
            if layer["bias"]:
                out[f"{k}.bias"] = ("F32", tuple(layer["normalized_shape"]))
    if sum(math.prod(shape) for _, shape in out.values()) > MAX_PARAMETERS:
        raise _bad(f"it holds more than {MAX_PARAMETERS:,} parameters")
    return out


def check_tensors(arch: Architecture, body: bytes) -> None:
    """Refuse safetensors bytes whose tensors are not exactly the layers' (names, dtypes, shapes, extents)."""
    if len(body) < 8:
        raise _bad("the tensors are truncated")
    (size,) = struct.unpack("<Q", body[:8])
    if size > min(len(body) - 8, MAX_HEADER_BYTES):
        raise _bad("the safetensors header is truncated or too large")
    try:
        header = json.loads(body[8 : 8 + size].decode("utf-8"))
    except (ValueError, RecursionError):
        raise _bad("the safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad("the safetensors header is not an object")
    header.pop("__metadata__", None)
    expected = expected_tensors(arch)
    if set(header) != set(expected):
        missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
        raise _bad(f"the tensors do not match the layers (missing {missing[:5]}, unexpected {extra[:5]})")
    data = len(body) - 8 - size
    width = {"F32": 4, "I64": 8}
    for name, (dtype, shape) in expected.items():
        entry = header[name]
        if not isinstance(entry, dict) or entry.get("dtype") != dtype or entry.get("shape") != list(shape):
            got = (entry.get("dtype"), entry.get("shape")) if isinstance(entry, dict) else entry
            raise _bad(f"tensor {name!r} is {got!r}, the layers need {dtype} of shape {list(shape)}")
        start, end = entry.get("data_offsets", (None, None))
        if not (type(start) is int and type(end) is int and 0 <= start <= end <= data):
            raise _bad(f"tensor {name!r} lies outside the bytes (truncated?)")
        if end - start != width[dtype] * math.prod(shape):
            raise _bad(f"tensor {name!r} holds {end - start} bytes, not {width[dtype] * math.prod(shape)}")


def read_artifact(data: bytes) -> tuple[Architecture, bytes]:
    """The checked architecture and the (checked) safetensors bytes of a torch artifact."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise InvalidModelError("This is not a keel torch artifact (it does not start with keel's torch header).")
    (size,) = struct.unpack("<Q", data[len(MAGIC) : len(MAGIC) + 8])
    start = len(MAGIC) + 8
    if size > MAX_HEADER_BYTES or start + size > len(data):
        raise _bad("the layer list is truncated or too large")
    try:
        spec = json.loads(data[start : start + size].decode("utf-8"))
    except (ValueError, RecursionError):
        raise _bad("the layer list is not JSON") from None
    arch = check_architecture(spec)
    body = data[start + size :]
    check_tensors(arch, body)
    return arch, body


def write_artifact(arch: Architecture, tensors: bytes) -> bytes:
    head = json.dumps(arch.to_json(), sort_keys=True, allow_nan=False).encode()
    return MAGIC + struct.pack("<Q", len(head)) + head + tensors
