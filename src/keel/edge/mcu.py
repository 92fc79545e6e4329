"""Cortex-M checks of a `CModel`: its flash, static RAM and stack on a linked image (`measure_size`), and
its outputs when run on an emulated microcontroller (`run_qemu`). Values in, values out; every file goes
into a temporary directory (or the `workdir` the caller gives).

What works and why is recorded in shared/recipes/qemu-cortex-m.md: our own startup file and linker
script (package data in `runtime/`), newlib-nano with semihosting (`rdimon`), `-std=c99` so GCC does not
fuse multiply-adds (bit-exact floats), and `qemu-system-arm -M mps2-an386` (a Cortex-M4 with FPU). A
Cortex-M0 build runs on `mps2-an385` (a Cortex-M3, which executes the ARMv6-M subset).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from keel.edge.host import quantize_input, run_compiler, write_sources
from keel.edge.source import CModel
from keel.edge.stack import worst_stack
from keel.errors import InvalidInputError, KeelError, MissingDependencyError

__all__ = ["MCUS", "EmulationError", "McuProfile", "SizeReport", "measure_size", "run_qemu", "toolchain_problem"]

Mcu = Literal["cortex-m4", "cortex-m0", "host"]
FAULT_EXIT = 250  # set by runtime/startup.c's fault handler
_APT = "apt-get install --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


@dataclass(frozen=True)
class McuProfile:
    """A target part: compiler flags, the flash and RAM a model must fit in, and the QEMU board that runs it."""

    name: str
    part: str
    cpu_flags: tuple[str, ...]
    flash_bytes: int | None
    ram_bytes: int | None
    qemu_machine: str | None


MCUS: dict[str, McuProfile] = {
    # STM32F407VG: 1 MB flash, 192 KB SRAM (128 KB + 64 KB CCM), FPv4 single-precision FPU.
    "cortex-m4": McuProfile(
        "cortex-m4",
        "STM32F407VG (1 MB flash, 192 KB RAM)",
        ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
        1024 * 1024,
        192 * 1024,
        "mps2-an386",
    ),
    # STM32F030K6: 32 KB flash, 4 KB RAM, no FPU (floats in software).
    "cortex-m0": McuProfile(
        "cortex-m0",
        "STM32F030K6 (32 KB flash, 4 KB RAM)",
        ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"),
        32 * 1024,
        4 * 1024,
        "mps2-an385",
    ),
    "host": McuProfile("host", "the build machine (no MCU limits)", (), None, None, None),
}


class EmulationError(KeelError, RuntimeError):
    """The image ran under QEMU but faulted, timed out, or printed something other than the expected rows."""


@dataclass(frozen=True)
class SizeReport:
    """What the model adds to a linked Cortex-M image, and whether the whole image fits the part.

    flash = text + data, static RAM = data + bss, both as (image with model) - (same image without);
    stack = the deepest path of the model's call graph from `-fstack-usage` (library calls such as
    `expf` count 0 and are named in `stack_unknown`).
    """

    mcu: str
    entry: str
    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    image_flash_bytes: int
    image_ram_bytes: int
    flash_limit_bytes: int | None
    ram_limit_bytes: int | None
    stack_unknown: tuple[str, ...] = ()
    stack_dynamic: bool = False

    @property
    def fits_flash(self) -> bool:
        return self.flash_limit_bytes is None or self.image_flash_bytes <= self.flash_limit_bytes

    @property
    def fits_ram(self) -> bool:
        return self.ram_limit_bytes is None or self.image_ram_bytes + self.stack_bytes <= self.ram_limit_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits_flash": self.fits_flash, "fits_ram": self.fits_ram}


def profile(mcu: str) -> McuProfile:
    """The profile named `mcu`, or InvalidInputError listing the known ones."""
    if mcu not in MCUS:
        raise InvalidInputError(f"Unknown mcu {mcu!r}; choose one of {', '.join(MCUS)}.")
    return MCUS[mcu]


def toolchain_problem(*, qemu: bool = True) -> str | None:
    """Why Cortex-M builds (and, with `qemu`, emulated runs) cannot happen here, or None when they can."""
    tools = ["arm-none-eabi-gcc", "arm-none-eabi-size"] + (["qemu-system-arm"] if qemu else [])
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH; install with: {_APT}"
    # newlib ships as a separate package; without it gcc exists but nothing links.
    found = subprocess.run(
        ["arm-none-eabi-gcc", "--specs=nano.specs", "-print-file-name=libc_nano.a"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not Path(found).is_absolute():
        return f"newlib for arm-none-eabi is missing (libc_nano.a not found); install with: {_APT}"
    return None


def _require_toolchain(*, qemu: bool) -> None:
    problem = toolchain_problem(qemu=qemu)
    if problem is not None:
        raise MissingDependencyError(f"Cortex-M {'runs' if qemu else 'size measurement'} unavailable: {problem}")


def _gcc(mcu: McuProfile) -> list[str]:
    return [
        "arm-none-eabi-gcc",
        "-std=c99",  # not gnu99: contraction into vfma would change the last bits vs the host
        "-Os",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-ffunction-sections",
        "-fdata-sections",
        *mcu.cpu_flags,
    ]


_LINK = ["-nostartfiles", "--specs=nano.specs", "--specs=rdimon.specs", "-Wl,--gc-sections", "-T", "mps2.ld"]


@contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="keel-edge-") as tmp:
        yield Path(tmp)


def _copy_runtime(workdir: Path, *names: str) -> None:
    runtime = resources.files("keel.edge").joinpath("runtime")
    for name in names:
        (workdir / name).write_text(runtime.joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")


def _entry(model: CModel, int_entry: bool | None) -> tuple[str, str]:
    """(C input type, entry function): the integer entry when asked, or by default when the model has one."""
    use_int = model.int_input is not None if int_entry is None else int_entry
    if not use_int:
        return "float", model.entry
    if model.int_input is None:
        raise InvalidInputError(f"CModel {model.name!r} has no NAME_predict_int (int_input is None).")
    return model.int_input, f"{model.name}_predict_int"


def _defines(model: CModel, in_type: str, entry: str) -> str:
    return (
        f'#include <stdint.h>\n#include "{model.header}"\n#define KEEL_IN_T {in_type}\n'
        f"#define KEEL_N_FEATURES {len(model.feature_names)}\n#define KEEL_N_OUTPUTS {model.n_outputs}\n"
        f"#define KEEL_PREDICT {entry}\n"
    )


def _size_of(elf: Path, workdir: Path) -> tuple[int, int]:
    """(text + data, data + bss) of an ELF, from arm-none-eabi-size's Berkeley format."""
    out = subprocess.run(["arm-none-eabi-size", str(elf)], cwd=workdir, capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    return text + data, data + bss


def measure_size(
    model: CModel, mcu: str = "cortex-m4", *, int_entry: bool | None = None, workdir: Path | None = None
) -> SizeReport:
    """Link a Cortex-M image calling the model's entry point, and the same image without it; report the difference.

    Raises MissingDependencyError when the arm-none-eabi toolchain is missing, CompileError when the model
    does not build for the part (the message carries gcc's), InvalidInputError for mcu='host'.
    """
    target = profile(mcu)
    if target.qemu_machine is None:
        raise InvalidInputError(
            f"mcu={mcu!r} is not a microcontroller; measure_size takes one of cortex-m4, cortex-m0."
        )
    _require_toolchain(qemu=False)
    in_type, entry = _entry(model, int_entry)
    with _workdir(workdir) as work:
        sources = write_sources(model, work)
        _copy_runtime(work, "startup.c", "mps2.ld", "size_main.c")
        (work / "keel_probe.h").write_text(_defines(model, in_type, entry), encoding="utf-8")
        gcc = _gcc(target)
        objects = []
        for source in sources:
            obj = source.with_suffix(".o")
            argv = [*gcc, "-c", "-fstack-usage", "-fcallgraph-info=su", source.name, "-o", obj.name]
            run_compiler(argv, cwd=work, what=f"Cortex-M build of {source.name} for {mcu}")
            objects.append(obj.name)
        base = [*gcc, *_LINK, "startup.c", "size_main.c"]
        run_compiler([*base, "-lm", "-o", "base.elf"], cwd=work, what=f"Size probe without the model ({mcu})")
        run_compiler(
            [*base, "-DKEEL_WITH_MODEL", *objects, "-lm", "-o", "with.elf"],
            cwd=work,
            what=f"Size probe with {model.name!r} ({mcu})",
        )
        base_flash, base_ram = _size_of(work / "base.elf", work)
        flash, ram = _size_of(work / "with.elf", work)
        stack = worst_stack(sorted(work.glob("*.ci")), entry)
    return SizeReport(
        mcu=mcu,
        entry=entry,
        flash_bytes=flash - base_flash,
        ram_bytes=ram - base_ram,
        stack_bytes=stack.bytes,
        image_flash_bytes=flash,
        image_ram_bytes=ram,
        flash_limit_bytes=target.flash_bytes,
        ram_limit_bytes=target.ram_bytes,
        stack_unknown=stack.unknown,
        stack_dynamic=stack.dynamic,
    )


def _c_float(value: float) -> str:
    if np.isnan(value):
        return "NAN"
    if np.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    return float(np.float32(value)).hex() + "f"  # hex: the exact float32, no decimal rounding


def _rows_source(model: CModel, rows: npt.NDArray[Any], in_type: str, entry: str) -> tuple[str, str]:
    header = (
        _defines(model, in_type, entry)
        + f"#define KEEL_N_ROWS {rows.shape[0]}\n"
        + "extern const KEEL_IN_T KEEL_ROWS[KEEL_N_ROWS][KEEL_N_FEATURES];\n"
    )
    to_c = _c_float if in_type == "float" else (lambda v: str(int(v)))
    body = ",\n".join("{" + ", ".join(to_c(v) for v in row) + "}" for row in rows.tolist())
    source = f'#include <math.h>\n#include "keel_rows.h"\nconst KEEL_IN_T KEEL_ROWS[KEEL_N_ROWS][KEEL_N_FEATURES] = {{\n{body}\n}};\n'
    return header, source


def _parse_rows(stdout: str, n_rows: int, n_outputs: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    classes = np.zeros(n_rows, dtype=np.int32)
    bits = np.zeros((n_rows, n_outputs), dtype=np.uint32)
    seen = 0
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["R"] and len(parts) == 3 + n_outputs:
            index = int(parts[1])
            classes[index] = int(parts[2])
            bits[index] = [int(word, 16) for word in parts[3:]]
            seen += 1
        elif parts == ["END", str(n_rows)] and seen == n_rows:
            return classes, bits.view(np.float32)
    raise EmulationError(f"QEMU printed {seen} of {n_rows} rows and no END line; output ends with: {stdout[-500:]!r}")


def _qemu(machine: str, elf: Path, *, cwd: Path, timeout_s: float) -> str:
    argv = ["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-serial", "none"]
    argv += ["-semihosting-config", "enable=on,target=native", "-kernel", str(elf.resolve())]
    try:
        done = subprocess.run(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EmulationError(
            f"QEMU ({machine}) did not finish within {timeout_s:g} s (a hang or an endless loop in the model); "
            "raise timeout_s if the rows are many."
        ) from exc
    if done.returncode == FAULT_EXIT:
        rows_done = done.stdout.count("\nR ") + done.stdout.startswith("R ")
        raise EmulationError(
            f"The model caused a CPU fault on {machine} (exit {FAULT_EXIT}) after {rows_done} rows: "
            "an out-of-bounds access, an unaligned or undefined instruction, or a stack overflow."
        )
    if done.returncode != 0:
        raise EmulationError(f"QEMU ({machine}) exited with {done.returncode}; stderr: {done.stderr.strip()[-1000:]!r}")
    return done.stdout


def run_qemu(
    model: CModel,
    X: npt.ArrayLike,
    mcu: str = "cortex-m4",
    *,
    timeout_s: float = 60.0,
    int_entry: bool = False,
    workdir: Path | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Score the rows of `X` on an emulated Cortex-M: (class indices, float32 scores of shape (n, n_outputs)).

    The rows are compiled into the image (as exact float32 hex literals, or quantized with
    `quantize_input` for the integer entry), and the scores come back as raw bits, so they can be
    compared with the host build bit for bit. Raises EmulationError on a CPU fault or a timeout.
    """
    target = profile(mcu)
    if target.qemu_machine is None:
        raise InvalidInputError(f"mcu={mcu!r} has no emulated board; run_qemu takes cortex-m4 or cortex-m0.")
    _require_toolchain(qemu=True)
    in_type, entry = _entry(model, int_entry)
    rows = np.asarray(X, dtype=np.float32) if in_type == "float" else quantize_input(model, X)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != len(model.feature_names):
        raise InvalidInputError(
            f"X has shape {np.shape(X)}; run_qemu needs at least one row of {len(model.feature_names)} features."
        )
    with _workdir(workdir) as work:
        sources = write_sources(model, work)
        _copy_runtime(work, "startup.c", "mps2.ld", "qemu_main.c")
        header, source = _rows_source(model, rows, in_type, entry)
        (work / "keel_rows.h").write_text(header, encoding="utf-8")
        (work / "keel_rows.c").write_text(source, encoding="utf-8")
        argv = [*_gcc(target), *_LINK, "startup.c", "qemu_main.c", "keel_rows.c", *(s.name for s in sources)]
        run_compiler([*argv, "-lm", "-o", "app.elf"], cwd=work, what=f"QEMU image of {model.name!r} ({mcu})")
        stdout = _qemu(target.qemu_machine, work / "app.elf", cwd=work, timeout_s=timeout_s)
    return _parse_rows(stdout, rows.shape[0], model.n_outputs)
