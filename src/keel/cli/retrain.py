"""`keel train keel.yaml`, `keel retrain NAME`, and the decisions they leave:
`keel models approve | rollback | timeline` (registered on the models group)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._common import JSON_OPTION, err, escape, open_workspace, out, print_json, styled, table, when
from keel.entities import RetrainDecision
from keel.errors import KeelError

_COLORS = {
    "promoted": "green",
    "approved": "green",
    "awaiting_approval": "yellow",
    "rejected": "yellow",
    "failed": "red",
    "rolled_back": "cyan",
}


def train(
    ctx: typer.Context,
    project: Path = typer.Argument(..., metavar="PROJECT", help="The model project file (keel.yaml).", dir_okay=False),
    dataset: str | None = typer.Option(None, "--dataset", help="Train on this dataset version instead (NAME@VERSION)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run a model project once: split, fit, evaluate, track the run, register, gate, promote."""
    from keel.workspace import load_project

    spec = load_project(project)  # a wrong key or value fails here, before the workspace opens
    ws = open_workspace(ctx)
    with err().status(f"Training {spec.model}..."):
        decision = ws.retraining.train(spec, dataset=dataset)
    _report(decision, as_json)


def retrain(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A model whose project was trained once with keel train."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Train on this dataset version (default: the project's policy)."
    ),
    background: bool = typer.Option(
        False, "--background", help="Queue it as a job for keel worker / keel serve instead."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Retrain a model now, by hand: the same cycle its triggers start."""
    from keel.workspace.payloads import RetrainPayload

    ws = open_workspace(ctx)
    if background:
        ws.retraining.project(name)  # a model without a project fails now, not in the worker
        payload = RetrainPayload(name, trigger="manual", detail={}, dataset=dataset)
        job, created = ws.jobs.run_or_queue(
            payload.kind, payload.to_dict(), background=True, dedup_key=payload.dedup_key
        )
        if as_json:
            print_json(job)
        else:
            out().print(
                f"{'Queued' if created else 'Already queued'}: job {job.id} ({job.status}); keel worker or keel serve runs it"
            )
        return
    with err().status(f"Retraining {name}..."):
        decision = ws.retraining.retrain(name, dataset=dataset)
    _report(decision, as_json)


def tune(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A model whose project has a tuning section."),
    background: bool = typer.Option(
        False, "--background", help="Queue it as a job for keel worker / keel serve instead."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Search the project's hyper-parameters (Ray Tune with KEEL_EXECUTOR=ray), then gate the best."""
    from keel.cli.jobs import running
    from keel.workspace.payloads import TunePayload

    ws = open_workspace(ctx)
    if ws.retraining.project(name).tuning is None:
        raise KeelError(
            f"The project of {name!r} has no tuning section; add tuning: {{params: ..., trials: N}} to keel.yaml"
        )
    payload = TunePayload(name)
    with running(ws, f"Tuning {name}", background=background):
        job, _ = ws.jobs.run_or_queue(
            payload.kind, payload.to_dict(), background=background, dedup_key=payload.dedup_key
        )
    if background:
        out().print(f"Queued: job {job.id}; keel worker or keel serve runs it") if not as_json else print_json(job)
        return
    if job.status == "failed":
        raise KeelError(f"tuning {name} failed (job {job.id}): {job.error}")
    assert job.result is not None
    decision = next(d for d in ws.retraining.decisions(name, limit=20) if d.id == job.result["decision"])
    if not as_json:
        t = decision.evidence.get("tuning", {})
        out().print(
            f"{len(t.get('trials', []))} trials ({t.get('engine')}): best {t.get('metric')} {t.get('score', 0):.4f} "
            f"on {t.get('validation_rows')} validation rows with {escape(str(t.get('best')))}"
        )
    _report(decision, as_json)


def approve(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    version: int = typer.Argument(..., min=1),
    reason: str = typer.Option("", "--reason", help="Recorded with the decision and the alias move."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Promote a version that passed its gate and waits for approval."""
    _report(open_workspace(ctx).retraining.approve(name, version, reason=reason), as_json)


def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    reason: str = typer.Option("", "--reason", help="Recorded with the decision and the alias move."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Point @champion back at the version it pointed at before its last move."""
    _report(open_workspace(ctx).retraining.rollback(name, reason=reason), as_json)


def timeline(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    limit: int = typer.Option(20, "--limit", min=1),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every retraining decision of a model, newest first, with the metrics that decided it."""
    ws = open_workspace(ctx)
    decisions = ws.retraining.decisions(name, limit=limit)
    if as_json:
        print_json(decisions)
        return
    if not decisions:
        out().print(f"No retraining decisions for {escape(name)} yet: run keel train keel.yaml")
        return
    builds = ws.edge.by_version(name)
    t = table("when", "trigger", "outcome", "version>", "champion>", "why", *(["edge builds"] if builds else []))
    for d in decisions:
        edge = [_edge_cell(b) for b in builds.get(d.version or 0, [])] if d.trigger != "rollback" else []
        t.add_row(
            when(d.at, short=True),
            d.trigger,
            styled(d.outcome, _COLORS.get(d.outcome, "white")),
            _v(d.version),
            _v(d.champion_version),
            escape(d.summary()),
            *(["\n".join(edge) or "-"] if builds else []),
        )
    out().print(t)


def _edge_cell(build: Any) -> str:
    """'#12 c/int8/cortex-m4 99.8%': one edge build of the decision's version."""
    agreement = build.report.get("class_agreement")
    share = "" if agreement is None else f" {agreement:.1%}"
    return escape(f"#{build.id} {build.target}/{build.quantize}/{build.mcu}{share}")


def _v(version: int | None) -> str:
    return "-" if version is None else f"@{version}"


def _report(decision: RetrainDecision, as_json: bool) -> None:
    if as_json:
        print_json(decision)
    else:
        _print(decision)
    if decision.outcome == "failed":
        raise KeelError(
            f"{decision.model}: training failed, the champion is unchanged: {decision.evidence.get('error')}"
        )


def _print(d: RetrainDecision) -> None:
    console = out()
    color = _COLORS.get(d.outcome, "white")
    head = f"{escape(d.model)}@{d.version}" if d.version is not None else escape(d.model)
    console.print(f"[bold]{head}[/] [{color}]{d.outcome.replace('_', ' ')}[/] ({d.trigger})")
    ev: dict[str, Any] = d.evidence
    data = ev.get("data")
    if data and "twin" in data:  # a policy project: trained and judged on a twin of the data
        console.print(f"  data      {escape(data['dataset'])}: twin {escape(data['twin'])}")
        paired = ev.get("paired")
        if paired:
            console.print(
                f"  paired    on {escape(paired['twin'])}: challenger {paired['challenger']:.4f} vs champion "
                f"{paired['champion']:.4f} ({paired['difference']:+.4f} ± {paired['se']:.4f} a period)"
            )
    elif data:
        console.print(
            f"  data      {escape(data['dataset'])}: {data['train_rows']:,} rows to train, {data['holdout_rows']:,} held out"
        )
    if ev.get("columns", {}).get("ignored"):  # a new column in the data is left out, not trained on
        console.print(
            f"  columns   ignored (the {escape(ev['columns']['features_from'])} does not use them): "
            f"{escape(', '.join(ev['columns']['ignored']))}"
        )
    metrics = ev.get("metrics")
    if metrics:
        challenger, champion = metrics.get("challenger") or {}, metrics.get("champion") or {}
        t = table("metric", "challenger>", f"champion @{d.champion_version}>" if d.champion_version else "champion>")
        for m, v in challenger.items():
            t.add_row(m, f"{v:.4f}", f"{champion[m]:.4f}" if m in champion else "-")
        console.print(t)
    for reason in ev.get("gate", {}).get("reasons", []):
        console.print(f"  gate      {escape(reason)}")
    edge = ev.get("edge") or {}
    for b in edge.get("builds", []):
        mark = "[green]kept[/]" if b["passed"] else "[bold red]FAILED[/]"
        build = f" (build #{b['build']})" if b.get("build") else ""
        console.print(f"  edge      {escape(b['target'])} {mark}{build}: {escape('; '.join(b['reasons']))}")
    if edge.get("job"):
        console.print(f"  edge      the builds follow as job {edge['job']} (keel jobs show {edge['job']})")
    if d.outcome == "awaiting_approval":
        console.print(f"  approve with: keel models approve {escape(d.model)} {d.version}")
