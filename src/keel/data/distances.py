"""Distances between two histograms over the same bins: the population stability index and the
Jensen-Shannon distance. Values in, values out. One home for both: dataset diffs (keel.data.diff)
and monitors (keel.monitoring._drift) give the same number for the same counts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PSI_FLOOR", "js_distance", "psi"]

# Proportions are floored here before the PSI's log ratio: an empty bin would make it infinite.
PSI_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins (proportions floored
    at PSI_FLOOR)."""
    e = np.clip(expected / max(float(expected.sum()), 1.0), PSI_FLOOR, None)
    a = np.clip(actual / max(float(actual.sum()), 1.0), PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (so in [0, 1]), of two count vectors."""
    p = p / max(float(p.sum()), 1.0)
    q = q / max(float(q.sum()), 1.0)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.5 * (kl_p + kl_q), 0.0)))
