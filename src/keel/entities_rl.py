"""Frozen values of digital twins, shared like those of keel.entities (which is at the 500-line limit):
what keel.storage returns for a twin version and its stored results, and what `ws.rl` hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["TWIN_KINDS", "TWIN_RESULT_KINDS", "Twin", "TwinResult"]

TWIN_KINDS = ("inventory", "serial")  # a single-item inventory, a multi-echelon serial chain
# What a stored twin result may be (TwinResult.kind): the classic policies optimised on it, the exact
# optimum, a policy's evaluation, a simulated trajectory.
TWIN_RESULT_KINDS = ("baselines", "optimum", "evaluation", "trajectory")


@dataclass(frozen=True)
class Twin:
    """One version of a digital twin: a simulated inventory system whose demand model was fitted on a
    dataset version (lineage), with the system's parameters and the fit as plain JSON (`spec`)."""

    name: str
    version: int
    kind: str  # one of TWIN_KINDS
    dataset: str  # the dataset version its demand was fitted on, 'pharmacy-sales@1'
    dataset_digest: str
    spec: dict[str, Any]  # {"system": ..., "demand": ..., "fit": ..., "column": ..., "period": ...}
    created_at: datetime
    author: str
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class TwinResult:
    """One stored result of a twin version, as plain JSON (`kind` says which; see TWIN_RESULT_KINDS)."""

    id: int
    twin: str  # 'pharmacy@2'
    kind: str
    payload: dict[str, Any]
    author: str
    created_at: datetime
