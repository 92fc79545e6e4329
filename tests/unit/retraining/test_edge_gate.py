"""The edge check a project puts on each new champion: pure, a build report in, a verdict out."""

from __future__ import annotations

from typing import Any

from keel.retraining.edge_gate import failed_build, judge_build
from keel.retraining.project import EdgeLoop, EdgeTarget

TARGET = EdgeTarget("c", "int8", "cortex-m0")


def report(**changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n_rows": 450,
        "class_agreement": 1.0,
        "max_abs_score_diff": 0.004,
        "qemu_class_agreement": 1.0,
        "qemu_max_abs_score_diff": 0.004,
        "size": {
            "fits_flash": True,
            "fits_ram": True,
            "image_flash_bytes": 9000,
            "flash_limit_bytes": 32768,
            "image_ram_bytes": 900,
            "ram_limit_bytes": 4096,
        },
    }
    out.update(changes)
    return out


def test_a_build_that_agrees_and_fits_keeps_its_standing() -> None:
    verdict = judge_build(report(), TARGET, EdgeLoop((TARGET,)), build=7)
    assert verdict.passed and verdict.build == 7 and verdict.target == "c/int8/cortex-m0"
    assert "agreement on the host 100.00% of 450 rows (needs 100.00%)" in verdict.reason
    assert "flash 9,000 B of the cortex-m0's 32,768 B" in verdict.reason


def test_lost_agreement_on_the_host_or_the_emulated_mcu_fails() -> None:
    loop = EdgeLoop((TARGET,), min_agreement=0.995)
    host = judge_build(report(class_agreement=0.99), TARGET, loop)
    assert not host.passed and host.reasons[0] == "agreement on the host 99.00% of 450 rows (needs 99.50%)"
    mcu = judge_build(report(qemu_class_agreement=0.98), TARGET, loop)
    assert not mcu.passed and mcu.reasons[0].startswith("agreement on the emulated MCU 98.00%")
    lenient = EdgeTarget("c", "int8", "cortex-m0", min_agreement=0.98)  # the target's own limit wins
    assert judge_build(report(class_agreement=0.99, qemu_class_agreement=0.98), lenient, loop).passed


def test_a_build_that_no_longer_fits_fails_and_says_how_big_it_is() -> None:
    size = {**report()["size"], "fits_flash": False, "image_flash_bytes": 40000}
    verdict = judge_build(report(size=size), TARGET, EdgeLoop((TARGET,)))
    assert not verdict.passed
    assert verdict.reasons[0] == "does not fit: flash 40,000 B of the cortex-m0's 32,768 B"


def test_a_regressor_is_judged_on_its_score_difference_and_needs_a_bound() -> None:
    regressor = report(class_agreement=None, qemu_class_agreement=None, max_abs_score_diff=0.02)
    unbounded = judge_build(regressor, TARGET, EdgeLoop((TARGET,)))
    assert not unbounded.passed and "needs max_abs_diff" in unbounded.reason
    assert judge_build(regressor, TARGET, EdgeLoop((TARGET,), max_abs_diff=0.05)).passed
    tight = judge_build(regressor, TARGET, EdgeLoop((TARGET,), max_abs_diff=0.01))
    assert not tight.passed and tight.reasons[0] == "largest score difference on the host 0.02 (allowed 0.01)"


def test_a_build_that_could_not_be_made_fails_with_the_builders_message() -> None:
    verdict = failed_build(TARGET, "the model needs 96 KB, over max_flash_bytes=32768")
    assert not verdict.passed and verdict.build is None
    assert verdict.to_dict() == {
        "target": "c/int8/cortex-m0",
        "passed": False,
        "reasons": ["the build could not be made: the model needs 96 KB, over max_flash_bytes=32768"],
        "build": None,
    }
