"""Compute values of keel.causal as the plain JSON that keel.studies stores: an estimate record, a
refutation result, and the change of a study's effect between two versions (the loop of `rerun`).

The payload keys are an interface: the dashboard and the REST API read them as stored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.entities_studies import StudyEstimate

if TYPE_CHECKING:
    from keel.causal import Estimate
    from keel.causal.refute import Refutation

__all__ = ["DRIFT_RULE", "Z_DRIFT", "effect_change", "estimate_record", "plain", "refutation_payload"]

Z_DRIFT = 1.959963984540054
DRIFT_RULE = (
    "drifted when the two 95% intervals are disjoint or |z| > 1.96, z = (new - previous) / "
    "sqrt(stderr_previous^2 + stderr_new^2) (the two versions' estimates taken as independent)"
)


def plain(value: Any) -> Any:
    """JSON-storable: tuples as lists, numpy scalars as Python numbers, NaN and infinities as None."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def estimate_record(estimate: Estimate, seed: int) -> dict[str, Any]:
    """A compute Estimate as the plain record keel.studies stores."""
    trimming = estimate.trimming
    return {
        "estimator": estimate.estimator,
        "estimand": estimate.estimand,
        "value": estimate.value,
        "stderr": estimate.stderr,
        "ci_low": estimate.ci_low,
        "ci_high": estimate.ci_high,
        "interval_method": estimate.interval_method,
        "n": int(estimate.n),
        "details": plain(
            {
                "overlap": dataclasses.asdict(estimate.overlap) if estimate.overlap is not None else None,
                "notes": list(estimate.notes),
                "trimming": {
                    "bounds": trimming.bounds,
                    "n_dropped_treated": trimming.n_dropped_treated,
                    "n_dropped_control": trimming.n_dropped_control,
                },
                "covariates": list(estimate.covariates),
                "seed": seed,
            }
        ),
    }


def refutation_payload(result: Refutation) -> dict[str, Any]:
    """A Refutation as a 'refutation' result: {estimate, checks, verdict, reasons, agree, disagreements, seed}."""
    e = result.estimate
    return plain(
        {
            "estimate": {
                "estimator": e.estimator,
                "estimand": e.estimand,
                "value": e.value,
                "stderr": e.stderr,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "n": int(e.n),
            },
            "checks": [
                {"name": c.name, "passed": c.passed, "value": c.value, "reason": c.reason} for c in result.checks
            ],
            "verdict": result.verdict,
            "reasons": list(result.reasons),
            "agree": result.comparison.agree,
            "disagreements": list(result.comparison.disagreements),
            "seed": result.seed,
        }
    )


def effect_change(
    previous: Sequence[StudyEstimate], new: Sequence[StudyEstimate], *, previous_dataset: str, dataset: str
) -> dict[str, Any]:
    """The 'effect_change' payload: per estimator in both runs, the previous and new effect, their
    difference, its standard error, z, whether the intervals are disjoint, and whether it drifted."""
    before = {(e.estimator, e.estimand): e for e in previous}
    rows = []
    for e in new:
        old = before.get((e.estimator, e.estimand))
        if old is None:
            continue
        difference = e.value - old.value
        stderr = math.sqrt(old.stderr**2 + e.stderr**2) if math.isfinite(old.stderr + e.stderr) else math.nan
        z = difference / stderr if stderr > 0 else math.nan
        disjoint = e.ci_low > old.ci_high or e.ci_high < old.ci_low
        rows.append(
            {
                "estimator": e.estimator,
                "estimand": e.estimand,
                "previous": old.value,
                "new": e.value,
                "difference": difference,
                "stderr": stderr,
                "z": z,
                "previous_ci": [old.ci_low, old.ci_high],
                "new_ci": [e.ci_low, e.ci_high],
                "intervals_disjoint": disjoint,
                "drifted": bool(disjoint or (math.isfinite(z) and abs(z) > Z_DRIFT)),
            }
        )
    return plain(
        {
            "previous_study": previous[0].study if previous else None,
            "study": new[0].study if new else None,
            "previous_dataset": previous_dataset,
            "dataset": dataset,
            "rule": DRIFT_RULE,
            "estimators": rows,
            "drifted": any(row["drifted"] for row in rows),
        }
    )
