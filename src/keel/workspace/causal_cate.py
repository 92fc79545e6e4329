"""Heterogeneous effects as a use case (`ws.causal.cate(...)`): for whom does the treatment work? The
meta-learners of keel.causal.cate fitted on a study's dataset version and adjustment set, one chosen
by a cross-validated score (R-loss or doubly robust), stored as the study's 'cate' result with the
choice and every candidate's score, the distribution of the effects, and the uplift / Qini curves of
targeting by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.entities_studies import StudyResult

if TYPE_CHECKING:
    from keel.causal import CateResult
    from keel.entities_studies import Study
    from keel.workspace.causal import Causal

__all__ = ["estimate_cate", "QUANTILES"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
BINS = 20


def estimate_cate(
    causal: Causal,
    study_ref: str | Study,
    *,
    learners: Sequence[str] | None = None,
    selection: Literal["r_loss", "dr"] = "r_loss",
    seed: int = 0,
) -> tuple[CateResult, StudyResult]:
    """Fit the T/S/X/DR meta-learners (`learners`, default all) on the study's binary treatment,
    choose one by `selection` and store the 'cate' result. Returns the fit and the stored result."""
    from keel.causal import estimate_cate as fit
    from keel.causal import uplift_curve
    from keel.causal._prep import prepare
    from keel.causal.cate import LEARNERS

    study = causal._backdoor(study_ref)
    data = prepare(causal.frame(study), study.treatment, study.outcome, study.covariates)
    result = fit(
        data.x, data.t.astype(int), data.y, learners=tuple(learners or LEARNERS), selection=selection, seed=seed
    )
    curve = uplift_curve(result.cate, dr_scores=result.dr_effects, n_points=50)
    counts, edges = np.histogram(result.cate, bins=BINS)
    payload: dict[str, Any] = {
        "learner": result.learner,
        "model": result.model,
        "selection": result.selection,
        "scores": dict(result.scores),
        "near_best": list(result.near_best),
        "nuisance": dict(result.nuisance),
        "ate": result.ate,
        "ate_se": result.ate_se,
        "ate_interval": list(result.ate_interval),
        "level": result.level,
        "propensity_range": list(result.propensity_range),
        "n_clipped": result.n_clipped,
        "n": result.n,
        "n_folds": result.n_folds,
        "seed": seed,
        "covariates": list(study.covariates),
        "quantiles": {str(q): float(np.quantile(result.cate, q)) for q in QUANTILES},
        "share_positive": float(np.mean(result.cate > 0)),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        # Targeting by the effects the learners give for the rows they were fitted on: the ranking
        # is in-sample; the doubly robust pseudo-outcomes it is measured with are cross-fitted.
        "uplift": {"1": {**curve.to_dict(), "ranking": "in-sample (the learners were fitted on these rows)"}},
    }
    return result, causal.add_result(study, "cate", payload)
