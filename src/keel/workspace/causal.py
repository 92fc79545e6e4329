"""Causal studies as use cases (`ws.causal`): a causal question over a dataset version is checked and
identified by the compute package (keel.causal), stored as a versioned record (keel.studies), and
estimated or asked what-if questions on the very dataset version it names.

Nothing here mutates the caller's values: the dataset is loaded afresh from its version, the graph
is copied into a frozen CausalGraph, and only plain values (never fitted models) are stored.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from keel.data import Datasets
from keel.entities import DatasetVersion
from keel.entities_studies import Study, StudyEstimate, StudyResult
from keel.errors import InvalidInputError
from keel.studies import Studies
from keel.workspace.causal_records import effect_change, estimate_record, plain, refutation_payload

if TYPE_CHECKING:
    import pandas as pd

    from keel.causal import CausalGraph, Comparison, StructuralCausalModel, WhatIfResult
    from keel.causal.refute import MapTasks, Refutation
    from keel.causal.sensitivity import Sensitivity
    from keel.monitoring.alerts import Alerts
    from keel.registry import Models

    GraphSpec = CausalGraph | str | os.PathLike[str] | Sequence[tuple[str, str]] | Mapping[str, Sequence[str]]

# The edges annotate Comparison and WhatIfResult through this module, under TYPE_CHECKING: keel.cli
# and keel.server may not import keel.causal, which defines them.
__all__ = ["Causal"]

# keel.causal pulls in scikit-learn and SciPy (most of a second): imported on first use, so that
# opening a workspace for anything else stays fast.
ESTIMATORS = ("regression", "ipw", "aipw", "dml")  # keel.causal.ESTIMATORS
DRIFT_RULE = "causal-effect-drift"  # the alert rule a drifted effect fires (metric causal_effect_drift)
logger = logging.getLogger(__name__)


class Causal:
    """Causal studies: `ws.causal.study(...)`, `.estimate(...)`, `.what_if(...)`, `.refute(...)`,
    `.sensitivity(...)`, `.rerun(...)`, `.results(...)`, `.get/list/versions`.

    `models` checks the model version a study explains; `alerts` raises an alert when a rerun finds
    the effect drifted. Fitted structural causal models are kept, `cache_size` at most (least
    recently used first out), so a repeated what-if on the same study and data does not refit.
    """

    def __init__(
        self,
        studies: Studies,
        datasets: Datasets,
        *,
        models: Models | None = None,
        alerts: Alerts | None = None,
        cache_size: int = 8,
    ) -> None:
        self._studies = studies
        self._datasets = datasets
        self._models = models
        self._alerts = alerts
        self._scms: OrderedDict[tuple[str, str, int, int], StructuralCausalModel] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def study(
        self,
        name: str,
        dataset_ref: str | DatasetVersion,
        *,
        graph: GraphSpec,
        treatment: str,
        outcome: str,
        covariates: Sequence[str] | None = None,
        latent: Sequence[str] = (),
        orient: Literal["parents", "children"] | None = None,
        description: str = "",
        model: str | None = None,
    ) -> Study:
        """Check `graph` against the dataset version, identify the effect of `treatment` on `outcome`,
        and store the next version of study `name`.

        `graph`: edges [("age", "treat"), ...], DOT or GML text or a path to a .dot/.gml file, a
        mapping with `orient` ("parents": {node: [parents]}, "children": {node: [children]}), or a
        CausalGraph. `covariates` overrides the adjustment set the graph gives. `model` ('credit@3',
        optional) is the model version the study explains (lineage; an alias resolves to its version
        now). Bad input raises InvalidInputError naming the problem, and nothing is stored.

        >>> ws.causal.study("nsw", "nsw@1", graph=[("age", "treat"), ("age", "re78"), ("treat", "re78")],
        ...                 treatment="treat", outcome="re78")     # doctest: +SKIP
        """
        from keel.causal import causal_graph, identify_effect

        self._studies.check_name(name)
        explains = self._model_ref(model)
        dataset = self._datasets.get(dataset_ref)
        frame = self._frame(dataset)
        g = causal_graph(_graph_source(graph), orient=orient, latent=latent)
        identification = identify_effect(g, frame, treatment, outcome)
        if covariates is None:
            adjustment = identification.adjustment_set
        else:
            adjustment = _checked_covariates(g, frame, treatment, outcome, covariates)
        return self._studies.add(
            name,
            dataset,
            edges=g.edges,
            latent=g.latent,
            treatment=treatment,
            outcome=outcome,
            covariates=adjustment,
            identification=plain(dataclasses.asdict(identification)),
            description=description,
            model=explains,
        )

    def _model_ref(self, model: str | None) -> str | None:
        if model is None:
            return None
        if self._models is None:
            raise InvalidInputError("This workspace has no model registry to check the study's model against")
        return self._models.get(model).ref  # NotFoundError names the known models

    def get(self, ref: str | Study) -> Study:
        """A study version: 'nsw', 'nsw@2' or 'nsw@latest'."""
        return self._studies.get(ref)

    def list(self) -> builtins.list[Study]:
        """The latest version of every study."""
        return self._studies.list()

    def versions(self, name: str) -> builtins.list[Study]:
        return self._studies.versions(name)

    def estimates(self, ref: str | Study) -> builtins.list[StudyEstimate]:
        """Every stored estimate of a study version, oldest first."""
        return self._studies.estimates(ref)

    def estimate(
        self,
        ref: str | Study,
        *,
        estimators: Sequence[str] = ESTIMATORS,
        estimand: str = "ate",
        trim: tuple[float, float] | None = None,
        n_boot: int = 200,
        seed: int = 0,
    ) -> tuple[builtins.list[StudyEstimate], Comparison]:
        """Estimate the study's effect with several estimator families on its dataset version and
        adjustment set, store each estimate, and return them with their comparison (disagreements
        flagged, never averaged). Trimming is explicit (`trim=(0.01, 0.99)`) and reported."""
        from keel.causal import compare_estimators

        study = self._backdoor(ref)
        frame = self._frame(self._datasets.get(study.dataset))
        comparison = compare_estimators(
            frame,
            study.treatment,
            study.outcome,
            study.covariates,
            estimand=estimand,
            estimators=estimators,
            trim=trim,
            n_boot=n_boot,
            seed=seed,
        )
        records = [estimate_record(estimate, seed) for estimate in comparison.estimates]
        return self._studies.add_estimates(study, records), comparison

    def refute(
        self,
        ref: str | Study,
        *,
        estimator: str = "aipw",
        estimand: str = "ate",
        seed: int = 0,
        map_tasks: MapTasks | None = None,
    ) -> Refutation:
        """Try to break the study's estimate (placebo treatment, random common cause, data subsets, dummy
        outcome, sensitivity to an unobserved confounder, overlap, estimator agreement), each check refitting
        everything on the study's dataset version, and judge it robust, fragile or failed. Stored as the
        study version's 'refutation' result (`results(ref, kind="refutation")`). `map_tasks` runs the
        refitting checks (a job sends each to its executor; default: in turn, here)."""
        from keel.causal.refute import refute

        study = self._backdoor(ref)
        result = refute(
            self.frame(study),
            study.treatment,
            study.outcome,
            study.covariates,
            estimator=estimator,
            estimand=estimand,
            seed=seed,
            map_tasks=map_tasks,
        )
        self._studies.add_result(study, "refutation", refutation_payload(result))
        return result

    def sensitivity(
        self, ref: str | Study, *, estimator: str = "regression", estimand: str = "ate", seed: int = 0
    ) -> tuple[Sensitivity, StudyResult]:
        """The study's estimate adjusted for an unobserved confounder over a grid of partial R2 with the
        treatment and the outcome (Cinelli & Hazlett bounds), with its robustness values; stored as a
        'sensitivity' result. Exact for the regression estimate, an approximation for the others."""
        from keel.causal import compare_estimators
        from keel.causal.sensitivity import sensitivity_sweep

        study = self._backdoor(ref)
        comparison = compare_estimators(
            self.frame(study),
            study.treatment,
            study.outcome,
            study.covariates,
            estimand=estimand,
            estimators=(estimator,),
            seed=seed,
        )
        sweep = sensitivity_sweep(comparison.estimates[0])
        return sweep, self._studies.add_result(study, "sensitivity", {**sweep.to_dict(), "seed": seed})

    def policy(self, ref: str | Study, **kw: Any) -> Any:
        """Which action for whom: a policy tree learned on the study (keel.workspace.causal_policy.learn_policy:
        features=, depth=, baseline=, register_as=, seed=); returns (PolicyResult, StudyResult, ModelVersion | None)."""
        from keel.workspace.causal_policy import learn_policy

        return learn_policy(self, ref, **kw)

    def cate(self, ref: str | Study, **kw: Any) -> Any:
        """For whom does the treatment work: the T/S/X/DR meta-learners chosen by a cross-validated score
        (keel.workspace.causal_cate.estimate_cate: learners=, selection='r_loss'|'dr', seed=), stored as
        the study's 'cate' result; returns (CateResult, StudyResult)."""
        from keel.workspace.causal_cate import estimate_cate

        return estimate_cate(self, ref, **kw)

    def results(self, ref: str | Study, kind: str | None = None) -> builtins.list[StudyResult]:
        """The stored results of a study version ('refutation', 'sensitivity', 'effect_change', ...), oldest first."""
        return self._studies.results(ref, kind)

    def add_result(self, ref: str | Study, kind: str, payload: Mapping[str, Any]) -> StudyResult:
        """Store a result of a study version (what the causal jobs compute); `payload` plain JSON."""
        return self._studies.add_result(self._studies.get(ref), kind, plain(payload))

    def frame(self, ref: str | Study) -> pd.DataFrame:
        """The study's dataset version as a table (loaded afresh: the caller may change it)."""
        return self._frame(self._datasets.get(self._studies.get(ref).dataset))

    def _backdoor(self, ref: str | Study) -> Study:
        study = self._studies.get(ref)
        strategy = study.identification.get("strategy", "backdoor")
        if strategy != "backdoor":
            raise InvalidInputError(
                f"Study {study.ref} is identified by {strategy} only, and the average-effect estimators adjust "
                "for a backdoor set; give the study observed covariates that block every backdoor path."
            )
        return study

    def what_if(
        self,
        ref: str | Study,
        *,
        intervene: Mapping[str, Any],
        outcome: str | None = None,
        kind: Literal["interventional", "counterfactual"] = "interventional",
        n_resamples: int = 50,
        seed: int = 0,
    ) -> WhatIfResult:
        """The effect on `outcome` (default: the study's) of setting (5), shifting ("+5"), scaling
        ("*1.1") or mapping (a function) nodes, through a structural causal model fitted on the
        study's graph and dataset version. Not stored: a what-if is a question, not a record. The
        fitted model is kept (see the class), so the next question on the study answers at once."""
        study = self._studies.get(ref)
        if study.latent:
            raise InvalidInputError(
                f"Study {study.ref} has latent node(s) {list(study.latent)}; a what-if fits a mechanism for every "
                "node, so each must be an observed column."
            )
        return self._scm(study, n_resamples, seed).what_if(intervene, outcome or study.outcome, kind=kind)

    def _scm(self, study: Study, n_resamples: int, seed: int) -> StructuralCausalModel:
        """The structural causal model of (study version, its dataset digest, n_resamples, seed), fitted
        once: a fitted model is never mutated by a question, so sharing it is safe."""
        from keel.causal import causal_graph, fit_scm

        key = (study.ref, study.dataset_digest, int(n_resamples), int(seed))
        with self._lock:
            scm = self._scms.get(key)
            if scm is not None:
                self._scms.move_to_end(key)
                return scm
        scm = fit_scm(self.frame(study), causal_graph(study.edges), n_resamples=n_resamples, seed=seed)
        with self._lock:
            self._scms[key] = scm
            while len(self._scms) > max(self._cache_size, 0):
                self._scms.popitem(last=False)
        return scm

    def rerun(self, name: str, dataset: str | None = None) -> tuple[Study, StudyResult]:
        """The loop: a new version of study `name` on its dataset's newest version (or `dataset`), with the
        same graph, treatment, outcome and adjustment set, re-estimated with the estimators, estimand,
        trimming and seed of the last estimate run, and an 'effect_change' result comparing each estimator
        with that run (keel.workspace.causal_records.DRIFT_RULE says when an effect drifted). A drifted
        effect raises the study's 'causal-effect-drift' alert. Returns (new study version, the result)."""
        last = self._studies.get(self._studies.check_name(name))
        previous = self._last_run(last)
        target = self._datasets.get(dataset or last.dataset.rsplit("@", 1)[0])
        from keel.causal import causal_graph

        made = self.study(
            last.name,
            target,
            graph=causal_graph(last.edges, latent=last.latent),
            treatment=last.treatment,
            outcome=last.outcome,
            covariates=last.covariates,
            latent=last.latent,
            description=last.description,
            model=last.model,
        )
        details = previous[0].details
        trim = (details.get("trimming") or {}).get("bounds")
        stored, _ = self.estimate(
            made,
            estimators=tuple(dict.fromkeys(e.estimator for e in previous)),
            estimand=previous[0].estimand,
            trim=(float(trim[0]), float(trim[1])) if trim else None,
            seed=int(details.get("seed", 0)),
        )
        change = effect_change(previous, stored, previous_dataset=last.dataset, dataset=made.dataset)
        result = self._studies.add_result(made, "effect_change", change)
        if change["drifted"]:
            self._raise_drift(made, change)
        return made, result

    def compare(self, a: str | Study, b: str | Study) -> dict[str, Any]:
        """Two study versions side by side: what differs in their question (dataset version, edges, adjustment
        set) and how each estimator's latest effect changed from `a` to `b` (the rerun's rule). Not stored."""
        first, second = self._studies.get(a), self._studies.get(b)
        change = effect_change(
            self._last_run(first), self._last_run(second), previous_dataset=first.dataset, dataset=second.dataset
        )

        def diff(old: Any, new: Any) -> dict[str, builtins.list[Any]]:
            return {"added": [x for x in new if x not in old], "removed": [x for x in old if x not in new]}

        return {
            **change,
            "previous_study": first.ref,
            "study": second.ref,
            "edges": diff([list(e) for e in first.edges], [list(e) for e in second.edges]),
            "covariates": diff(list(first.covariates), list(second.covariates)),
            "same_question": (first.treatment, first.outcome) == (second.treatment, second.outcome),
        }

    def _last_run(self, study: Study) -> builtins.list[StudyEstimate]:
        stored = self._studies.estimates(study)
        if not stored:
            raise InvalidInputError(
                f"Study {study.ref} has no estimates to compare; run 'keel causal estimate {study.ref}' first"
            )
        newest = stored[-1].created_at  # one estimate run is stored at one time
        return [e for e in stored if e.created_at == newest]

    def _raise_drift(self, study: Study, change: Mapping[str, Any]) -> None:
        """One alert per drifted estimator, through the study's 'causal-effect-drift' rule (added once)."""
        if self._alerts is None:
            return
        try:
            if not any(r.name == DRIFT_RULE for r in self._alerts.rules(study.name)):
                self._alerts.add_rule(
                    study.name, DRIFT_RULE, metric="causal_effect_drift", op=">=", threshold=1.0, cooldown_s=0
                )
            for row in change["estimators"]:
                if row["drifted"]:
                    context = {"study": study.ref, "previous_study": change["previous_study"], **row}
                    context["rule_text"] = change["rule"]
                    self._alerts.evaluate(study.name, [(row["estimator"], "causal_effect_drift", 1.0)], context=context)
        except Exception:  # alerting must not lose the result it reports: the effect change is stored
            logger.exception("raising the causal effect drift alert of %s failed", study.ref)

    def _frame(self, dataset: DatasetVersion) -> pd.DataFrame:
        if dataset.kind != "table":
            raise InvalidInputError(f"Dataset {dataset.ref} is a folder of files; a causal study needs a table")
        frame: pd.DataFrame = self._datasets.load(dataset)
        return frame


def _graph_source(graph: GraphSpec) -> Any:
    """A path (Path or a string ending .dot/.gv/.gml) is read; everything else is passed on."""
    if isinstance(graph, os.PathLike) or (
        isinstance(graph, str) and "\n" not in graph and graph.strip().lower().endswith((".dot", ".gv", ".gml"))
    ):
        path = Path(graph)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"Cannot read the graph file {str(path)!r}: {exc}") from exc
    return graph


def _checked_covariates(
    graph: CausalGraph, frame: pd.DataFrame, treatment: str, outcome: str, covariates: Sequence[str]
) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(str(c) for c in covariates))
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"Covariate(s) {missing} are not columns of the dataset")
    if treatment in names or outcome in names:
        raise InvalidInputError("The covariates must not include the treatment or the outcome")
    after = [c for c in names if c in graph.descendants(treatment)]
    if after:
        raise InvalidInputError(
            f"Covariate(s) {after} are effects of the treatment {treatment!r} in the graph; adjusting for them "
            "biases the estimate. Leave them out."
        )
    return names
