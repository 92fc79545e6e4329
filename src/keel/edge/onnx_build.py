"""ONNX builds of a fitted model: a float export (`to_onnx`), an int8 one (`quantize_int8`), and the
runtime both are checked with (`run_onnx`, `onnx_agreement`). Values in, values out: bytes, never files.

- scikit-learn estimators and pipelines go through skl2onnx; LightGBM and XGBoost (their scikit-learn
  wrappers, alone or ending a pipeline) through onnxmltools' converters registered with skl2onnx, so
  a pipeline that ends in a booster converts in one call.
- Outputs are plain tensors: ZipMap (a list of {class: probability} dicts) is switched off, so a
  classifier answers `label` (n,) and `probabilities` (n, classes); a regressor `variable` (n, 1).
- Linear models, scalers and normalisers are written with standard ops (MatMul, Add, Sub, Div) rather
  than the `ai.onnx.ml` LinearClassifier / Scaler ops: onnxruntime quantises MatMul and Gemm only.
- int8 is onnxruntime's static quantisation (QDQ, per-channel weights by default) calibrated on the
  rows the caller passes (the training dataset version's), after `quant_pre_process`. Tree-ensemble,
  SVM and ai.onnx.ml linear ops hold their weights as attributes that onnxruntime cannot quantise:
  such a model is refused, naming the op, before anything is written.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel._optional import require
from keel.edge.source import TaskKind
from keel.errors import InvalidInputError

__all__ = ["OnnxAgreement", "OnnxModel", "onnx_agreement", "quantize_int8", "run_onnx", "to_onnx"]

INPUT_NAME = "input"
# skl2onnx 1.20 is tested up to opset 22 and onnxmltools writes ai.onnx.ml 3 trees (the TreeEnsemble
# op of ml 5 is refused by skl2onnx's domain check); onnxruntime 1.32 runs both.
_OPSET = {"": 21, "ai.onnx.ml": 3}
# ml-domain ops we ask skl2onnx not to use: each has a standard-op fallback in its converter.
_AVOIDED_ML_OPS = frozenset({"LinearClassifier", "LinearRegressor", "Scaler", "Normalizer"})
# Ops whose weights are node attributes: onnxruntime's quantiser leaves them float (or fails).
_UNQUANTISABLE = {
    "TreeEnsembleClassifier": "a tree ensemble",
    "TreeEnsembleRegressor": "a tree ensemble",
    "TreeEnsemble": "a tree ensemble",
    "SVMClassifier": "a support vector machine",
    "SVMRegressor": "a support vector machine",
    "LinearClassifier": "an ai.onnx.ml linear model",
    "LinearRegressor": "an ai.onnx.ml linear model",
}
_QUANTISABLE = frozenset({"MatMul", "Gemm", "Conv"})
_CALIBRATION_BATCH = 64  # rows per calibration call: MinMax calibration only keeps running extremes

OnnxQuantize = Literal["float32", "int8"]


@dataclass(frozen=True)
class OnnxModel:
    """One ONNX model, serialised: one float input `input_name` of shape (rows, len(feature_names))."""

    content: bytes
    input_name: str
    output_names: tuple[str, ...]  # classifier: ('label', 'probabilities'); regressor: ('variable',)
    opset: dict[str, int]  # domain ('' is the standard one) -> version
    kind: TaskKind
    feature_names: tuple[str, ...]
    classes: tuple[Any, ...] | None  # class labels in probability-column order (None for a regressor)
    quantize: OnnxQuantize = "float32"
    notes: tuple[str, ...] = ()  # what the export chose, in words (the build report shows them)
    details: dict[str, Any] = field(default_factory=dict)  # op types, sample agreement, calibration rows

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def op_types(self) -> tuple[str, ...]:
        """The op type of every node, in graph order."""
        return tuple(node.op_type for node in _load(self.content).graph.node)


@dataclass(frozen=True)
class OnnxAgreement:
    """How closely the ONNX model answers like the Python one on `rows` rows."""

    rows: int
    class_agreement: float | None  # share of identical predicted classes (None for a regressor)
    max_abs_diff: float  # over every score (probabilities, or the predicted value)


def to_onnx(model: Any, *, feature_names: list[str] | tuple[str, ...], X_sample: Any) -> OnnxModel:
    """Export a fitted scikit-learn estimator or pipeline (LightGBM and XGBoost wrappers included) to
    float ONNX, checked on `X_sample` (a few of the model's rows, in `feature_names` order)."""
    names = tuple(str(n) for n in feature_names)
    X = _as_matrix(X_sample, names, what="X_sample")
    kind = _task_kind(model)
    skl2onnx = require("skl2onnx", extra="edge", purpose="ONNX export")
    data_types = require("skl2onnx.common.data_types", extra="edge")
    _register_boosters(model)
    options = {id(model): {"zipmap": False}} if kind == "classifier" else None
    try:
        proto = skl2onnx.convert_sklearn(
            _plain_xgboost_names(model),
            initial_types=[(INPUT_NAME, data_types.FloatTensorType([None, len(names)]))],
            options=options,
            target_opset=dict(_OPSET),
            black_op=set(_AVOIDED_ML_OPS),
        )
    except (RuntimeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(
            f"{_describe(model)} cannot be exported to ONNX: no converter in skl2onnx/onnxmltools for it "
            f"({first}). Supported: scikit-learn estimators and pipelines, LightGBM and XGBoost "
            "scikit-learn wrappers; or build it to C instead (target='c')."
        ) from exc
    ops = tuple(node.op_type for node in proto.graph.node)
    if "ZipMap" in ops:  # guards the options key: a ZipMap output cannot be read as a tensor
        raise InvalidInputError(f"the ONNX export of {_describe(model)} kept a ZipMap output; report this")
    classes = tuple(np.asarray(model.classes_).tolist()) if kind == "classifier" else None
    built = OnnxModel(
        content=proto.SerializeToString(),
        input_name=INPUT_NAME,
        output_names=tuple(out.name for out in proto.graph.output),
        opset={imp.domain: int(imp.version) for imp in proto.opset_import},
        kind=kind,
        feature_names=names,
        classes=classes,
        notes=(
            f"float32 ONNX of {_describe(model)}: {len(ops)} nodes, {len(proto.SerializeToString()):,} B",
            "ZipMap dropped: outputs are plain tensors",
        ),
        details={"op_types": ops, "converter": _converter(model)},
    )
    check = onnx_agreement(model, built, X)
    details = {**built.details, "sample_agreement": check}
    note = f"agrees with Python on {check.rows} sample rows: {_words(check)}"
    return replace(built, notes=(*built.notes, note), details=details)


def quantize_int8(
    onnx_model: OnnxModel,
    calibration: Any,
    *,
    per_channel: bool = True,
    quant_format: Literal["qdq", "qoperator"] = "qdq",
) -> OnnxModel:
    """int8 static quantisation of a float `onnx_model`, calibrated on `calibration` rows (the training
    dataset version's, in the model's feature order). Refuses models whose weights onnxruntime cannot
    quantise (tree ensembles, SVMs), naming the op, before anything is written."""
    if onnx_model.quantize != "float32":
        raise InvalidInputError(f"quantize_int8 takes a float32 ONNX model, not a {onnx_model.quantize} one")
    proto = _load(onnx_model.content)
    ops = {node.op_type for node in proto.graph.node}
    refused = sorted(op for op in ops if op in _UNQUANTISABLE)
    if refused:
        what = _UNQUANTISABLE[refused[0]]
        raise InvalidInputError(
            f"cannot quantise this ONNX model to int8: it is {what} (op {', '.join(refused)}), whose "
            "weights onnxruntime cannot quantise. Export it as float32 ONNX, or build it to C "
            "(target='c', quantize='int16') instead."
        )
    if not ops & _QUANTISABLE:
        raise InvalidInputError(
            f"nothing to quantise in this ONNX model: it has no MatMul, Gemm or Conv node (ops: "
            f"{', '.join(sorted(ops))}); export it as float32 instead"
        )
    X = _as_matrix(calibration, onnx_model.feature_names, what="calibration")
    quantization = require("onnxruntime.quantization", extra="edge", purpose="int8 ONNX")
    with tempfile.TemporaryDirectory(prefix="keel-onnx-") as tmp:
        prepared, pre_note = _pre_process(proto, Path(tmp) / "prepared.onnx")
        out = Path(tmp) / "int8.onnx"
        quantization.quantize_static(
            prepared,
            out,
            _reader(quantization, onnx_model.input_name, X),
            quant_format=getattr(quantization.QuantFormat, "QDQ" if quant_format == "qdq" else "QOperator"),
            per_channel=per_channel,
            activation_type=quantization.QuantType.QInt8,
            weight_type=quantization.QuantType.QInt8,
        )
        content = out.read_bytes()
    quantized = _load(content)
    notes: tuple[str, ...] = (
        f"int8 ONNX ({quant_format.upper()}, {'per-channel' if per_channel else 'per-tensor'} weights, "
        f"MinMax calibration on {len(X):,} rows): {len(content):,} B against {onnx_model.size:,} B float",
        pre_note,
    )
    if len(content) >= onnx_model.size:  # a few hundred weights: Quantize/Dequantize nodes outweigh them
        notes = (*notes, "int8 is not smaller here: the model is too small for quantisation to pay off")
    return OnnxModel(
        content=content,
        input_name=onnx_model.input_name,
        output_names=tuple(out.name for out in quantized.graph.output),
        opset={imp.domain: int(imp.version) for imp in quantized.opset_import},
        kind=onnx_model.kind,
        feature_names=onnx_model.feature_names,
        classes=onnx_model.classes,
        quantize="int8",
        notes=notes,
        details={
            "op_types": tuple(node.op_type for node in quantized.graph.node),
            "calibration_rows": len(X),
            "float_size": onnx_model.size,
        },
    )


def run_onnx(onnx_model: OnnxModel, X: Any) -> tuple[np.ndarray | None, np.ndarray]:
    """Score `X` with onnxruntime on the CPU: (labels, probabilities) for a classifier, (None, values)
    for a regressor (values 1-D when the model has one target)."""
    ort = require("onnxruntime", extra="edge", purpose="running ONNX models")
    matrix = _as_matrix(X, onnx_model.feature_names, what="X")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the quantised graphs log benign initializer warnings otherwise
    session = ort.InferenceSession(onnx_model.content, options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {onnx_model.input_name: matrix})
    if onnx_model.kind == "classifier":
        return np.asarray(outputs[0]).ravel(), np.asarray(outputs[1])
    values = np.asarray(outputs[0])
    return None, values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values


def onnx_agreement(model: Any, onnx_model: OnnxModel, X: Any) -> OnnxAgreement:
    """The ONNX model's answers on `X` against the Python model's: class agreement and max score gap."""
    matrix = _as_matrix(X, onnx_model.feature_names, what="X")
    labels, scores = run_onnx(onnx_model, matrix)
    frame = _model_input(model, matrix, onnx_model.feature_names)
    if onnx_model.kind == "regressor":
        expected = np.asarray(model.predict(frame), dtype=np.float64).reshape(scores.shape)
        return OnnxAgreement(len(matrix), None, _max_gap(expected, scores))
    predicted = np.asarray(model.predict(frame))
    share = float(np.mean(np.asarray(labels) == predicted)) if len(matrix) else 1.0
    if hasattr(model, "predict_proba"):
        expected = np.asarray(model.predict_proba(frame), dtype=np.float64)
    else:  # margin models (LinearSVC, RidgeClassifier): ONNX gives both columns of a binary margin
        expected = np.asarray(model.decision_function(frame), dtype=np.float64)
        if expected.ndim == 1:
            scores = scores[:, -1] if scores.ndim == 2 else scores
    return OnnxAgreement(len(matrix), share, _max_gap(expected, scores))


def _pre_process(proto: Any, path: Path) -> tuple[Path, str]:
    """`quant_pre_process` (shape inference and graph optimisation, which folds MatMul + Add into Gemm)
    and Gemm biases flattened to 1-D: skl2onnx writes them (1, n), which onnxruntime 1.32's int32-bias
    scale check cannot compare (it fails on 'truth value of an array'). Gemm broadcasts either shape."""
    onnx = require("onnx", extra="edge")
    shape_inference = require("onnxruntime.quantization.shape_inference", extra="edge")
    note = "quant_pre_process: symbolic shape inference and optimisation"
    # Where symbolic shape inference fails (it does not know every ai.onnx.ml op), onnxruntime saves
    # 'sym_shape_infer_temp.onnx' (and its .data) into the process's working directory: removed again.
    # It cannot simply be skipped: with skip_symbolic_shape=True, onnxruntime 1.32's graph optimisation
    # fails on skl2onnx's MLP graphs ("not enough values to unpack") and logs a traceback.
    strays = [Path("sym_shape_infer_temp.onnx"), Path("sym_shape_infer_temp.onnx.data")]
    existed = [p.exists() for p in strays]
    try:
        shape_inference.quant_pre_process(proto, path)
    except Exception:  # noqa: BLE001 - the fallback below runs ONNX's own shape inference instead
        for stray, was_there in zip(strays, existed, strict=True):
            if not was_there:
                stray.unlink(missing_ok=True)
        shape_inference.quant_pre_process(proto, path, skip_symbolic_shape=True)
        note = "quant_pre_process: ONNX shape inference (symbolic inference failed) and optimisation"
    prepared = onnx.load(path)
    initializers = {tensor.name: tensor for tensor in prepared.graph.initializer}
    for node in prepared.graph.node:
        bias = initializers.get(node.input[2]) if node.op_type == "Gemm" and len(node.input) > 2 else None
        if bias is not None and len(bias.dims) == 2 and bias.dims[0] == 1:
            flat = onnx.numpy_helper.to_array(bias).reshape(-1)
            bias.CopyFrom(onnx.numpy_helper.from_array(flat, bias.name))
    onnx.save(prepared, path)
    return path, note


def _reader(quantization: Any, input_name: str, X: np.ndarray) -> Any:
    """A CalibrationDataReader over `X` in batches (the class is onnxruntime's, so it is made here)."""

    class _Rows(quantization.CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches: Iterator[dict[str, np.ndarray]] = self._fresh()

        def _fresh(self) -> Iterator[dict[str, np.ndarray]]:
            return iter({input_name: X[i : i + _CALIBRATION_BATCH]} for i in range(0, len(X), _CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

        def rewind(self) -> None:
            self._batches = self._fresh()

    return _Rows()


def _register_boosters(model: Any) -> None:
    """Teach skl2onnx the LightGBM / XGBoost wrappers (onnxmltools' converters). skl2onnx keeps its
    converters in a process-wide registry; registering the same class again only overwrites it."""
    modules = {type(step).__module__.split(".")[0] for step in _steps(model)}
    if not modules & {"lightgbm", "xgboost"}:
        return
    skl2onnx = require("skl2onnx", extra="edge")
    shapes = require("skl2onnx.common.shape_calculator", extra="edge")
    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if "lightgbm" in modules:
        lightgbm = require("lightgbm", extra="edge")
        lgbm = require("onnxmltools.convert.lightgbm.operator_converters.LightGbm", extra="edge")
        skl2onnx.update_registered_converter(
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            shapes.calculate_linear_classifier_output_shapes,
            lgbm.convert_lightgbm,
            options=classifier_options,
        )
        skl2onnx.update_registered_converter(
            lightgbm.LGBMRegressor,
            "LightGbmLGBMRegressor",
            shapes.calculate_linear_regressor_output_shapes,
            lgbm.convert_lightgbm,
            options={"split": None},
        )
    if "xgboost" in modules:
        xgboost = require("xgboost", extra="edge")
        xgb = require("onnxmltools.convert.xgboost.operator_converters.XGBoost", extra="edge")
        skl2onnx.update_registered_converter(
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            shapes.calculate_linear_classifier_output_shapes,
            xgb.convert_xgboost,
            options=classifier_options,
        )
        skl2onnx.update_registered_converter(
            xgboost.XGBRegressor,
            "XGBoostXGBRegressor",
            shapes.calculate_linear_regressor_output_shapes,
            xgb.convert_xgboost,
        )


def _plain_xgboost_names(model: Any) -> Any:
    """onnxmltools reads XGBoost split features as 'f0', 'f1', ...: a booster fitted on a DataFrame
    names them after its columns. A copy without the names converts; the caller's model is untouched."""
    named = [
        i
        for i, step in enumerate(_steps(model))
        if type(step).__module__.startswith("xgboost") and step.get_booster().feature_names
    ]
    if not named:
        return model
    plain = copy.deepcopy(model)
    for i in named:
        _steps(plain)[i].get_booster().feature_names = None
    return plain


def _steps(model: Any) -> list[Any]:
    """The estimators of a (possibly nested) pipeline, in order; the model itself otherwise."""
    inner = getattr(model, "steps", None)
    if inner is None:
        return [model]
    return [leaf for _, step in inner if step not in (None, "passthrough") for leaf in _steps(step)]


def _task_kind(model: Any) -> TaskKind:
    base = require("sklearn.base", extra="edge")
    validation = require("sklearn.utils.validation", extra="edge")
    exceptions = require("sklearn.exceptions", extra="edge")
    try:
        validation.check_is_fitted(model)
    except (exceptions.NotFittedError, TypeError) as exc:
        raise InvalidInputError(f"{_describe(model)} is not a fitted estimator: fit it before exporting") from exc
    if base.is_classifier(model):
        return "classifier"
    if base.is_regressor(model):
        return "regressor"
    raise InvalidInputError(
        f"{_describe(model)} is neither a classifier nor a regressor: ONNX builds export predictors"
    )


def _as_matrix(X: Any, names: tuple[str, ...], *, what: str) -> np.ndarray:
    """`X` as a C-contiguous float32 matrix with one column per feature name (DataFrames by name)."""
    if isinstance(X, pd.DataFrame):
        missing = [n for n in names if n not in X.columns]
        if missing:
            raise InvalidInputError(f"{what} lacks the model's features {missing}")
        X = X.loc[:, list(names)]
    matrix = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise InvalidInputError(
            f"{what} must have one column per feature ({len(names)}: {', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}); got shape {matrix.shape}"
        )
    if what == "calibration" and (len(matrix) == 0 or not np.isfinite(matrix).all()):
        raise InvalidInputError("calibration needs at least one row and only finite values (impute them first)")
    return matrix


def _model_input(model: Any, matrix: np.ndarray, names: tuple[str, ...]) -> Any:
    """What the Python model was fitted on: a DataFrame when it knows feature names, else the matrix."""
    try:
        fitted_names = model.feature_names_in_
    except AttributeError:
        return matrix
    return pd.DataFrame(matrix, columns=[str(n) for n in fitted_names] if len(fitted_names) == len(names) else names)


def _max_gap(expected: np.ndarray, got: np.ndarray) -> float:
    if expected.shape != got.shape:
        raise InvalidInputError(f"ONNX scores of shape {got.shape} do not match the model's {expected.shape}")
    return float(np.max(np.abs(expected - got.astype(np.float64)))) if expected.size else 0.0


def _words(check: OnnxAgreement) -> str:
    classes = "" if check.class_agreement is None else f"{check.class_agreement:.2%} of classes, "
    return f"{classes}max |score difference| {check.max_abs_diff:.2g}"


def _describe(model: Any) -> str:
    steps = _steps(model)
    inner = "" if steps == [model] else f" ({' -> '.join(type(s).__name__ for s in steps)})"
    return f"{type(model).__name__}{inner}"


def _converter(model: Any) -> str:
    modules = {type(step).__module__.split(".")[0] for step in _steps(model)}
    return "skl2onnx + onnxmltools" if modules & {"lightgbm", "xgboost"} else "skl2onnx"


def _load(content: bytes) -> Any:
    onnx = require("onnx", extra="edge")
    return onnx.load_from_string(content)
