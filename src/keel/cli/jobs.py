"""`keel worker` (the background loop without a server) and `keel jobs list | show`."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import typer

from keel.cli._common import JSON_OPTION, err, escape, open_workspace, out, print_json, table, when

if TYPE_CHECKING:
    from keel.workspace import Workspace
    from keel.workspace.payloads import DatasetJobPayload

app = typer.Typer(help="Background jobs (retraining cycles): list and show.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", help="queued, running, succeeded or failed."),
    limit: int = typer.Option(20, "--limit", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """Jobs, newest first."""
    jobs = open_workspace(ctx).jobs.list(status=status, limit=limit)
    if as_json:
        print_json(jobs)
        return
    if not jobs:
        out().print("No jobs.")
        return
    t = table("id>", "kind", "status", "attempts>", "created", "worker", "result / error")
    for j in jobs:
        detail = j.error or (", ".join(f"{k} {v}" for k, v in (j.result or {}).items()))
        t.add_row(
            str(j.id),
            j.kind,
            j.status,
            str(j.attempts),
            when(j.created_at, short=True),
            j.worker or "-",
            escape(detail[:100]),
        )
    out().print(t)


@app.command("show")
def show(
    ctx: typer.Context, job_id: int = typer.Argument(..., metavar="ID", min=1), as_json: bool = JSON_OPTION
) -> None:
    """One job: its payload, state and result."""
    job = open_workspace(ctx).jobs.get(job_id)
    if as_json:
        print_json(job)
        return
    out().print(f"[bold]job {job.id}[/] {job.kind} [{job.status}] attempts {job.attempts}/{job.max_attempts}")
    out().print(f"  payload  {escape(str(job.payload))}")
    if job.result:
        out().print(f"  result   {escape(str(job.result))}")
    if job.error:
        out().print(f"  error    {escape(job.error)}")


def worker(
    ctx: typer.Context,
    tick_s: float = typer.Option(10.0, "--tick-s", min=0.1, help="Seconds between ticks."),
    slots: int = typer.Option(2, "--slots", min=1, help="Jobs run at once by this worker."),
    once: bool = typer.Option(False, "--once", help="One tick, wait for the jobs it started, exit."),
) -> None:
    """Run the background loop without a server: due monitors, due retraining, queued jobs.

    Jobs run on KEEL_EXECUTOR: 'local' (threads of this process) or 'ray' (KEEL_RAY_ADDRESS, or a
    local Ray instance). Job state is in the store: a restarted worker resumes the queue.
    """
    ws = open_workspace(ctx)
    console = err()
    console.print(f"keel worker on {escape(ws.store_url)} (executor {ws.settings.executor}, {slots} slots)")
    try:
        while True:
            done = ws.tick(slots=slots)
            if done["queued"] or done["started"]:
                console.print(f"queued {done['queued'] or '-'}, started {done['started'] or '-'}")
            if once:
                ws.jobs.wait()
                for job_id in done["started"]:
                    job = ws.jobs.get(job_id)
                    out().print(f"job {job.id} {job.kind} {job.status}: {escape(str(job.error or job.result))}")
                return
            time.sleep(tick_s)
    except KeyboardInterrupt:
        console.print("stopping: waiting for running jobs")
        ws.jobs.wait()


def score(
    ctx: typer.Context,
    model: str = typer.Argument(
        ..., metavar="NAME@ALIAS", help="The model version: credit-risk@champion, credit-risk@3."
    ),
    dataset: str = typer.Argument(..., metavar="DATASET", help="The dataset version to score: applications@latest."),
    output: str | None = typer.Option(None, "--output", help="Dataset name for the scores (default: DATASET-scored)."),
    chunk_rows: int = typer.Option(
        100_000, "--chunk-rows", min=1, help="Rows per chunk (per Ray task with KEEL_EXECUTOR=ray)."
    ),
    background: bool = typer.Option(False, "--background", help="Queue the job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score a dataset version with a model version, as a job; the scores become a dataset version."""
    ws = open_workspace(ctx)
    ws.models.get(model)
    ws.datasets.get(dataset)  # unknown references fail here, in one line, not in the worker
    from keel.workspace.payloads import BatchScorePayload

    payload = BatchScorePayload(model, dataset=dataset, output=output, chunk_rows=chunk_rows)
    dataset_job(ws, payload, background=background, as_json=as_json, verb="Scored", what="batch scoring")


def running(ws: Workspace, what: str, *, background: bool) -> AbstractContextManager[Any]:
    """A spinner on stderr while a job runs here; nothing while one is only queued."""
    return nullcontext() if background else err().status(f"{what} ({ws.settings.executor} executor)...")


def dataset_job(
    ws: Workspace, payload: DatasetJobPayload, *, background: bool, as_json: bool, verb: str, what: str
) -> None:
    """Queue a dataset job for the worker, or run it here on the configured executor (ws.jobs.run_or_queue), and report it."""
    from keel.errors import KeelError

    with running(ws, f"{what.capitalize()} of {payload.dataset} with {payload.model}", background=background):
        job, _ = ws.jobs.run_or_queue(payload.kind, payload.to_dict(), background=background)
    if as_json:
        print_json(job)
    elif job.status == "queued":
        out().print(f"Queued: job {job.id}; keel worker or keel serve runs it")
    elif job.status == "succeeded" and job.result:
        r = job.result
        out().print(
            f"{verb} {r['rows']:,} rows with {escape(r['model'])} in {r['chunks']} chunks -> {escape(r['dataset'])}"
        )
    if job.status == "failed":
        raise KeelError(f"{what} failed (job {job.id}): {job.error}")
