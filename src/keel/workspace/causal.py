"""Causal studies as use cases (`ws.causal`): a causal question over a dataset version is checked and
identified by the compute package (keel.causal), stored as a versioned record (keel.studies), and
estimated or asked what-if questions on the very dataset version it names.

Nothing here mutates the caller's values: the dataset is loaded afresh from its version, the graph
is copied into a frozen CausalGraph, and only plain values (never fitted models) are stored.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.data import Datasets
from keel.entities import DatasetVersion
from keel.entities_studies import Study, StudyEstimate
from keel.errors import InvalidInputError
from keel.studies import Studies

if TYPE_CHECKING:
    import pandas as pd

    from keel.causal import CausalGraph, Comparison, Estimate, WhatIfResult
    from keel.causal.refute import Refutation

    GraphSpec = CausalGraph | str | os.PathLike[str] | Sequence[tuple[str, str]] | Mapping[str, Sequence[str]]

# The edges annotate Comparison and WhatIfResult through this module, under TYPE_CHECKING: keel.cli
# and keel.server may not import keel.causal, which defines them.
__all__ = ["Causal"]

# keel.causal pulls in scikit-learn and SciPy (most of a second): imported on first use, so that
# opening a workspace for anything else stays fast.
ESTIMATORS = ("regression", "ipw", "aipw", "dml")  # keel.causal.ESTIMATORS


class Causal:
    """Causal studies: `ws.causal.study(...)`, `.estimate(...)`, `.what_if(...)`, `.refute(...)`, `.get/list/versions`."""

    def __init__(self, studies: Studies, datasets: Datasets) -> None:
        self._studies = studies
        self._datasets = datasets

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
    ) -> Study:
        """Check `graph` against the dataset version, identify the effect of `treatment` on `outcome`,
        and store the next version of study `name`.

        `graph`: edges [("age", "treat"), ...], DOT or GML text or a path to a .dot/.gml file, a
        mapping with `orient` ("parents": {node: [parents]}, "children": {node: [children]}), or a
        CausalGraph. `covariates` overrides the adjustment set the graph gives. Bad input raises
        InvalidInputError naming the problem, and nothing is stored.

        >>> ws.causal.study("nsw", "nsw@1", graph=[("age", "treat"), ("age", "re78"), ("treat", "re78")],
        ...                 treatment="treat", outcome="re78")     # doctest: +SKIP
        """
        from keel.causal import causal_graph, identify_effect

        self._studies.check_name(name)
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
            identification=_plain(dataclasses.asdict(identification)),
            description=description,
        )

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
        records = [_record(estimate, seed) for estimate in comparison.estimates]
        return self._studies.add_estimates(study, records), comparison

    def refute(self, ref: str | Study, *, estimator: str = "aipw", estimand: str = "ate", seed: int = 0) -> Refutation:
        """Try to break the study's estimate (placebo treatment, random common cause, data subsets, dummy
        outcome, sensitivity to an unobserved confounder, overlap, estimator agreement), each check refitting
        everything on the study's dataset version, and judge it robust, fragile or failed. Not stored: it is
        recomputed from the same data and seed, and the study records have no place for it yet."""
        from keel.causal.refute import refute

        study = self._backdoor(ref)
        frame = self._frame(self._datasets.get(study.dataset))
        return refute(
            frame, study.treatment, study.outcome, study.covariates, estimator=estimator, estimand=estimand, seed=seed
        )

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
        study's graph and dataset version. Not stored: a what-if is a question, not a record."""
        from keel.causal import causal_graph, fit_scm

        study = self._studies.get(ref)
        if study.latent:
            raise InvalidInputError(
                f"Study {study.ref} has latent node(s) {list(study.latent)}; a what-if fits a mechanism for every "
                "node, so each must be an observed column."
            )
        graph = causal_graph(study.edges)
        frame = self._frame(self._datasets.get(study.dataset))
        scm = fit_scm(frame, graph, n_resamples=n_resamples, seed=seed)
        return scm.what_if(intervene, outcome or study.outcome, kind=kind)

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


def _record(estimate: Estimate, seed: int) -> dict[str, Any]:
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
        "details": _plain(
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


def _plain(value: Any) -> Any:
    """JSON-storable: tuples as lists, numpy scalars as Python numbers, NaN and infinities as None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
