"""Custom gate checks that ship with Keel, named in a project as `keel.retraining.checks:NAME`.

A check is called with `challenger`, `champion` (the loaded model or None), the holdout `X` and
`y`, and both models' `metrics`; it returns True/False or (bool, reason). A project's own checks
follow the same contract (`gate.checks: [my_pkg.checks:fair]`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["not_constant"]


def not_constant(*, challenger: Any, X: Any, **_: Any) -> tuple[bool, str]:
    """Veto a challenger that gives every holdout row the same prediction: a degenerate model can
    still pass a tolerance-only gate (accuracy of the majority class) and is never worth serving."""
    import numpy as np

    predicted = np.unique(np.asarray(challenger.predict(X)).astype(str))
    if len(predicted) < 2:
        return False, f"the challenger predicts {predicted[0] if len(predicted) else 'nothing'} for every holdout row"
    return True, f"{len(predicted)} distinct predictions on the holdout"
