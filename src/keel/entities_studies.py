"""Frozen values of causal studies, shared like those of keel.entities (which is at the 500-line limit):
what keel.storage returns for a study version and an estimate, and what `ws.causal` hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Study", "StudyEstimate", "StudyResult", "RESULT_KINDS"]

# What a stored study result may be (StudyResult.kind).
RESULT_KINDS = ("refutation", "sensitivity", "effect_change", "policy", "bootstrap", "cate")


@dataclass(frozen=True)
class Study:
    """One version of a causal study: a question (the effect of `treatment` on `outcome`) asked of a
    dataset version through a causal graph, with the adjustment set its identification found."""

    name: str
    version: int
    dataset: str  # the dataset version it reads, 'nsw@1' (lineage)
    dataset_digest: str
    edges: tuple[tuple[str, str], ...]
    latent: tuple[str, ...]
    treatment: str
    outcome: str
    covariates: tuple[str, ...]  # the adjustment set the estimators use
    identification: dict[str, Any]  # strategy, minimal_adjustment_set, frontdoor_set, instruments, notes
    created_at: datetime
    author: str
    description: str = ""
    model: str | None = None  # the model version the study explains, 'credit@3' (lineage), if any

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class StudyEstimate:
    """One stored estimate of a study version's effect, with its 95 % interval and overlap report."""

    id: int
    study: str  # 'nsw-training@1'
    estimator: str
    estimand: str  # 'ate', 'att' or 'atc'
    value: float
    stderr: float
    ci_low: float
    ci_high: float
    interval_method: str
    n: int
    overlap: dict[str, Any] | None  # the overlap report as plain values (propensity estimators)
    notes: tuple[str, ...]
    details: dict[str, Any]  # trimming, covariates, seed
    created_at: datetime

    def covers(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


@dataclass(frozen=True)
class StudyResult:
    """One stored result of a study version, as plain JSON: a 'refutation' (checks and verdict), a
    'sensitivity' sweep, an 'effect_change' between study versions, a 'policy', a 'bootstrap' interval."""

    id: int
    study: str  # 'nsw-training@2'
    kind: str  # one of RESULT_KINDS
    payload: dict[str, Any]
    author: str
    created_at: datetime
