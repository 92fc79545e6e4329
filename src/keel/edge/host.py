"""Compile a `CModel` with the system C compiler and score rows through ctypes: the host build is both
the first check of every generated library (it must build warning-free as strict C99) and a usable
runtime. Values in, values out; every file goes into the `workdir` the caller gives.

A small wrapper is compiled beside the model: `NAME_predict_batch` (and `NAME_predict_int_batch`)
loop over rows in C, and `NAME_time_batch` times such loops with `clock_gettime`, so the latency
measured is the model's, not Python's call overhead.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.edge.source import CModel
from keel.errors import InvalidInputError, KeelError, MissingDependencyError

__all__ = ["CompileError", "HostLibrary", "compile_host", "quantize_input", "write_sources"]

HOST_FLAGS = ("-std=c99", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\.[ch]")
_INT_TYPES: dict[str, tuple[type[ctypes._SimpleCData[Any]], Any]] = {
    "int8_t": (ctypes.c_int8, np.int8),
    "int16_t": (ctypes.c_int16, np.int16),
    "int32_t": (ctypes.c_int32, np.int32),
}


class CompileError(KeelError):
    """Generated C failed to compile or link; the message carries the compiler's own output."""


_WRAPPER = """\
/* keel.edge host wrapper: batched scoring and timing in C. */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <time.h>
#include "{header}"

void {name}_predict_batch(const float *x, int n, int f, float *scores, int *classes) {{
    for (int i = 0; i < n; i++) classes[i] = {name}_predict(x + (long)i * f, scores + (long)i * {n_out});
}}

double {name}_time_batch(const float *x, int n, int f, float *scores, int *classes, int reps) {{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < reps; r++) {name}_predict_batch(x, n, f, scores, classes);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
}}
"""

_WRAPPER_INT = """
void {name}_predict_int_batch(const {int_t} *x, int n, int f, float *scores, int *classes) {{
    for (int i = 0; i < n; i++) classes[i] = {name}_predict_int(x + (long)i * f, scores + (long)i * {n_out});
}}
"""


def write_sources(model: CModel, workdir: Path) -> list[Path]:
    """Write the model's files into `workdir` after checking their names; return the `.c` paths.

    Raises InvalidInputError for a name that is not a C identifier or a file name that could leave
    `workdir` (a path separator, `..`).
    """
    if not _IDENTIFIER.fullmatch(model.name):
        raise InvalidInputError(f"CModel name {model.name!r} is not a C identifier; use letters, digits and '_'.")
    if model.header not in model.files:
        raise InvalidInputError(f"CModel {model.name!r} has no header {model.header!r}; files: {sorted(model.files)}.")
    workdir.mkdir(parents=True, exist_ok=True)
    sources = []
    for file_name, text in model.files.items():
        if not _FILE_NAME.fullmatch(file_name):
            raise InvalidInputError(
                f"CModel file name {file_name!r} is not a plain '.c'/'.h' name; directories are not allowed."
            )
        path = workdir / file_name
        path.write_text(text, encoding="utf-8")
        if file_name.endswith(".c"):
            sources.append(path)
    return sources


