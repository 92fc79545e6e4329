"""Move a workspace into server mode: `ws.migrate("postgresql://...", artifacts="s3://...")`.

The copy itself is `keel.storage.migrate` (blobs first, each verified on the target; then every
table's rows in one transaction; row counts compared). This module only chooses the target's
artifact store: another location, or, without one, the workspace's own (then nothing is copied,
every blob is still read and verified, and the new store points at the same artifacts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.storage import BlobStore
from keel.storage.migrate import MigrationReport, TableCount, copy_workspace

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

__all__ = ["MigrationReport", "TableCount", "migrate"]


def migrate(
    ws: Workspace,
    to_store_url: str,
    *,
    artifacts: str | None = None,
    artifacts_options: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> MigrationReport:
    """Copy `ws` into the empty store at `to_store_url` and the artifact location `artifacts`.

    `artifacts_options` (fsspec options of the target; default: the workspace's own
    `artifacts_options`, KEEL_ARTIFACTS_OPTIONS) carry the S3 endpoint and credentials.
    Stop servers and workers on the workspace first: rows written during the copy are refused.
    """
    options = ws.settings.artifacts_options if artifacts_options is None else artifacts_options
    if artifacts is None or artifacts == ws.settings.resolved_artifacts_url:
        target_blobs = ws._blobs  # the same location: every blob is read and verified, none rewritten
    else:
        target_blobs = BlobStore(artifacts, options)
    return copy_workspace(ws._meta.engine, ws._blobs, to_store_url, target_blobs, dry_run=dry_run)
