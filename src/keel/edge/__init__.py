"""Edge builds (compute: values in, files out; never storage): registered models compiled to small,
self-contained C99 (`trees.py`, `linear.py`, `mlp.py`, all returning a `CModel`, `source.py`) and to
float / int8 ONNX (`onnx_build.py`), and the checks every build gets: compiled on the host and scored
through ctypes (`host.py`), linked for a Cortex-M and run under QEMU (`mcu.py`).

May import: keel.errors, numpy, pandas, scikit-learn; lightgbm, xgboost, onnx, onnxruntime, skl2onnx
(the `edge` extra) only inside the functions that need them.
"""

from keel.edge.host import CompileError, HostLibrary, compile_host
from keel.edge.linear import linear_to_c
from keel.edge.mcu import MCUS, EmulationError, McuProfile, SizeReport, measure_size, run_qemu, toolchain_problem
from keel.edge.mlp import DenseStack, int8_logits, mlp_from_layers, mlp_from_sequential, mlp_from_torch, mlp_to_c
from keel.edge.onnx_build import OnnxAgreement, OnnxModel, onnx_agreement, quantize_int8, run_onnx, to_onnx
from keel.edge.report import BuildReport, verify
from keel.edge.source import CModel, Quantize, TaskKind
from keel.edge.trees import tree_to_c

__all__ = [
    "DenseStack",
    "int8_logits",
    "linear_to_c",
    "mlp_from_layers",
    "mlp_from_sequential",
    "mlp_from_torch",
    "mlp_to_c",
    "BuildReport",
    "CompileError",
    "EmulationError",
    "HostLibrary",
    "MCUS",
    "McuProfile",
    "SizeReport",
    "compile_host",
    "measure_size",
    "run_qemu",
    "toolchain_problem",
    "verify",
    "CModel",
    "OnnxAgreement",
    "OnnxModel",
    "Quantize",
    "TaskKind",
    "onnx_agreement",
    "quantize_int8",
    "run_onnx",
    "to_onnx",
    "tree_to_c",
]
