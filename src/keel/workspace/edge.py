"""Edge builds as a use case (`ws.edge`): load a registered model version (untrusted, as serving does),
compile it with keel.edge (C99 or ONNX), verify the build against the Python model on the version's
own rows, package it, and record it with the registry (keel.registry.edge_builds).

Two sets of rows, and the report says where each came from:
- calibration (quantised builds): the version's training data: the linked training dataset version
  when it holds the signature's columns, else the training sample it was registered with;
- verification: the version's held-out rows, which it never saw: those a retraining cycle held out
  when it trained the version (drawn again from the decision's evidence), or the holdout the caller
  passes (the retraining loop passes its own); only for a version trained outside a model project,
  where no holdout is recorded, the training rows, and the report says so. Labels (for both
  accuracies) come from the holdout, or from a dataset column whose values are the model's classes.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.entities import ModelVersion
from keel.entities_edge import EdgeBuild
from keel.errors import InvalidInputError, KeelError
from keel.registry.edge_builds import EdgeBuilds
from keel.registry.sample import spread

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from keel.edge import CModel, OnnxModel
    from keel.registry import LoadedModel
    from keel.storage import BlobStore, MetadataStore
    from keel.workspace.facade import Workspace

__all__ = ["Edge", "VERIFY_ROWS"]

VERIFY_ROWS = 2000  # rows of the training data a build is calibrated and verified on (evenly spread)
_NUMERIC = ("integer", "float", "boolean")


class Edge:
    """`ws.edge`: build, list, read, download and run edge builds of model versions."""

    def __init__(self, ws: Workspace, meta: MetadataStore, blobs: BlobStore, *, author: str) -> None:
        self._ws = ws
        self.records = EdgeBuilds(meta, blobs, author=author)

    def build(
        self,
        model_ref: str,
        *,
        target: str = "c",
        quantize: str = "float32",
        mcu: str = "cortex-m4",
        qemu: bool = True,
        holdout: tuple[pd.DataFrame, Any] | None = None,
    ) -> EdgeBuild:
        """Compile, verify and store an edge build of a model version ('credit@3', 'credit@champion').

        `holdout`: (rows, labels or None) to verify on; default: the version's recorded holdout.
        Raises InvalidInputError, before anything is stored, for a model kind, quantisation, MCU or
        size the target cannot hold."""
        from keel.edge import MCUS
        from keel.edge.build import compile_model, package, readme

        if mcu not in MCUS:
            raise InvalidInputError(f"mcu={mcu!r} is not a known part: use one of {', '.join(MCUS)}")
        loaded = self._ws.models.load(model_ref)  # untrusted: a pickled model is refused, as serving does
        info = loaded.info
        names = _feature_names(info)
        calibration, y_train, train_source = self._rows(loaded)
        X, y, source = self._verify_rows(loaded, holdout, (calibration, y_train, train_source))
        started = time.perf_counter()
        built = compile_model(
            loaded.model,
            _c_name(info.name),
            feature_names=names,
            target=target,
            quantize=quantize,
            calibration=calibration,
            max_flash_bytes=None if target == "onnx" else MCUS[mcu].flash_bytes,
        )
        compile_s = time.perf_counter() - started
        report = _verify_c(loaded, built, X, y, mcu, qemu) if target == "c" else _verify_onnx(loaded, built, X, y)
        report.update(
            model=info.ref,
            target=target,
            quantize=quantize,
            mcu=mcu,
            rows_source=source,
            calibration_source=train_source,
            compile_s=compile_s,
            mcu_flash_bytes=MCUS[mcu].flash_bytes,
            mcu_ram_bytes=MCUS[mcu].ram_bytes,
        )
        report = _plain(report)
        archive = package(built, report, readme(built, model_ref=info.ref, mcu=mcu if target == "c" else None))
        files = sorted([*(_files_of(built)), "README.md", "report.json"])
        return self.records.add(
            info, target=target, quantize=quantize, mcu=mcu, archive=archive, files=files, report=report
        )

    def list(self, model: str | None = None) -> builtins.list[EdgeBuild]:
        """Builds, newest first: all, a model's ('credit') or one version's ('credit@3', 'credit@champion')."""
        return self.records.list(model)

    def by_version(self, model: str) -> dict[int, builtins.list[EdgeBuild]]:
        """A model's builds by version number, newest first (what the model's timeline shows)."""
        out: dict[int, builtins.list[EdgeBuild]] = {}
        for b in self.records.list(model):
            out.setdefault(int(b.model.rpartition("@")[2]), []).append(b)
        return out

    def get(self, build_id: int | str) -> EdgeBuild:
        return self.records.get(build_id)

    def archive(self, build_id: int | str) -> bytes:
        """The build's zip: the .c/.h files (or model.onnx), README.md and report.json."""
        return self.records.archive(build_id)

    def run(self, build_id: int | str, frame: pd.DataFrame) -> pd.DataFrame:
        """Score rows through a stored build: its C compiled on this host (or its ONNX run with
        onnxruntime). Columns: `prediction` and, for a classifier, one `score_<label>` per class."""
        from keel.edge.build import open_package, predict_build

        built, _ = open_package(self.archive(build_id))
        return predict_build(built, frame)

    def _verify_rows(
        self, loaded: LoadedModel, holdout: tuple[pd.DataFrame, Any] | None, training: tuple[pd.DataFrame, Any, str]
    ) -> tuple[pd.DataFrame, np.ndarray | None, str]:
        """The rows a build is verified on: held-out rows where they are known (see the module's doc)."""
        info = loaded.info
        source = "the held-out rows passed to the build"
        if holdout is None:
            try:
                found = self._ws.retraining.holdout(info)
            except KeelError as exc:  # a project that no longer reads: say so, and verify on training rows
                logger.warning("the recorded holdout of %s cannot be drawn: %s", info.ref, exc)
                found = None
            if found is None:
                X, y, where = training
                return X, y, f"{where}: no held-out rows are recorded for {info.ref} (trained outside a model project)"
            holdout, source = (found[0], found[1]), found[2]
        names = list(_feature_names(info))
        X, labels = holdout
        frame = pd.DataFrame(X).reset_index(drop=True)
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise InvalidInputError(f"the held-out rows lack the feature(s) {missing[:5]} that {info.ref} takes")
        keep = frame[names].notna().all(axis=1).to_numpy()
        y = None if labels is None else np.asarray(labels)[keep]
        frame = frame[names][keep].reset_index(drop=True)
        picked = spread(frame, VERIFY_ROWS)  # evenly spread, as for the training rows
        frame, y = picked.reset_index(drop=True), None if y is None else y[picked.index.to_numpy()]
        if len(frame) == 0:
            raise InvalidInputError(f"no complete held-out rows to verify an edge build of {info.ref} on")
        return frame, y, f"{source} ({len(frame):,} rows)"

    def _rows(self, loaded: LoadedModel) -> tuple[pd.DataFrame, np.ndarray | None, str]:
        """(rows in feature order, their labels or None, where they came from)."""
        info = loaded.info
        names = list(_feature_names(info))
        if info.datasets:
            frame = self._ws.datasets.load(info.datasets[0])
            if isinstance(frame, pd.DataFrame) and all(n in frame.columns for n in names):
                frame = spread(frame.dropna(subset=names), VERIFY_ROWS).reset_index(drop=True)
                label, y = _labels(frame, names, loaded.classes)
                source = f"dataset {info.datasets[0]}" + (f" (labels: column {label!r})" if label else "")
                return frame[names], y, source
        sample = self._ws.models.training_sample(info)
        if sample is None:
            raise InvalidInputError(
                f"{info.ref} has no training rows to calibrate and verify an edge build on: register it with "
                "X (training_sample) or with its training dataset version"
            )
        return sample[0][names].dropna().reset_index(drop=True), None, "the training sample registered with it"


