"""The build report every edge build gets: how well the C agrees with the Python model (on the host and on
an emulated microcontroller), what it costs on the MCU, and how fast it runs on the host.

Agreement is reported beside accuracy on purpose: two models can both score 95 % yet disagree on a
tenth of the rows, and the C library is meant to be the Python model, not another one as good.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.edge.host import compile_host
from keel.edge.mcu import SizeReport, measure_size, profile, run_qemu, toolchain_problem
from keel.edge.source import CModel
from keel.errors import InvalidInputError

__all__ = ["BuildReport", "verify"]


@dataclass(frozen=True)
class BuildReport:
    """Verification of one C build against its Python model. Agreements are shares in [0, 1].

    Class figures are None for a regressor; `*_skipped` says why a check did not run.
    """

    name: str
    mcu: str
    n_rows: int
    class_agreement: float | None
    max_abs_score_diff: float | None
    accuracy_python: float | None
    accuracy_c: float | None
    host_latency_us: float
    size: SizeReport | None
    size_skipped: str | None
    qemu_rows: int
    qemu_class_agreement: float | None  # vs Python
    qemu_max_abs_score_diff: float | None  # vs Python
    qemu_bit_exact_vs_host: bool | None
    qemu_skipped: str | None
    notes: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["size"] = None if self.size is None else self.size.to_dict()
        out["notes"] = list(self.notes)
        return out


def _class_indices(model: CModel, python_classes: npt.ArrayLike | None) -> npt.NDArray[np.int64] | None:
    """Python's predictions as indices into the C scores (labels are mapped through model.classes)."""
    if python_classes is None or model.kind != "classifier":
        return None
    labels = np.asarray(python_classes)
    if model.classes is None:
        return labels.astype(np.int64)
    position = {label: i for i, label in enumerate(model.classes)}
    try:
        return np.array([position[label] for label in labels.tolist()], dtype=np.int64)
    except KeyError as exc:
        raise InvalidInputError(
            f"Python predicted {exc.args[0]!r}, not one of the model's classes {model.classes}."
        ) from exc


def _max_diff(a: npt.NDArray[Any], b: npt.ArrayLike | None) -> float | None:
    if b is None:
        return None
    reference = np.asarray(b, dtype=np.float64).reshape(a.shape[0], -1)
    if reference.shape != a.shape:
        raise InvalidInputError(f"python_scores has shape {reference.shape}; the C scores have {a.shape}.")
    return float(np.max(np.abs(a.astype(np.float64) - reference))) if a.size else 0.0


def _share(a: npt.NDArray[Any] | None, b: npt.NDArray[Any] | None) -> float | None:
    return None if a is None or b is None else float(np.mean(a == b)) if len(a) else 1.0


