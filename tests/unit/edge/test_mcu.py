"""Cortex-M size and QEMU runs (integration: they need arm-none-eabi-gcc, newlib and qemu-system-arm,
which .ci/run installs; each test skips with the reason where they are missing)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from unit.edge.cmodels import linear_cmodel, linear_reference, with_body

from keel.edge.host import CompileError, compile_host
from keel.edge.mcu import MCUS, EmulationError, measure_size, run_qemu, toolchain_problem
from keel.errors import InvalidInputError


@pytest.fixture(autouse=True)
def _toolchain() -> None:
    problem = toolchain_problem()
    if problem is not None:
        print(f"skipping Cortex-M test: {problem}")
        pytest.skip(problem)


def test_size_is_positive_and_grows_with_the_weight_table() -> None:
    small = measure_size(linear_cmodel(4, 3)[0], "cortex-m4")
    large = measure_size(linear_cmodel(64, 10)[0], "cortex-m4")
    assert 0 < small.flash_bytes < 1024
    # the table grows by (64*10 - 4*3) floats of 4 bytes; code stays about the same
    assert large.flash_bytes - small.flash_bytes >= (64 * 10 - 4 * 3) * 4
    assert small.ram_bytes == 0  # const tables stay in flash
    assert 0 < small.stack_bytes < 256
    assert small.fits_flash and small.fits_ram and small.flash_limit_bytes == MCUS["cortex-m4"].flash_bytes


def test_cortex_m0_build_is_soft_float_and_bigger() -> None:
    model = linear_cmodel(4, 3)[0]
    m0, m4 = measure_size(model, "cortex-m0"), measure_size(model, "cortex-m4")
    assert m0.flash_bytes > m4.flash_bytes  # software float routines
    assert "__aeabi_fmul" in m0.stack_unknown


def test_a_table_too_big_for_the_m0_is_reported_as_not_fitting() -> None:
    report = measure_size(linear_cmodel(100, 100)[0], "cortex-m0")  # 40 KB of weights, 32 KB of flash
    assert not report.fits_flash and report.flash_bytes > 40_000


def test_size_measurement_refuses_the_host_profile() -> None:
    with pytest.raises(InvalidInputError, match="cortex-m4"):
        measure_size(linear_cmodel()[0], "host")


def test_arm_compile_error_carries_gcc_message() -> None:
    with pytest.raises(CompileError, match="nope"):
        measure_size(with_body("bad", "return nope;"), "cortex-m4")


@pytest.mark.parametrize("mcu", ["cortex-m4", "cortex-m0"])
def test_qemu_reproduces_the_host_bit_for_bit(tmp_path: Path, mcu: str) -> None:
    model, W, b = linear_cmodel(8, 3)
    X = np.random.default_rng(3).normal(size=(50, 8)).astype(np.float32)
    X[0, 0], X[1, 1] = np.float32(-0.0), np.float32(1e-40)  # signed zero and a subnormal travel exactly
    started = time.perf_counter()
    q_classes, q_scores = run_qemu(model, X, mcu, timeout_s=60)
    print(f"{mcu}: 50 rows in QEMU in {time.perf_counter() - started:.2f} s (build + run)")
    h_classes, h_scores = compile_host(model, tmp_path).predict(X)
    np.testing.assert_array_equal(q_classes, h_classes)
    np.testing.assert_array_equal(q_scores.view(np.uint32), h_scores.view(np.uint32))
    np.testing.assert_array_equal(q_scores.view(np.uint32), linear_reference(W, b, X)[1].view(np.uint32))


def test_a_cpu_fault_is_reported_with_the_rows_done() -> None:
    body = "if (features[0] > 0.5f) *(volatile int *)0xFFFFFFF0u = 1;\nscores[0] = features[1];\nreturn 0;"
    with pytest.raises(EmulationError, match="CPU fault.*after 2 rows"):
        run_qemu(with_body("crash", body), np.array([[0, 1], [0, 2], [1, 3]]), timeout_s=30)


def test_a_hang_is_reported_as_a_timeout(tmp_path: Path) -> None:
    body = "volatile int spin = 1;\nwhile (spin) {}\nscores[0] = features[0];\nreturn 0;"
    started = time.perf_counter()
    with pytest.raises(EmulationError, match="did not finish within 2 s"):
        run_qemu(with_body("hang", body), np.zeros((1, 2)), timeout_s=2, workdir=tmp_path)
    assert time.perf_counter() - started < 20


def test_integer_entry_runs_on_qemu_like_on_the_host(tmp_path: Path) -> None:
    header = "#include <stdint.h>\nint q_predict(const float *f, float *s);\nint q_predict_int(const int16_t *f, float *s);\n"
    source = (
        '#include "q.h"\n'
        "int q_predict(const float *f, float *s) { s[0] = f[0] + f[1]; return 0; }\n"
        "int q_predict_int(const int16_t *f, float *s) { s[0] = (float)f[0] * 0.5f - (float)f[1]; return f[0] > f[1]; }\n"
    )
    model = replace(
        with_body("q", ""), files={"q.h": header, "q.c": source}, int_input="int16_t", input_scale=(10.0, 100.0)
    )
    X = np.random.default_rng(5).normal(scale=50, size=(20, 2))
    q_classes, q_scores = run_qemu(model, X, int_entry=True)
    h_classes, h_scores = compile_host(model, tmp_path).predict_int(X)
    np.testing.assert_array_equal(q_classes, h_classes)
    np.testing.assert_array_equal(q_scores.view(np.uint32), h_scores.view(np.uint32))
    assert measure_size(model).entry == "q_predict_int"  # the integer entry is the default when there is one
