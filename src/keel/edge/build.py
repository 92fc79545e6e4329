"""One entry point for an edge build (`compile_model`: a fitted model to a `CModel` or an `OnnxModel`,
choosing the generator by the model's kind), the archive a build ships as (`package`, `readme`,
`open_package`), and scoring rows through a build (`predict_build`). Values in, bytes out.

Every refusal -- a model kind no generator takes, a quantisation its target does not offer, a
pipeline step a tree build cannot hold, missing calibration rows -- is raised before any source or
file is made, naming what is wrong and what to do instead.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.edge._torch import is_torch_sequential
from keel.edge._tree_ir import _SUPPORTED as _TREE_KINDS
from keel.edge.host import compile_host
from keel.edge.linear import _DECISION, _REGRESSORS, linear_to_c
from keel.edge.mlp import DenseStack, mlp_to_c
from keel.edge.onnx_build import OnnxModel, quantize_int8, run_onnx, to_onnx
from keel.edge.source import CModel
from keel.edge.trees import tree_to_c
from keel.errors import InvalidInputError

__all__ = [
    "QUANTIZATIONS",
    "Target",
    "compile_model",
    "model_family",
    "open_package",
    "package",
    "predict_build",
    "readme",
]

Target = Literal["c", "onnx"]
Family = Literal["tree", "linear", "mlp"]

# What each target offers, by model family: checked before anything is built.
QUANTIZATIONS: dict[str, tuple[str, ...]] = {
    "tree": ("float32", "int16"),
    "linear": ("float32",),
    "mlp": ("float32", "int8"),
    "onnx": ("float32", "int8"),
}
_LINEAR_KINDS = (*_REGRESSORS, *_DECISION, "LogisticRegression")
_MLP_KINDS = ("MLPClassifier", "MLPRegressor")
_ARCHIVE_TIME = (2020, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same build gives the same bytes


def _final_step(model: Any) -> tuple[Any, list[tuple[str, Any]]]:
    """A pipeline's last estimator and the steps before it that do something (passthrough dropped)."""
    steps = getattr(model, "steps", None)
    if type(model).__name__ != "Pipeline" or not steps:
        return model, []
    before = [(str(name), step) for name, step in steps[:-1] if step is not None and step != "passthrough"]
    return steps[-1][1], before


def model_family(model: Any) -> Family:
    """'tree', 'linear' or 'mlp': which C generator takes `model` (a pipeline by its last step)."""
    final, _ = _final_step(model)
    kind = type(final).__name__
    if kind in _TREE_KINDS or (hasattr(final, "booster") and type(final.booster).__name__ == "Booster"):
        return "tree"
    if kind in _LINEAR_KINDS:
        return "linear"
    if kind in _MLP_KINDS or isinstance(final, DenseStack) or is_torch_sequential(final):
        return "mlp"
    raise InvalidInputError(
        f"no edge build for a {kind}: keel.edge compiles tree ensembles ({', '.join(_TREE_KINDS[:8])}, gradient "
        f"boosting, LightGBM, XGBoost), linear models ({', '.join(_LINEAR_KINDS)}) and MLPs "
        f"({', '.join(_MLP_KINDS)}, torch.nn.Sequential of Linear + ReLU), alone or ending a pipeline"
    )


def _check_request(model: Any, family: Family, target: str, quantize: str, calibration: Any) -> None:
    if target not in ("c", "onnx"):
        raise InvalidInputError(f"target={target!r} is not an edge target: use 'c' or 'onnx'")
    offered = QUANTIZATIONS["onnx" if target == "onnx" else family]
    if quantize not in offered:
        what = "ONNX builds" if target == "onnx" else f"{family} models built to C"
        raise InvalidInputError(f"{what} offer quantize={' or '.join(map(repr, offered))}, not {quantize!r}")
    if target == "onnx" and quantize == "int8" and family == "tree":
        raise InvalidInputError(
            "onnxruntime cannot quantise tree-ensemble ops to int8: build this model as float32 ONNX, "
            "or to C with quantize='int16'"
        )
    if target == "c" and family == "tree":
        _, before = _final_step(model)
        if before:
            name, step = before[0]
            raise InvalidInputError(
                f"pipeline step {name!r} ({type(step).__name__}) comes before a tree ensemble: tree builds take "
                "raw features and fold no steps; fit the trees on the raw features (scaling does not change "
                "a tree's splits), or build with target='onnx'"
            )
    needs_rows = target == "onnx" or quantize in ("int8", "int16")
    if needs_rows and calibration is None:
        raise InvalidInputError(
            f"target={target!r} quantize={quantize!r} needs calibration rows (the training X, in feature order)"
        )


