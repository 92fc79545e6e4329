"""The promotion gate: does a challenger beat the champion on the same holdout?

Pure: metrics in, a verdict out. The primary metric must improve by at least `min_improvement`
(in its own direction: higher AUC, lower log loss); every other metric named in `tolerance` may
be worse by at most its tolerance; each custom check (`module:function`, called with the
challenger, the champion, the holdout and both metric dicts) may veto with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keel.retraining.project import LOWER_IS_BETTER, Project

__all__ = ["Verdict", "judge"]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]  # why it passed or failed, one line each
    checks: dict[str, Any] = field(default_factory=dict)  # name -> {"passed": bool, ...}


def _gain(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is, positive when better, in the metric's own units."""
    return champion - challenger if metric in LOWER_IS_BETTER else challenger - champion


def judge(
    project: Project,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    custom: dict[str, Any] | None = None,
) -> Verdict:
    """The verdict on `challenger`'s holdout metrics against `champion`'s (None: no champion yet).

    `custom` maps each of the project's check names to what it returned: True/False, or
    (bool, reason).
    """
    gate = project.gate
    primary = project.evaluation.primary
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    if primary not in challenger:
        reasons.append(f"{primary} could not be computed for the challenger on the holdout")
        checks["primary"] = {"passed": False, "metric": primary}
    elif champion is None:
        reasons.append("no champion to beat: the first version is promoted on its own holdout metrics")
        checks["primary"] = {"passed": True, "metric": primary, "challenger": challenger[primary], "champion": None}
    elif primary not in champion:
        reasons.append(f"the champion cannot be scored on {primary} for this holdout; the challenger wins by default")
        checks["primary"] = {"passed": True, "metric": primary, "challenger": challenger[primary], "champion": None}
    else:
        gain = _gain(primary, challenger[primary], champion[primary])
        ok = gain >= gate.min_improvement
        verb = (
            "improves" if gain > 0 else "matches the champion" if ok else "does not improve"
        )  # a tie passes at min_improvement 0
        reasons.append(
            f"{primary} {verb}: {challenger[primary]:.4f} vs {champion[primary]:.4f} "
            f"({gain:+.4f}, needs {gate.min_improvement:+.4f})"
        )
        checks["primary"] = {
            "passed": ok,
            "metric": primary,
            "challenger": challenger[primary],
            "champion": champion[primary],
            "gain": gain,
            "needed": gate.min_improvement,
        }
    if champion:
        for metric, tolerance in sorted(gate.tolerance.items()):
            if metric == primary or metric not in challenger or metric not in champion:
                continue
            loss = -_gain(metric, challenger[metric], champion[metric])
            ok = loss <= tolerance
            checks[f"tolerance:{metric}"] = {
                "passed": ok,
                "challenger": challenger[metric],
                "champion": champion[metric],
                "regression": loss,
                "tolerance": tolerance,
            }
            if not ok:
                reasons.append(f"{metric} regresses by {loss:.4f}, more than the tolerance {tolerance:.4f}")
    for name, result in (custom or {}).items():
        ok, why = result if isinstance(result, tuple) else (result, "")
        checks[f"check:{name}"] = {"passed": bool(ok), "reason": str(why)}
        if not ok:
            reasons.append(f"check {name} failed" + (f": {why}" if why else ""))
    passed = all(c["passed"] for c in checks.values())
    return Verdict(passed, tuple(reasons), checks)