def _feature_names(info: ModelVersion) -> tuple[str, ...]:
    if info.signature is None:
        raise InvalidInputError(f"{info.ref} has no signature: register it with X so its feature order is known")
    odd = [c.name for c in info.signature.inputs if c.type not in _NUMERIC]
    if odd:
        raise InvalidInputError(
            f"{info.ref} takes non-numeric columns {odd[:5]}: edge builds take numeric features only; "
            "encode them in the model's training data first"
        )
    return info.signature.column_names


def _c_name(model_name: str) -> str:
    """The model's name as a C identifier (the prefix of every symbol in the build)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", model_name)[:48]
    return name if re.match(r"[A-Za-z_]", name) else f"m_{name}"


def _labels(frame: pd.DataFrame, names: builtins.list[str], classes: tuple[Any, ...] | None) -> tuple[str | None, Any]:
    """The first column besides the features whose values are all among the model's classes."""
    if not classes:
        return None, None
    wanted = set(classes)
    for column in frame.columns:
        if column not in names and frame[column].notna().all() and set(frame[column].tolist()) <= wanted:
            return str(column), frame[column].to_numpy()
    return None, None


def _python_scores(loaded: LoadedModel, built: CModel, X: pd.DataFrame) -> Any:
    """Python's scores in the space the C build writes them (probabilities, margins or values)."""
    if built.kind == "regressor":
        return loaded.predict(X)
    space = built.details.get("score_space") or built.details.get("head")
    if space in ("probability", "sigmoid", "softmax") and loaded.has_proba:
        return loaded.predict_proba(X)
    if space in ("margin", "decision") and hasattr(loaded.model, "decision_function"):
        return loaded.model.decision_function(loaded.prepare(X))
    return None


