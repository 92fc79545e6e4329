"""Composition: the Workspace facade and the use cases that span record packages.

`facade.py`: `Workspace`, which wires the stores into the record packages (`ws.datasets`,
`ws.runs`, `ws.models`, `ws.predictions`, `ws.monitoring`, `ws.retraining`, `ws.jobs`).
`explain.py`: explanations (`ws.explain`, `ws.explainer`) with one bounded per-version cache.
`causal.py`: causal studies (`ws.causal`): study, estimate, what-if over dataset versions.
`handlers.py`: what each job kind does, and `run_job`, which the queue (keel.jobs) submits;
`payloads.py`: the frozen payload type of each job kind.
`batch.py`: batch scoring and batch explanation as jobs. `tick.py`: one tick of the background
loop (`ws.tick()`). `files.py`: tabular files at the edges (CSV downloads, uploads read in chunks).

May import everything below it (records, jobs, compute, storage, base); the edges (keel.cli,
keel.server) import only this package and the base modules. Only this package touches `ws._meta`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.retraining import Project
    from keel.workspace.facade import Workspace

__all__ = ["Workspace", "load_project"]


def load_project(path: Any) -> Project:
    """A model project (keel.yaml) read and checked: a wrong key or value fails here, before any
    workspace opens (`keel train` reads it first)."""
    from keel.retraining import load_project as load

    return load(path)


def __getattr__(name: str) -> Any:
    # The facade pulls in pandas, pyarrow and SQLAlchemy: load them on first use, so that the
    # CLI can import light helpers of this package (payloads: the job payload types) without them.
    if name == "Workspace":
        from keel.workspace.facade import Workspace

        return Workspace
    raise AttributeError(f"module 'keel.workspace' has no attribute {name!r}")
