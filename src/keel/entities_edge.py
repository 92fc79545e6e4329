"""Frozen values of edge builds, shared like those of keel.entities (which is at the 500-line limit):
what keel.storage returns for a stored build and what `ws.edge` hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["EdgeBuild"]


@dataclass(frozen=True)
class EdgeBuild:
    """One edge build of a model version: C99 or ONNX, its archive (a zip, content-addressed by
    `digest`) and its build report (agreement with the Python model, size, latency, emulated run)."""

    id: int
    model: str  # the model version it was built from, 'credit@3' (lineage)
    target: str  # 'c' or 'onnx'
    quantize: str  # 'float32', 'int16' or 'int8'
    mcu: str  # the part it was sized for: 'cortex-m4', 'cortex-m0' or 'host'
    digest: str  # the archive's 'sha256:<hex>'
    size_bytes: int  # of the archive
    files: tuple[str, ...]  # the archive's file names
    report: dict[str, Any]  # the build report as plain JSON
    created_at: datetime
    author: str

    @property
    def ref(self) -> str:
        return f"{self.model}/edge/{self.id}"