def compile_model(
    model: Any,
    name: str,
    *,
    feature_names: Sequence[str],
    target: str = "c",
    quantize: str = "float32",
    calibration: Any = None,
    max_flash_bytes: int | None = None,
) -> CModel | OnnxModel:
    """A fitted model as C99 (`target='c'`: tree_to_c, linear_to_c or mlp_to_c by its kind) or ONNX.

    `calibration` (rows of raw features) is needed by int16 trees, int8 MLPs and every ONNX build;
    `max_flash_bytes` bounds a C build (the generators refuse one that would not fit)."""
    family = model_family(model)
    _check_request(model, family, target, quantize, calibration)
    names = [str(n) for n in feature_names]
    if target == "onnx":
        built = to_onnx(model, feature_names=names, X_sample=_rows(calibration, 256))
        return quantize_int8(built, calibration) if quantize == "int8" else built
    if family == "tree":
        final, _ = _final_step(model)
        return tree_to_c(
            final,
            name,
            feature_names=names,
            quantize="int16" if quantize == "int16" else "float32",
            input_range=calibration,
            max_flash_bytes=max_flash_bytes,
        )
    if family == "linear":
        return linear_to_c(model, name, feature_names=names, max_flash_bytes=max_flash_bytes)
    return mlp_to_c(
        model,
        name,
        feature_names=names,
        quantize="int8" if quantize == "int8" else "float32",
        calibration=calibration,
        max_flash_bytes=max_flash_bytes,
    )


def _rows(X: Any, n: int) -> Any:
    return X.iloc[:n] if isinstance(X, pd.DataFrame) else np.asarray(X)[:n]


def build_facts(build: CModel | OnnxModel) -> dict[str, Any]:
    """What reading the build back needs (its kind, features, classes, quantisation), as plain JSON."""
    common = {
        "kind": build.kind,
        "feature_names": list(build.feature_names),
        "classes": None if build.classes is None else list(build.classes),
        "quantize": build.quantize,
        "notes": list(build.notes),
    }
    if isinstance(build, OnnxModel):
        return {
            "target": "onnx",
            "file": "model.onnx",
            "input_name": build.input_name,
            "output_names": list(build.output_names),
            "opset": dict(build.opset),
            **common,
        }
    return {
        "target": "c",
        "name": build.name,
        "files": sorted(build.files),
        "n_outputs": build.n_outputs,
        "int_input": build.int_input,
        "input_scale": None if build.input_scale is None else list(build.input_scale),
        **common,
    }


def _c_signatures(build: CModel) -> list[str]:
    lines = [f"int {build.entry}(const float *features, float *scores);"]
    if build.int_input is not None:
        lines.append(f"int {build.name}_predict_int(const {build.int_input} *features, float *scores);")
    return lines


def readme(build: CModel | OnnxModel, *, model_ref: str, mcu: str | None = None) -> str:
    """The README.md of a build's archive: how to call it, the feature order, scaling, classes, quantisation."""
    out = [f"# Edge build of {model_ref}", ""]
    if isinstance(build, OnnxModel):
        out += [
            f"ONNX ({build.quantize}), `model.onnx`: one float input `{build.input_name}` of shape "
            f"(rows, {len(build.feature_names)}); outputs {', '.join(f'`{o}`' for o in build.output_names)}.",
            "Inputs are raw features: any scaling of the model is inside the graph.",
        ]
    else:
        out += ["C99, no malloc; include the header and compile the source with your firmware.", "", "```c"]
        out += [*_c_signatures(build), "```", ""]
        out.append(
            f"`features`: {len(build.feature_names)} floats in the order below, raw (any scaler is folded in); "
            f"`scores`: {build.n_outputs} floats; the return value is the class index (0 for a regressor)."
        )
        if build.int_input is not None and build.input_scale is not None:
            out.append(
                f"`{build.name}_predict_int` takes `round(feature * input_scale)` as `{build.int_input}`, saturated."
            )
        if mcu:
            out.append(f"Built and measured for `{mcu}`.")
    out += ["", "## Features, in order", "", "| # | feature | input_scale |", "|---|---|---|"]
    scales = getattr(build, "input_scale", None)
    for i, feature in enumerate(build.feature_names):
        out.append(f"| {i} | {feature} | {'-' if scales is None else repr(float(scales[i]))} |")
    out += ["", "## Output", ""]
    if build.classes is None:
        out.append(f"A regressor ({build.kind}): the predicted value.")
    else:
        out.append("Class labels in score order: " + ", ".join(f"{i} = {c!r}" for i, c in enumerate(build.classes)))
    out += ["", f"## Quantisation: {build.quantize}", "", *[f"- {note}" for note in build.notes], ""]
    out.append("The build report (agreement with the Python model, size, latency, emulated run) is `report.json`.")
    return "\n".join(out) + "\n"


