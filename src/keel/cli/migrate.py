"""`keel migrate --to URL [--artifacts URL]`: copy this workspace into server mode (PostgreSQL + S3)."""

from __future__ import annotations

import json
from typing import Any

import typer

from keel.cli._common import JSON_OPTION, err, escape, number, open_workspace, out, print_json, size, table
from keel.errors import InvalidInputError


def migrate(
    ctx: typer.Context,
    to: str = typer.Option(
        ..., "--to", help="The target metadata store, an empty database: postgresql://USER@HOST/DB."
    ),
    artifacts: str | None = typer.Option(
        None,
        "--artifacts",
        help="The target artifact location (s3://bucket/prefix, or a folder). Default: keep this workspace's.",
    ),
    artifacts_options: str | None = typer.Option(
        None,
        "--artifacts-options",
        help="fsspec options of the target as a JSON object (default: KEEL_ARTIFACTS_OPTIONS), "
        'e.g. \'{"client_kwargs": {"endpoint_url": "http://minio:9000"}}\'.',
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check the target is empty and verify every blob; write nothing."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy this workspace (datasets, runs, models, aliases, predictions, alerts, jobs) into an empty
    server-mode store: every artifact copied and its digest verified on the target, then every
    table's rows in one transaction, with row counts compared. Stop servers and workers first."""
    options = _options(artifacts_options)
    ws = open_workspace(ctx)
    with err().status("Migrating (blobs first, then the metadata)..."):
        report = ws.migrate(to, artifacts=artifacts, artifacts_options=options, dry_run=dry_run)
    if as_json:
        print_json(report)
        return
    t = table("table", "source>", "target>")
    for c in report.tables:
        if c.source or c.target:
            t.add_row(c.table, number(c.source), number(c.target))
    console = out()
    if t.row_count:
        console.print(t)
    verb = "Would copy" if dry_run else "Copied"
    console.print(
        f"{verb} {report.rows:,} rows in {len(report.tables)} tables and {report.blobs} blobs "
        f"({size(report.blob_bytes)}; {report.verified} digests verified) to {escape(report.target_store)} "
        f"and {escape(report.target_artifacts)} in {report.seconds:.1f} s."
    )
    if not dry_run:
        console.print(
            f"Open it with KEEL_STORE_URL={escape(report.target_store)} KEEL_ARTIFACTS_URL={escape(report.target_artifacts)}"
        )


def _options(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(f"--artifacts-options is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError("--artifacts-options must be a JSON object, e.g. '{\"anon\": false}'")
    return value
