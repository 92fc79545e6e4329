"""Targeting as a use case (`ws.causal.policy(...)`): learn which action suits whom from a causal
study's dataset version, store the summary as the study's 'policy' result, and optionally register
the tree as a model version of the `policy` flavour, linked to that dataset version.

The study's treatment is the action (K >= 2 values, one the baseline), its outcome what the policy
maximises, and its adjustment set the covariates of the doubly robust scores (keel.causal.policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keel.entities import ModelVersion
from keel.entities_studies import StudyResult
from keel.errors import InvalidInputError
from keel.workspace.causal_records import plain

if TYPE_CHECKING:
    from keel.causal import PolicyResult
    from keel.entities_studies import Study
    from keel.workspace.causal import Causal

__all__ = ["learn_policy", "uplift"]


def learn_policy(
    causal: Causal,
    study_ref: str | Study,
    *,
    features: Sequence[str] | None = None,
    depth: int = 2,
    baseline: Any = None,
    register_as: str | None = None,
    seed: int = 0,
) -> tuple[PolicyResult, StudyResult, ModelVersion | None]:
    """Learn a depth-`depth` policy tree for the study's treatment on its dataset version.

    `features` (default: the study's adjustment set) are the columns the rules split on; `baseline`
    the "no one" action (default: the first action in sorted order). With `register_as`, the tree
    becomes the next version of that model (flavour 'policy', trained on the study's dataset version,
    tagged with the study), served at /predict with each row's expected gain and, with explain=true,
    the rule that fired. Returns the result, the stored 'policy' study result and the model version.
    """
    from keel.causal import learn_policy as learn

    study = causal._backdoor(study_ref)
    if not study.covariates and features is None:
        raise InvalidInputError(
            f"Study {study.ref} has no adjustment set to split on; pass features=[...] (columns of {study.dataset})."
        )
    frame = causal.frame(study)
    if baseline is not None:  # '0' from a CLI or a JSON body names the action 0 of an integer column
        baseline = next((a for a in frame[study.treatment].unique().tolist() if str(a) == str(baseline)), baseline)
    result = learn(
        frame,
        study.treatment,
        study.outcome,
        study.covariates,
        features=features,
        baseline=baseline,
        depth=depth,
        seed=seed,
    )
    model = _register(causal, study, result, frame, register_as) if register_as is not None else None
    payload = {**result.to_dict(), "model": model.ref if model is not None else None, "uplift": uplift(result, frame)}
    stored = causal.add_result(study, "policy", plain(payload))
    return result, stored, model


def uplift(result: PolicyResult, frame: Any) -> dict[str, Any]:
    """Per action other than the baseline: the uplift and Qini curves of targeting it by the tree's
    expected gain (its leaf's mean outcome under the action minus under the baseline), measured
    with the cross-fitted doubly robust scores, which correct for who got what. The ranking comes
    from a tree fitted on the same rows: the curves are in-sample, and say so."""
    from keel.causal import uplift_curve

    tree = result.tree
    leaves = tree.leaves(frame)
    base = tree.actions.index(tree.baseline)
    curves: dict[str, Any] = {}
    for k, action in enumerate(tree.actions):
        if k == base:
            continue
        gain = [tree.nodes[leaf].values[k] - tree.nodes[leaf].values[base] for leaf in leaves.tolist()]
        curve = uplift_curve(gain, dr_scores=result.scores[:, k] - result.scores[:, base], n_points=50)
        curves[str(action)] = {**curve.to_dict(), "ranking": "in-sample (the tree was fitted on these rows)"}
    return curves


def _register(causal: Causal, study: Study, result: PolicyResult, frame: Any, name: str) -> ModelVersion:
    models = causal._models
    if models is None:
        raise InvalidInputError("This Causal has no model registry to register the policy in; use ws.causal.")
    tree = result.tree
    return models.register(
        name,
        tree,
        trained_on=study.dataset,
        X=frame[list(tree.features)],
        flavor="policy",
        metrics={"policy_value": result.value.value, "policy_gain": result.gain.value},
        params={"depth": tree.depth, "baseline": tree.baseline, "min_leaf": result.min_leaf, "seed": result.seed},
        tags={"causal_study": study.ref, "treatment": study.treatment, "outcome": study.outcome},
        description=f"Policy learned from causal study {study.ref} (which {study.treatment} for whom, "
        f"maximising {study.outcome}).",
    )