def _verify_c(
    loaded: LoadedModel, built: CModel | OnnxModel, X: pd.DataFrame, y: Any, mcu: str, qemu: bool
) -> dict[str, Any]:
    from keel.edge import CModel, verify

    assert isinstance(built, CModel)  # target 'c'
    python_classes = None if built.kind == "regressor" else loaded.predict(X)
    rows = X.to_numpy(dtype=np.float32)
    report = verify(built, python_classes, _python_scores(loaded, built, X), rows, y, mcu=mcu, qemu=qemu)
    return {**report.to_dict(), "details": dict(built.details)}


def _verify_onnx(loaded: LoadedModel, built: CModel | OnnxModel, X: pd.DataFrame, y: Any) -> dict[str, Any]:
    from keel.edge import OnnxModel, onnx_agreement, run_onnx

    assert isinstance(built, OnnxModel)  # target 'onnx'
    check = onnx_agreement(loaded.model, built, X)
    started = time.perf_counter()
    labels, _ = run_onnx(built, X)
    latency = (time.perf_counter() - started) / max(len(X), 1) * 1e6
    accuracy_python = accuracy_onnx = None
    if y is not None and labels is not None:
        accuracy_python = float(np.mean(loaded.predict(X) == y))
        accuracy_onnx = float(np.mean(labels == y))
    return {
        "n_rows": check.rows,
        "class_agreement": check.class_agreement,
        "max_abs_score_diff": check.max_abs_diff,
        "accuracy_python": accuracy_python,
        "accuracy_c": accuracy_onnx,
        "host_latency_us": latency,
        "model_bytes": built.size,
        "size": None,
        "size_skipped": "an ONNX build runs on a phone or a gateway, not sized for an MCU",
        "qemu_rows": 0,
        "qemu_skipped": "ONNX builds are not run on an emulated microcontroller",
        "notes": list(built.notes),
        "details": {"op_types": list(built.details.get("op_types", ()))},
    }


def _files_of(built: CModel | OnnxModel) -> builtins.list[str]:
    files = getattr(built, "files", None)
    return ["model.onnx"] if files is None else sorted(files)


def _plain(value: Any) -> Any:
    """The report as plain JSON values (numpy scalars, tuples and dataclass leftovers converted)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)