def verify(
    model: CModel,
    python_classes: npt.ArrayLike | None,
    python_scores: npt.ArrayLike | None,
    X: npt.ArrayLike,
    y: npt.ArrayLike | None = None,
    *,
    mcu: str = "cortex-m4",
    qemu: bool = True,
    qemu_max_rows: int = 2000,
    qemu_timeout_s: float = 120.0,
    workdir: Path | None = None,
) -> BuildReport:
    """Check a C build against the Python model's outputs on rows `X` (labels `y` give both accuracies).

    `python_classes` are the labels Python predicted (mapped to score positions through `model.classes`);
    `python_scores` its probabilities / decision scores / values in the C score order. Compiles on the
    host (raises CompileError when that fails), measures the Cortex-M size and runs QEMU when the
    toolchain is there (else the report says why not).
    """
    profile(mcu)  # an unknown mcu fails before anything is compiled
    rows = np.asarray(X, dtype=np.float32)
    timings: dict[str, float] = {}
    notes = list(model.notes)
    with tempfile.TemporaryDirectory(prefix="keel-verify-") as tmp:
        work = workdir or Path(tmp)
        started = time.perf_counter()
        library = compile_host(model, work / "host")
        timings["host_compile"] = time.perf_counter() - started
        started = time.perf_counter()
        c_classes, c_scores = library.predict(rows)
        latency = library.latency_us(rows[:256]) if len(rows) else 0.0
        timings["host_predict"] = time.perf_counter() - started
        python_idx = _class_indices(model, python_classes)
        y_idx = _class_indices(model, y)
        size, size_skipped = _size_check(model, mcu, work / "size", timings, notes)
        qemu_figures, qemu_skipped = _qemu_check(
            model,
            rows,
            (c_classes, c_scores),
            (python_idx, python_scores),
            mcu=mcu,
            wanted=qemu,
            max_rows=qemu_max_rows,
            timeout_s=qemu_timeout_s,
            work=work / "qemu",
            timings=timings,
        )
    return BuildReport(
        name=model.name,
        mcu=mcu,
        n_rows=len(rows),
        class_agreement=_share(c_classes, python_idx),
        max_abs_score_diff=_max_diff(c_scores, python_scores),
        accuracy_python=_share(python_idx, y_idx),
        accuracy_c=_share(c_classes, y_idx),
        host_latency_us=latency,
        size=size,
        size_skipped=size_skipped,
        qemu_rows=qemu_figures[0],
        qemu_class_agreement=qemu_figures[1],
        qemu_max_abs_score_diff=qemu_figures[2],
        qemu_bit_exact_vs_host=qemu_figures[3],
        qemu_skipped=qemu_skipped,
        notes=tuple(notes),
        timings_s=timings,
    )


def _size_check(
    model: CModel, mcu: str, work: Path, timings: dict[str, float], notes: list[str]
) -> tuple[SizeReport | None, str | None]:
    """(size report, reason skipped); a build that does not fit its part gets a note."""
    target = profile(mcu)
    if target.qemu_machine is None:
        return None, f"mcu={mcu!r} has no flash/RAM limits to measure against"
    problem = toolchain_problem(qemu=False)
    if problem is not None:
        return None, problem
    started = time.perf_counter()
    size = measure_size(model, mcu, workdir=work)
    timings["size"] = time.perf_counter() - started
    if not (size.fits_flash and size.fits_ram):
        notes.append(
            f"Does not fit {target.part}: the image needs {size.image_flash_bytes} B of flash and "
            f"{size.image_ram_bytes} B of static RAM + {size.stack_bytes} B of stack."
        )
    return size, None


def _qemu_check(
    model: CModel,
    rows: npt.NDArray[np.float32],
    host: tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]],
    python: tuple[npt.NDArray[np.int64] | None, npt.ArrayLike | None],
    *,
    mcu: str,
    wanted: bool,
    max_rows: int,
    timeout_s: float,
    work: Path,
    timings: dict[str, float],
) -> tuple[tuple[int, float | None, float | None, bool | None], str | None]:
    """((rows, class agreement, max score diff vs Python, bit-exact vs host), reason skipped)."""
    (c_classes, c_scores), (python_idx, python_scores) = host, python
    nothing = (0, None, None, None)
    if not wanted:
        return nothing, "not requested (qemu=False)"
    if profile(mcu).qemu_machine is None:
        return nothing, f"mcu={mcu!r} has no emulated board"
    problem = toolchain_problem(qemu=True)
    if problem is not None:
        return nothing, problem
    if len(rows) == 0:
        return nothing, "no rows to run"
    n = min(len(rows), max_rows)
    started = time.perf_counter()
    q_classes, q_scores = run_qemu(model, rows[:n], mcu, timeout_s=timeout_s, workdir=work)
    timings["qemu"] = time.perf_counter() - started
    bit_exact = bool(
        np.array_equal(q_classes, c_classes[:n])
        and np.array_equal(q_scores.view(np.uint32), c_scores[:n].view(np.uint32))
    )
    reference = (
        None if python_scores is None else np.asarray(python_scores, dtype=np.float64).reshape(len(rows), -1)[:n]
    )
    agreement = _share(q_classes, None if python_idx is None else python_idx[:n])
    return (n, agreement, _max_diff(q_scores, reference), bit_exact), None
