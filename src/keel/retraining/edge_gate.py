"""Does an edge build still stand for its model? The check a project's edge targets put on every new
champion (`edge:` in keel.yaml; see project.EdgeLoop).

Pure, like gate.py: a build report in (the plain JSON `ws.edge.build` stores), a verdict out. A build
keeps its standing when its predicted classes agree with the Python model's on at least
`min_agreement` of the holdout rows (on the host and, where it ran, on the emulated MCU), its scores
stay within `max_abs_diff` where one is set, and the model fits the MCU's flash and RAM as measured
from the linked image. A build that could not be made at all (too large for the part, a layer the
target cannot hold) fails with the builder's own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from keel.entities import ModelVersion
from keel.errors import KeelError
from keel.retraining.project import EdgeLoop, EdgeTarget, Project

__all__ = ["BuildVerdict", "EdgeBuilder", "edge_checks", "failed_build", "follow_edge", "judge_build"]


@dataclass(frozen=True)
class BuildVerdict:
    target: str  # 'c/int8/cortex-m4'
    passed: bool
    reasons: tuple[str, ...]  # one sentence per check, failed ones first
    build: int | None = None  # the stored build, when one was made

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "passed": self.passed, "reasons": list(self.reasons), "build": self.build}

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def failed_build(target: EdgeTarget, error: str) -> BuildVerdict:
    """The verdict on a build that could not be made (the builder refused the model or ran out of room)."""
    return BuildVerdict(target.label, False, (f"the build could not be made: {error}",))


def judge_build(
    report: dict[str, Any], target: EdgeTarget, loop: EdgeLoop, *, build: int | None = None
) -> BuildVerdict:
    """The verdict on one stored build's report against the target's limits (else the loop's)."""
    need = target.min_agreement if target.min_agreement is not None else loop.min_agreement
    max_diff = target.max_abs_diff if target.max_abs_diff is not None else loop.max_abs_diff
    failed: list[str] = []
    passed: list[str] = []
    n = report.get("n_rows") or 0
    for where, agreement, diff in (
        ("on the host", report.get("class_agreement"), report.get("max_abs_score_diff")),
        ("on the emulated MCU", report.get("qemu_class_agreement"), report.get("qemu_max_abs_score_diff")),
    ):
        if agreement is not None:
            text = f"agreement {where} {agreement:.2%} of {n:,} rows (needs {need:.2%})"
            (passed if agreement >= need else failed).append(text)
        if diff is not None and max_diff is not None:
            text = f"largest score difference {where} {diff:.3g} (allowed {max_diff:.3g})"
            (passed if diff <= max_diff else failed).append(text)
    if report.get("class_agreement") is None and max_diff is None:
        # A regressor has no classes to agree on: without max_abs_diff nothing bounds its error.
        failed.append("a regressor's build needs max_abs_diff in the project's edge section to be judged")
    size = report.get("size")
    if size:
        for what, fits, used, limit in (
            ("flash", size.get("fits_flash"), size.get("image_flash_bytes"), size.get("flash_limit_bytes")),
            ("RAM", size.get("fits_ram"), size.get("image_ram_bytes"), size.get("ram_limit_bytes")),
        ):
            if fits is None or limit is None:
                continue
            text = f"{what} {used:,} B of the {target.mcu}'s {limit:,} B"
            (passed if fits else failed).append(text if fits else f"does not fit: {text}")
    elif report.get("size_skipped") and target.target == "c" and target.mcu != "host":
        passed.append(f"size not measured: {report['size_skipped']}")
    return BuildVerdict(target.label, not failed, tuple(failed + passed), build)


class EdgeBuilder(Protocol):
    """What the retraining needs of the workspace's edge builds (keel.workspace.edge_loop wires it):
    `check` builds and judges the targets for a version on the cycle's holdout, now; `follow` queues
    that as a job (the `alert` mode), returning the job's id."""

    def check(self, version: ModelVersion, loop: EdgeLoop, X: Any, y: Any) -> list[BuildVerdict]: ...

    def follow(self, version: ModelVersion, loop: EdgeLoop) -> int: ...


def edge_checks(
    builder: EdgeBuilder | None, project: Project, candidate: ModelVersion, X: Any, y: Any, evidence: dict[str, Any]
) -> dict[str, Any]:
    """Build the project's edge targets for the challenger and judge each on the holdout (X, y); the
    gate weighs them as checks, so a build that loses agreement or does not fit fails the promotion.
    What was built and why it passed or failed goes into the cycle's evidence (the timeline shows it)."""
    assert project.edge is not None
    if builder is None:
        evidence["edge"] = {"mode": "gate", "skipped": "this workspace has no edge builder"}
        return {}
    verdicts = builder.check(candidate, project.edge, X, y)
    evidence["edge"] = {"mode": "gate", "builds": [v.to_dict() for v in verdicts]}
    return {f"edge {v.target}": (v.passed, v.reason) for v in verdicts}


def follow_edge(builder: EdgeBuilder | None, project: Project, version: ModelVersion, evidence: dict[str, Any]) -> None:
    """A new champion under `on_failure: alert`: its edge builds follow as a job (a failing one alerts)."""
    if project.edge is None or project.edge.on_failure != "alert" or builder is None:
        return
    try:
        evidence["edge"] = {"mode": "alert", "job": builder.follow(version, project.edge)}
    except KeelError as exc:  # the promotion stands; the builds that did not start are said in the decision
        evidence["edge"] = {"mode": "alert", "error": str(exc)}
