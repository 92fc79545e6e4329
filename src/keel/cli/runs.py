"""`keel runs`: list, show and search tracked runs."""

from __future__ import annotations

from collections import Counter

import typer

from keel.cli._common import (
    JSON_OPTION,
    escape,
    fitting,
    number,
    open_workspace,
    out,
    print_json,
    styled,
    table,
    to_jsonable,
    when,
)
from keel.entities import Run

app = typer.Typer(help="Tracked runs: list, show, search.", no_args_is_help=True)

_SHOWN_METRICS = 3  # metric columns in a run table; --json has them all

_LIMIT = typer.Option(20, "--limit", "-n", min=1, help="At most this many runs, newest first.")


def _runs_table(runs: list[Run]) -> None:
    if not runs:
        out().print("No runs match.")
        return
    # Columns by priority: who and when, then the metrics most runs share, then experiment
    # and duration, as many as the terminal has room for (--json has everything).
    counts = Counter(key for r in runs for key in r.metrics)
    fixed = [8, max(len(r.name) for r in runs), 8, 11]
    keys = fitting([k for k, _ in counts.most_common(_SHOWN_METRICS)], fixed)
    experiments = sorted({r.experiment for r in runs})
    room = out().width - sum(w + 3 for w in fixed) - 11 * len(keys)
    exp_width = max(map(len, experiments)) + 3
    show_experiment = len(experiments) > 1 or room >= exp_width
    room -= exp_width if show_experiment else 0
    show_duration = room >= 11
    title = None if show_experiment else f"experiment {experiments[0]}"
    columns = [
        "id",
        *(["experiment"] if show_experiment else []),
        "name",
        "status",
        "started",
        *(["duration>"] if show_duration else []),
        *(f"{k}>" for k in keys),
    ]
    t = table(*columns, title=title)
    for r in runs:
        duration = "-" if r.duration_s is None else f"{r.duration_s:.1f}s"
        status = styled(r.status.value, {"finished": "green", "failed": "red", "killed": "red"}.get(r.status.value, ""))
        t.add_row(
            r.id[:8],
            *([r.experiment] if show_experiment else []),
            r.name,
            status,
            when(r.started_at, short=True),
            *([duration] if show_duration else []),
            *(number(r.metrics.get(k)) for k in keys),
        )
    out().print(t)


@app.command("list")
def list_(
    ctx: typer.Context,
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only runs of this experiment."),
    limit: int = _LIMIT,
    as_json: bool = JSON_OPTION,
) -> None:
    """The newest runs."""
    runs = open_workspace(ctx).runs.list(experiment=experiment, limit=limit)
    if as_json:
        print_json(runs)
        return
    _runs_table(runs)


@app.command("search")
def search(
    ctx: typer.Context,
    filter: str = typer.Argument(..., help='e.g. "metrics.auc > 0.8 and params.max_depth = 6".'),
    order_by: list[str] | None = typer.Option(None, "--order-by", "-o", help='e.g. "metrics.auc desc"; repeatable.'),
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only runs of this experiment."),
    limit: int = _LIMIT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Runs matching a filter on metrics, params, tags and attributes, run in SQL."""
    ws = open_workspace(ctx)
    runs = ws.runs.search(filter, order_by=order_by or None, limit=limit, experiment=experiment)
    if as_json:
        print_json(runs)
        return
    _runs_table(runs)
    if not runs:  # a misspelt key matches nothing, silently: name it, and the nearest that exist
        for hint in ws.runs.search_hints(filter, experiment=experiment):
            out().print(hint, markup=False)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="ID", help="A run id, or a unique prefix of at least 6 characters."),
    as_json: bool = JSON_OPTION,
) -> None:
    """One run: params, metrics (with the length of each series), inputs, artifacts, environment."""
    ws = open_workspace(ctx)
    run = ws.runs.get(run_id)
    points = Counter(p.key for p in ws.runs.metric_history(run.id))
    if as_json:
        print_json({**to_jsonable(run), "metric_points": dict(points)})
        return
    console = out()
    console.print(f"[bold]run {run.id}[/]  {escape(run.name)}  ({run.experiment})")
    duration = "" if run.duration_s is None else f", {run.duration_s:.1f}s"
    lines = [
        ("status", f"{run.status.value}{duration}"),
        ("started", f"{when(run.started_at)} by {run.author}"),
        ("code", run.code_version or ""),
        ("inputs", ", ".join(run.inputs)),
        ("tags", ", ".join(f"{k}={v}" for k, v in run.tags.items())),
    ]
    for label, value in lines:
        if value:
            console.print(f"  {label:<9}{value}", markup=False)
    if run.params:
        t = table("param", "value", title="Params")
        for key, text in sorted(run.params.items()):
            t.add_row(key, text)
        console.print(t)
    if run.metrics:
        t = table("metric", "latest>", "points>", title="Metrics")
        for key, latest in sorted(run.metrics.items()):
            t.add_row(key, number(latest), str(points.get(key, 1)))
        console.print(t)
    if run.artifacts:
        t = table("artifact", "digest", "bytes>", title="Artifacts")
        for a in run.artifacts:
            t.add_row(a.path, a.digest[:19], f"{a.size_bytes:,}")
        console.print(t)
    if run.environment:
        env = ", ".join(f"{k} {v}" for k, v in run.environment.items() if k != "platform")
        console.print(f"  env      {env}", markup=False)
