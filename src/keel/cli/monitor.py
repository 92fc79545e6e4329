"""`keel monitor`: watch a model, check its live traffic, show the results."""

from __future__ import annotations

from typing import Any

import typer

from keel.cli._common import JSON_OPTION, err, escape, open_workspace, out, print_json
from keel.errors import KeelError

app = typer.Typer(help="Watch models in production: drift, data quality and performance checks.", no_args_is_help=True)


@app.command("watch")
def watch(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model to watch."),
    window_rows: int | None = typer.Option(None, "--window-rows", min=1, help="Check the newest N predictions."),
    window_s: float | None = typer.Option(
        None, "--window-s", min=0.001, help="Check the predictions of the last S seconds."
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="Reference dataset version (default: the champion's training data)."
    ),
    target: str | None = typer.Option(None, "--target", help="The label column of the reference dataset."),
    schedule_s: float | None = typer.Option(None, "--schedule-s", min=1, help="How often `keel serve` runs the check."),
    min_rows: int | None = typer.Option(None, "--min-rows", min=1, help="Skip drift statistics below this many rows."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or change a model's monitor (and install the default alert rules)."""
    ws = open_workspace(ctx)
    settings: dict[str, Any] = {}
    if window_rows is not None:
        settings.update(window_rows=window_rows, window_s=None)
    if window_s is not None:
        settings.update(window_s=window_s, window_rows=None)
    for key, value in (
        ("reference", reference),
        ("target", target),
        ("schedule_s", schedule_s),
        ("min_rows", min_rows),
    ):
        if value is not None:
            settings[key] = value
    config = ws.monitoring.watch(name, **settings)
    if as_json:
        print_json(config)
        return
    window = f"newest {config.window_rows} predictions" if config.window_rows else f"last {config.window_s:g} s"
    out().print(
        f"Watching [bold]{escape(name)}@{config.alias}[/]: window {window}, every {config.schedule_s:g} s, "
        f"reference {escape(config.reference or 'its training data')}."
    )


@app.command("run")
def run(
    ctx: typer.Context, name: str = typer.Argument(..., help="The model to check."), as_json: bool = JSON_OPTION
) -> None:
    """Check the newest window of a model's traffic now, here, waiting for it: drift, quality,
    performance; raise alerts. (Over HTTP a check is a job: POST .../monitor/run answers 202.)"""
    ws = open_workspace(ctx)
    with err().status(f"Checking {name}..."):
        try:
            result = ws.monitoring.run(name)
        except KeelError:
            raise
        except Exception as exc:
            # Not Keel's own error: a library deep in the check failed on this model's data. The
            # check has raised the monitor-failing alert with the traceback; say it in one line.
            cause = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise KeelError(
                f"the check of {name} failed ({cause}); 'keel monitor show {name}' "
                "and its monitor-failing alert have the details"
            ) from exc
    if as_json:
        print_json(
            {
                "run": result.run,
                "values": [{"feature": f, "metric": m, "value": v} for f, m, v in result.values],
                "drifted_features": result.drifted_features,
                "alerts": result.alerts,
            }
        )
        return
    _print_result(result)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    limit: int = typer.Option(10, "--limit", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """The monitor's settings, whether it is failing (since when, and why), and its recent checks."""
    ws = open_workspace(ctx)
    config = ws.monitoring.config(name, strict=False)
    failing = ws.monitoring.failing(name)
    runs = ws.monitoring.runs(name, limit=limit)
    if as_json:
        print_json({"config": config, "failing": failing, "runs": runs})
        return
    from rich.table import Table

    out().print(
        f"[bold]{escape(name)}[/] monitor: window "
        f"{config.window_rows or ''}{' rows' if config.window_rows else f'{config.window_s:g} s'}, every {config.schedule_s:g} s"
    )
    if failing is not None:
        out().print(
            f"[bold red]failing since {failing.opened_at:%Y-%m-%d %H:%M:%S} UTC[/] ({failing.count} failed check{'s' if failing.count != 1 else ''}, "
            f"alert #{failing.id}): {escape(str(failing.evidence.get('error') or failing.title))}"
        )
    table = Table("checked", "version", "rows", "labelled", "drifted features")
    for r in runs:
        version = f"{r.model_version}" + (f" (before v{r.superseded_by})" if r.superseded_by is not None else "")
        table.add_row(
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            version,
            str(r.rows),
            str(r.labelled_rows),
            escape(", ".join(r.summary.get("drifted_features", [])) or "-"),
        )
    out().print(table)
    if runs and runs[0].superseded_by is not None:
        out().print(
            f"v{runs[0].superseded_by} serves now and has no check of its own yet; the checks above are of "
            "earlier versions."
        )


def _print_result(result: Any) -> None:
    from rich.table import Table

    console = out()
    run = result.run
    console.print(
        f"Checked [bold]{escape(run.model)}@{run.model_version}[/] on {run.rows} predictions "
        f"({run.labelled_rows} labelled) against {escape(run.reference)}."
    )
    for note in run.summary.get("skipped", []):
        console.print(f"  skipped {escape(note)}")
    per_feature: dict[str, dict[str, float | None]] = {}
    model_level: dict[str, float | None] = {}
    for f, m, v in result.values:
        (per_feature.setdefault(f, {}) if f else model_level)[m] = v
    if any("psi" in d for d in per_feature.values()):
        table = Table("feature", "psi", "wasserstein", "js", "ks p", "missing", "drift")
        for f, d in sorted(per_feature.items(), key=lambda kv: -(kv[1].get("psi") or 0)):
            if "psi" not in d:
                continue
            table.add_row(
                escape(f),
                _n(d.get("psi")),
                _n(d.get("wasserstein_norm")),
                _n(d.get("js_distance")),
                _n(d.get("ks_pvalue")),
                _n(d.get("missing_rate")),
                "DRIFT" if d.get("drift") else "",
            )
        console.print(table)
    shown = [
        "prediction_psi",
        "multivariate_auc",
        "schema_violation_rate",
        "accuracy",
        "roc_auc",
        "roc_auc_drop",
        "rmse",
    ]
    parts = [f"{m} {_n(model_level[m])}" for m in shown if model_level.get(m) is not None]
    if parts:
        console.print("  " + "   ".join(parts))
    for a in result.alerts:
        console.print(f"[bold red]ALERT[/] #{a.id} [{a.severity}] {escape(a.title)}")
    if not result.alerts:
        console.print("No alert fired.")


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"