def package(build: CModel | OnnxModel, report_dict: dict[str, Any], readme_text: str) -> bytes:
    """The build's archive: the `.c`/`.h` files (or `model.onnx`), README.md and report.json (the
    report with a 'build' section that `open_package` reads back). Deterministic bytes."""
    files: dict[str, bytes] = (
        {"model.onnx": build.content}
        if isinstance(build, OnnxModel)
        else {file: text.encode() for file, text in build.files.items()}
    )
    files["README.md"] = readme_text.encode()
    files["report.json"] = json.dumps({"build": build_facts(build), **report_dict}, indent=2, default=str).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(files):
            info = zipfile.ZipInfo(file, date_time=_ARCHIVE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[file])
    return buffer.getvalue()


def open_package(data: bytes) -> tuple[CModel | OnnxModel, dict[str, Any]]:
    """A build read back from its archive, and its report.json."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            report = json.loads(archive.read("report.json"))
            facts = report["build"]
            contents = {file: archive.read(file) for file in archive.namelist()}
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InvalidInputError(f"not an edge build archive (a zip with report.json): {exc}") from exc
    classes = None if facts["classes"] is None else tuple(facts["classes"])
    if facts["target"] == "onnx":
        onnx_model = OnnxModel(
            content=contents[facts["file"]],
            input_name=facts["input_name"],
            output_names=tuple(facts["output_names"]),
            opset=dict(facts["opset"]),
            kind=facts["kind"],
            feature_names=tuple(facts["feature_names"]),
            classes=classes,
            quantize=facts["quantize"],
            notes=tuple(facts["notes"]),
        )
        return onnx_model, report
    c_model = CModel(
        name=facts["name"],
        files={file: contents[file].decode() for file in facts["files"]},
        kind=facts["kind"],
        feature_names=tuple(facts["feature_names"]),
        n_outputs=int(facts["n_outputs"]),
        classes=classes,
        quantize=facts["quantize"],
        int_input=facts["int_input"],
        input_scale=None if facts["input_scale"] is None else tuple(facts["input_scale"]),
        notes=tuple(facts["notes"]),
    )
    return c_model, report


def predict_build(build: CModel | OnnxModel, X: Any) -> pd.DataFrame:
    """Score rows through a build: C compiled on the host in a temporary directory, ONNX with onnxruntime.

    Returns a frame with `prediction` (the class label, or the value) and, for a classifier, one
    `score_<label>` column per score (probabilities or margins, as the build gives them)."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X), columns=list(build.feature_names))
    missing = [f for f in build.feature_names if f not in frame.columns]
    if missing:
        raise InvalidInputError(f"the rows lack the build's features {missing[:10]}; it takes {build.feature_names}")
    matrix = frame.loc[:, list(build.feature_names)].to_numpy(dtype=np.float32)
    if isinstance(build, OnnxModel):
        labels, scores = run_onnx(build, matrix)
        if labels is None:
            return pd.DataFrame({"prediction": np.asarray(scores).reshape(len(matrix), -1)[:, 0]})
        return _scored(labels, np.asarray(scores), build.classes)
    with tempfile.TemporaryDirectory(prefix="keel-edge-run-") as tmp:
        classes, c_scores = compile_host(build, Path(tmp)).predict(matrix)
    if build.kind == "regressor":
        return pd.DataFrame({"prediction": c_scores[:, 0].astype(np.float64)})
    labels_out = np.asarray(build.classes, dtype=object)[classes] if build.classes is not None else classes
    return _scored(labels_out, c_scores, build.classes)


def _scored(labels: Any, scores: np.ndarray, classes: tuple[Any, ...] | None) -> pd.DataFrame:
    out = pd.DataFrame({"prediction": list(np.asarray(labels).tolist())})
    scores = scores.reshape(len(out), -1)
    names = (
        [f"score_{c}" for c in classes]
        if classes is not None and scores.shape[1] == len(classes)
        else [f"score_{j}" for j in range(scores.shape[1])]
    )
    for j, column in enumerate(names):
        out[column] = scores[:, j].astype(np.float64)
    return out
