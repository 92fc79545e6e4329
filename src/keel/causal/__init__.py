"""Causal effects (compute: values in, values out; never storage): causal graphs and identification
(`graph.py`, DOT/GML in `_parse.py`), average-effect estimators with intervals and their agreement
(`estimators.py`), the overlap report that travels with every propensity-based estimate
(`overlap.py`), heterogeneous effects by meta-learners chosen on a cross-validated score (`cate.py`), refutation
in one call with a verdict (`refute.py`),
and what-if questions through a structural causal model fitted on the graph (`whatif.py`);
targeting: multi-action doubly robust policy trees that read as rules (`policy.py`, the tree value
in `_policy_tree.py`, its exact search in `_policy_search.py`) and uplift / Qini curves (`uplift.py`). The
workspace's causal studies (issue 13, next) load a dataset version and call these.

May import: keel.errors, numpy, pandas, scipy, scikit-learn; lightgbm (the `causal` extra) only
inside the functions whose default models use it.
"""

from keel.causal.cate import CateResult, estimate_cate
from keel.causal.estimators import (
    ESTIMATORS,
    Comparison,
    Estimate,
    Trimming,
    aipw,
    compare_estimators,
    dml,
    ipw,
    regression_adjustment,
    summarise,
)
from keel.causal.graph import CausalGraph, Identification, causal_graph, check_graph, identify_effect
from keel.causal.overlap import OverlapReport, balancing_weights, overlap_report
from keel.causal.policy import PolicyResult, PolicyTree, PolicyValue, dr_scores, learn_policy
from keel.causal.refute import Check, Refutation, refute, robustness_value
from keel.causal.uplift import UpliftCurve, uplift_curve
from keel.causal.whatif import StructuralCausalModel, WhatIfResult, fit_scm

__all__ = [
    "PolicyTree",
    "PolicyResult",
    "PolicyValue",
    "learn_policy",
    "dr_scores",
    "UpliftCurve",
    "uplift_curve",
    "CateResult",
    "estimate_cate",
    "StructuralCausalModel",
    "WhatIfResult",
    "fit_scm",
    "CausalGraph",
    "Identification",
    "causal_graph",
    "check_graph",
    "identify_effect",
    "Estimate",
    "Trimming",
    "Comparison",
    "ESTIMATORS",
    "regression_adjustment",
    "ipw",
    "aipw",
    "dml",
    "compare_estimators",
    "summarise",
    "OverlapReport",
    "overlap_report",
    "balancing_weights",
    "Refutation",
    "Check",
    "refute",
    "robustness_value",
]