def run_compiler(argv: list[str], *, cwd: Path, what: str) -> None:
    """Run a compiler command; raise CompileError with its output when it fails."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError as exc:
        raise MissingDependencyError(f"{what} needs the C compiler {argv[0]!r}, which is not on PATH.") from exc
    if done.returncode != 0:
        output = (done.stderr + done.stdout).strip()
        raise CompileError(f"{what} failed (exit {done.returncode}):\n{' '.join(argv)}\n{output[-4000:]}")


def compile_host(model: CModel, workdir: Path, *, cc: str | None = None) -> HostLibrary:
    """Compile `model` with the system C compiler (strict C99, -Werror) into a shared library under `workdir`.

    Raises CompileError with the compiler's message when the C does not build, MissingDependencyError
    when no compiler is found.
    """
    compiler = cc or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise MissingDependencyError("Host builds need a C compiler: install gcc (apt-get install gcc).")
    sources = write_sources(model, workdir)
    wrapper = _WRAPPER.format(header=model.header, name=model.name, n_out=model.n_outputs)
    int_ctype = None
    if model.int_input is not None:
        if model.int_input not in _INT_TYPES:
            raise InvalidInputError(f"CModel int_input {model.int_input!r} is not one of {sorted(_INT_TYPES)}.")
        int_ctype = model.int_input
        wrapper += _WRAPPER_INT.format(name=model.name, int_t=int_ctype, n_out=model.n_outputs)
    wrapper_path = workdir / f"keel_host_{model.name}.c"
    wrapper_path.write_text(wrapper, encoding="utf-8")
    # A name per content: dlopen() returns the already-loaded library for a path it has seen, so a
    # rebuilt model written over the same file name would silently keep scoring with the old code.
    digest = hashlib.sha256(repr((sorted(model.files.items()), wrapper, HOST_FLAGS)).encode()).hexdigest()[:12]
    library = workdir / f"lib{model.name}-{digest}.so"
    argv = [compiler, *HOST_FLAGS, "-o", str(library), *map(str, sources), str(wrapper_path), "-lm"]
    run_compiler(argv, cwd=workdir, what=f"Host build of {model.name!r}")
    return HostLibrary(model=model, path=library)


def quantize_input(model: CModel, X: npt.ArrayLike) -> npt.NDArray[Any]:
    """Float rows as `NAME_predict` hands them to `NAME_predict_int`: `x * input_scale[i]` in float32,
    saturated to +-(the type's max), rounded half away from zero. It must be the C's arithmetic to the
    bit: in float64 with round-half-even, 0.4375 * 145.142853f is 63.49999... and rounds to 63, where
    the C computes exactly 63.5 and gives 64."""
    if model.int_input is None or model.input_scale is None:
        raise InvalidInputError(f"CModel {model.name!r} has no integer entry point (int_input/input_scale unset).")
    dtype = _INT_TYPES[model.int_input][1]
    limit = np.float32(np.iinfo(dtype).max)
    v = np.asarray(X, dtype=np.float32) * np.asarray(model.input_scale, dtype=np.float32)
    v = np.minimum(np.where(v > -limit, v, -limit), limit)  # NaN -> -limit, as the C comparisons do
    half = np.float32(0.5)
    rounded: npt.NDArray[Any] = np.where(v >= 0, np.trunc(v + half), np.trunc(v - half)).astype(dtype)
    return rounded


@dataclass(frozen=True)
class HostLibrary:
    """A compiled host build of one CModel, loaded through ctypes."""

    model: CModel
    path: Path

    def _lib(self) -> ctypes.CDLL:
        # One CDLL per call is cheap (dlopen reuses the mapping) and keeps the dataclass frozen and plain.
        return ctypes.CDLL(str(self.path))

    def _rows(self, X: npt.ArrayLike, dtype: Any) -> npt.NDArray[Any]:
        rows = np.ascontiguousarray(np.asarray(X), dtype=dtype)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        n_features = len(self.model.feature_names)
        if rows.ndim != 2 or rows.shape[1] != n_features:
            raise InvalidInputError(
                f"X has shape {np.shape(X)}; {self.model.name!r} takes rows of {n_features} features "
                f"({', '.join(self.model.feature_names[:5])}{', ...' if n_features > 5 else ''})."
            )
        return rows

    def _call(self, function: str, rows: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        n = rows.shape[0]
        classes = np.zeros(n, dtype=np.int32)
        scores = np.zeros((n, self.model.n_outputs), dtype=np.float32)
        getattr(self._lib(), function)(
            rows.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(n),
            ctypes.c_int(rows.shape[1]),
            scores.ctypes.data_as(ctypes.c_void_p),
            classes.ctypes.data_as(ctypes.c_void_p),
        )
        return classes, scores

    def predict(self, X: npt.ArrayLike) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Score rows through `NAME_predict`: (class indices, scores of shape (n, n_outputs), float32)."""
        return self._call(f"{self.model.name}_predict_batch", self._rows(X, np.float32))

    def predict_int(self, X: npt.ArrayLike) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """Score rows through `NAME_predict_int`; float rows are quantized first (`quantize_input`)."""
        if self.model.int_input is None:
            raise InvalidInputError(f"CModel {self.model.name!r} has no NAME_predict_int (int_input is None).")
        dtype = _INT_TYPES[self.model.int_input][1]
        values = np.asarray(X)
        ints = values if np.issubdtype(values.dtype, np.integer) else quantize_input(self.model, values)
        info = np.iinfo(dtype)
        if ints.size and (ints.min() < info.min or ints.max() > info.max):
            raise InvalidInputError(
                f"Integer rows fall outside {self.model.int_input}'s range [{info.min}, {info.max}]."
            )
        return self._call(f"{self.model.name}_predict_int_batch", self._rows(ints, dtype))

    def latency_us(self, X: npt.ArrayLike, *, repeats: int = 5, min_batch_s: float = 0.002) -> float:
        """Median time of one `NAME_predict` call in microseconds, timed in C over the rows of `X`."""
        rows = self._rows(X, np.float32)
        n = rows.shape[0]
        if n == 0:
            raise InvalidInputError("latency_us needs at least one row.")
        classes = np.zeros(n, dtype=np.int32)
        scores = np.zeros((n, self.model.n_outputs), dtype=np.float32)
        timer = getattr(self._lib(), f"{self.model.name}_time_batch")
        timer.restype = ctypes.c_double
        args = (
            rows.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(n),
            ctypes.c_int(rows.shape[1]),
            scores.ctypes.data_as(ctypes.c_void_p),
            classes.ctypes.data_as(ctypes.c_void_p),
        )
        # Grow the repetition count until one timing lasts min_batch_s, so clock resolution does not matter.
        reps = 1
        while (elapsed_ns := float(timer(*args, ctypes.c_int(reps)))) < min_batch_s * 1e9 and reps < 1 << 20:
            reps *= 2
        samples = [elapsed_ns] + [float(timer(*args, ctypes.c_int(reps))) for _ in range(repeats - 1)]
        return float(statistics.median(samples) / (reps * n) / 1000.0)
