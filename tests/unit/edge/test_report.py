from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from unit.edge.cmodels import linear_cmodel, linear_reference

from keel.edge.mcu import toolchain_problem
from keel.edge.report import verify
from keel.edge.source import CModel
from keel.errors import InvalidInputError

LABELS = ("low", "mid", "high")


def _setup(n: int = 60) -> tuple[CModel, np.ndarray, np.ndarray, np.ndarray]:
    model, W, b = linear_cmodel(5, 3)
    model = replace(model, classes=LABELS, notes=("hand-written",))
    X = np.random.default_rng(4).normal(size=(n, 5)).astype(np.float32)
    idx, scores = linear_reference(W, b, X)
    return model, X, np.array(LABELS)[idx], scores.astype(np.float64)


def test_report_on_the_host_profile_agrees_and_says_why_mcu_checks_were_skipped() -> None:
    model, X, labels, scores = _setup()
    y = labels.copy()
    y[:6] = "low"
    report = verify(model, labels, scores, X, y, mcu="host")
    assert report.class_agreement == 1.0 and report.max_abs_score_diff == 0.0
    assert report.accuracy_python == report.accuracy_c == pytest.approx(np.mean(labels == y))
    assert report.host_latency_us > 0
    assert report.size is None and "no flash/RAM" in (report.size_skipped or "")
    assert "no emulated board" in (report.qemu_skipped or "")
    assert report.notes == ("hand-written",)
    json.dumps(report.to_dict())


def test_disagreement_is_counted() -> None:
    model, X, labels, scores = _setup()
    labels[:3] = ["high" if v != "high" else "low" for v in labels[:3]]
    report = verify(model, labels, scores + 0.25, X, mcu="host", qemu=False)
    assert report.class_agreement == pytest.approx(57 / 60)
    assert report.max_abs_score_diff == pytest.approx(0.25)
    assert report.accuracy_c is None and report.qemu_skipped == "not requested (qemu=False)"


def test_unknown_label_is_a_clear_error() -> None:
    model, X, labels, scores = _setup()
    labels[0] = "huge"
    with pytest.raises(InvalidInputError, match="huge"):
        verify(model, labels, scores, X, mcu="host")


def test_full_report_on_cortex_m4_runs_qemu() -> None:
    problem = toolchain_problem()
    if problem is not None:
        print(f"skipping Cortex-M report test: {problem}")
        pytest.skip(problem)
    model, X, labels, scores = _setup(50)
    report = verify(model, labels, scores, X, labels, mcu="cortex-m4")
    assert report.size is not None and report.size.flash_bytes > 0 and report.size_skipped is None
    assert report.qemu_rows == 50 and report.qemu_skipped is None
    assert report.qemu_bit_exact_vs_host and report.qemu_class_agreement == 1.0
    assert report.qemu_max_abs_score_diff == 0.0
    assert set(report.timings_s) >= {"host_compile", "size", "qemu"}
    assert report.to_dict()["size"]["fits_flash"] is True
