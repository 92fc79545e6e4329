"""`keel causal`: causal studies over dataset versions: study, estimate, whatif, refute, sensitivity,
bootstrap, rerun, results, list, show. Refute, sensitivity and bootstrap run as jobs with --queue."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer

from keel.cli._common import JSON_OPTION, err, escape, number, open_workspace, out, print_json, queue_job, table, when
from keel.errors import InvalidInputError

if TYPE_CHECKING:
    from keel.entities import Job
    from keel.entities_studies import Study, StudyEstimate, StudyResult
    from keel.workspace import Workspace
    from keel.workspace.payloads import StudyJobPayload

app = typer.Typer(
    help="Causal studies: the effect of a treatment on an outcome, from a dataset version and a causal graph.",
    no_args_is_help=True,
)


def parse_edges(text: str) -> list[tuple[str, str]]:
    """'a->b, b->c' (or chains 'a->b->c'; ';' also separates) as a list of edges."""
    edges: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.replace(";", ",").split(",")):
        if not item:
            continue
        names = [name.strip() for name in item.split("->")]
        if len(names) < 2 or not all(names):
            raise InvalidInputError(f"--edges: {item!r} is not an edge; write 'cause->effect', e.g. 'age->treat'")
        edges.extend(zip(names, names[1:], strict=False))
    if not edges:
        raise InvalidInputError("--edges is empty; write edges as 'a->b,b->c'")
    return edges


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


@app.command("study")
def study(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Study name, e.g. nsw-training."),
    dataset: str = typer.Argument(..., metavar="DATASET@V", help="The dataset version it reads, e.g. nsw@1."),
    edges: str | None = typer.Option(None, "--edges", help="The causal graph as edges: 'age->treat,treat->re78'."),
    graph: Path | None = typer.Option(
        None, "--graph", help="The causal graph as a DOT (.dot/.gv) or GML (.gml) file.", exists=True, dir_okay=False
    ),
    treatment: str = typer.Option(..., "--treatment", "-t", help="The treatment column (binary for the estimators)."),
    outcome: str = typer.Option(..., "--outcome", "-y", help="The outcome column."),
    covariates: str | None = typer.Option(
        None, "--covariates", help="Adjust for these (comma-separated) instead of the set the graph gives."
    ),
    latent: str | None = typer.Option(None, "--latent", help="Graph nodes with no column (comma-separated)."),
    description: str = typer.Option("", "--description", "-d", help="The question the study asks."),
    model: str | None = typer.Option(None, "--model", help="The model version the study explains, e.g. credit@3."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a causal graph against a dataset version, identify the effect, and store a new study version."""
    if (edges is None) == (graph is None):
        raise InvalidInputError("Give the causal graph once: --edges 'a->b,b->c' or --graph FILE.dot")
    spec: Any = parse_edges(edges) if edges is not None else graph
    ws = open_workspace(ctx)
    made = ws.causal.study(
        name,
        dataset,
        graph=spec,
        treatment=treatment,
        outcome=outcome,
        covariates=_names(covariates),
        latent=_names(latent) or (),
        description=description,
        model=model,
    )
    if as_json:
        print_json(made)
        return
    ident = made.identification
    out().print(
        f"Created [bold]{made.ref}[/]: effect of {escape(made.treatment)} on {escape(made.outcome)} "
        f"in {made.dataset}, identified by {ident.get('strategy')}"
    )
    out().print(f"adjustment set: {escape(', '.join(made.covariates) or '(none)')}")
    for note in ident.get("notes", []):
        out().print(f"  - {escape(str(note))}")


@app.command("estimate")
def estimate(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version: nsw-training, nsw-training@2."),
    estimand: str = typer.Option("ate", "--estimand", help="ate, att or atc."),
    estimators: str = typer.Option("regression,ipw,aipw,dml", "--estimators", help="Comma-separated families."),
    trim: str | None = typer.Option(
        None, "--trim", metavar="LOW,HIGH", help="Drop units with a propensity outside [LOW, HIGH] (reported)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap and the cross-fitting."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Estimate the study's effect with several estimator families; store each estimate."""
    bounds = _trim(trim)
    ws = open_workspace(ctx)
    with err().status(f"Estimating {ref}..."):
        stored, comparison = ws.causal.estimate(
            ref, estimators=tuple(_names(estimators) or ()), estimand=estimand, trim=bounds, seed=seed
        )
    if as_json:
        print_json(
            {
                "estimates": stored,
                "agree": comparison.agree,
                "disagreements": list(comparison.disagreements),
                "notes": list(comparison.notes),
            }
        )
        return
    _print_estimates(stored)
    for line in comparison.disagreements:
        out().print(f"[bold red]disagree:[/] {escape(line)}")
    for line in comparison.notes:
        out().print(f"[yellow]note:[/] {escape(line)}")


def _trim(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--trim {text!r}: give two propensities LOW,HIGH, e.g. 0.01,0.99") from None
    return low, high


@app.command("whatif")
def whatif(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version."),
    assign: list[str] = typer.Option(
        ..., "--set", help="NODE=VALUE: set (=5), shift (=+5) or scale (=*1.1) a node; repeatable."
    ),
    outcome: str | None = typer.Option(None, "--outcome", "-y", help="The outcome asked about (default: the study's)."),
    counterfactual: bool = typer.Option(
        False, "--counterfactual", help="For the observed units (default: interventional, for the population)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the fit and its resamples."),
    as_json: bool = JSON_OPTION,
) -> None:
    """What happens to the outcome if we act: an answer from a structural causal model on the study's graph."""
    intervene: dict[str, str] = {}
    for item in assign:
        node, sep, value = item.partition("=")
        if not sep or not node.strip() or not value.strip():
            raise InvalidInputError(f"--set {item!r}: write NODE=VALUE, e.g. re75=*1.1, age=+5 or treat=1")
        intervene[node.strip()] = value.strip()
    ws = open_workspace(ctx)
    kind: Literal["interventional", "counterfactual"] = "counterfactual" if counterfactual else "interventional"
    with err().status(f"Fitting the structural model of {ref}..."):
        answer = ws.causal.what_if(ref, intervene=intervene, outcome=outcome, kind=kind, seed=seed)
    low, high = answer.interval
    if as_json:
        print_json(answer.summary())
        return
    what = ", ".join(f"{node} {words}" for node, words in answer.intervene.items())
    out().print(
        f"{escape(what)}: mean {escape(answer.outcome)} {number(answer.baseline_mean)} -> "
        f"{number(answer.intervened_mean)}, effect [bold]{number(answer.mean_effect)}[/] "
        f"({answer.level:.0%} [{number(low)}, {number(high)}], {answer.n_resamples} resamples, {answer.kind})"
    )


@app.command("refute")
def refute(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version."),
    estimator: str = typer.Option("aipw", "--estimator", help="regression, ipw, aipw or dml."),
    estimand: str = typer.Option("ate", "--estimand", help="ate, att or atc."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the permutations, subsets and refits."),
    queue: bool = typer.Option(False, "--queue", help="Queue it as a job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Try to break the study's estimate, refitting everything per check; print each check and the verdict
    (stored as the study's refutation result)."""
    ws = open_workspace(ctx)
    if queue:
        from keel.workspace.payloads import CausalRefutePayload

        study = ws.causal.get(ref)  # an unknown study fails here, not in the worker
        queue_job(ws, CausalRefutePayload(study.ref, estimator=estimator, estimand=estimand, seed=seed), as_json)
        return
    with err().status(f"Refuting {ref}..."):
        result = ws.causal.refute(ref, estimator=estimator, estimand=estimand, seed=seed)
    checks = [{"name": c.name, "passed": c.passed, "value": c.value, "reason": c.reason} for c in result.checks]
    if as_json:
        e = result.estimate
        print_json(
            {
                "estimate": {
                    "estimator": e.estimator,
                    "estimand": e.estimand,
                    "value": e.value,
                    "ci_low": e.ci_low,
                    "ci_high": e.ci_high,
                },
                "checks": checks,
                "verdict": result.verdict,
                "reasons": list(result.reasons),
                "seed": result.seed,
            }
        )
        return
    e = result.estimate
    out().print(f"{escape(e.estimator)} {e.estimand} {number(e.value)} (95% [{number(e.ci_low)}, {number(e.ci_high)}])")
    for c in result.checks:
        mark = "[green]pass[/]" if c.passed else "[bold red]FAIL[/]"
        out().print(f"{mark}  {c.name}: {escape(c.reason)}")
    colour = {"robust": "green", "fragile": "yellow"}.get(result.verdict, "bold red")
    out().print(f"verdict: [{colour}]{result.verdict}[/]")
    for reason in result.reasons:
        out().print(f"  - {escape(reason)}")


def _run(ws: Workspace, payload: StudyJobPayload, *, queue: bool, as_json: bool, what: str) -> Job | None:
    """Queue the job, or run it here on the configured executor and wait: the finished job (None if queued)."""
    from keel.errors import KeelError

    if queue:
        queue_job(ws, payload, as_json)
        return None
    with err().status(f"{what} ({ws.settings.executor} executor)..."):
        job, _ = ws.jobs.run_or_queue(payload.kind, payload.to_dict(), background=False)
    if job.status == "failed":
        raise KeelError(f"{what} failed (job {job.id}): {job.error}")
    return job


@app.command("sensitivity")
def sensitivity(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version."),
    estimator: str = typer.Option("regression", "--estimator", help="regression (exact), ipw, aipw or dml."),
    estimand: str = typer.Option("ate", "--estimand", help="ate, att or atc."),
    seed: int = typer.Option(0, "--seed", min=0),
    queue: bool = typer.Option(False, "--queue", help="Queue it as a job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """How strong an unobserved confounder would have to be to move the effect (partial R2 sweep, as a job)."""
    from keel.workspace.payloads import CausalSensitivityPayload

    ws = open_workspace(ctx)
    study = ws.causal.get(ref)
    payload = CausalSensitivityPayload(study.ref, estimator=estimator, estimand=estimand, seed=seed)
    if _run(ws, payload, queue=queue, as_json=as_json, what=f"Sensitivity of {study.ref}") is None:
        return
    stored = ws.causal.results(study, kind="sensitivity")[-1]
    if as_json:
        print_json(stored)
        return
    _print_sensitivity(stored.payload)


def _print_sensitivity(p: dict[str, Any]) -> None:
    out().print(f"{escape(p['estimator'])} {p['estimand']} {number(p['estimate'])} (se {number(p['stderr'])})")
    t = table("r2 treatment | outcome", *[f"{v:g}>" for v in p["r2_outcome"]])
    for r2, row in zip(p["r2_treatment"], p["adjusted"], strict=True):
        t.add_row(f"{r2:g}", *[number(v) for v in row])
    out().print(t)
    out().print(
        f"robustness value {p['robustness_value']:.1%} (to move the estimate to 0), "
        f"{p['robustness_value_ci']:.1%} (to move its 95% limit to 0); {escape(p['method'])}"
    )


@app.command("bootstrap")
def bootstrap(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version."),
    estimators: str = typer.Option("regression,ipw,aipw", "--estimators", help="Comma-separated families."),
    estimand: str = typer.Option("ate", "--estimand", help="ate, att or atc."),
    n_boot: int = typer.Option(200, "--n-boot", min=20, help="Resamples."),
    tasks: int = typer.Option(4, "--tasks", min=1, help="Chunks of resamples (Ray tasks with KEEL_EXECUTOR=ray)."),
    seed: int = typer.Option(0, "--seed", min=0),
    queue: bool = typer.Option(False, "--queue", help="Queue it as a job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Percentile bootstrap intervals of the study's effect, the resamples split into tasks (a job)."""
    from keel.workspace.payloads import CausalBootstrapPayload

    ws = open_workspace(ctx)
    study = ws.causal.get(ref)
    payload = CausalBootstrapPayload(
        study.ref, estimators=_names(estimators), estimand=estimand, seed=seed, n_boot=n_boot, tasks=tasks
    )
    job = _run(ws, payload, queue=queue, as_json=as_json, what=f"Bootstrap of {study.ref}")
    if job is None or job.result is None:
        return
    if as_json:
        print_json(job.result)
        return
    t = table("estimator", "estimand", "effect>", "95% interval", "resamples>")
    for i in job.result["intervals"]:
        t.add_row(
            i["estimator"],
            i["estimand"],
            number(i["value"]),
            f"[{number(i['ci_low'])}, {number(i['ci_high'])}]",
            str(i["n_boot"]),
        )
    out().print(t)


@app.command("rerun")
def rerun(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The study."),
    dataset: str | None = typer.Option(None, "--dataset", help="The dataset version (default: the newest)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-estimate the study on its dataset's newest version as a new study version, and report how
    each estimator's effect changed (a drifted effect raises the study's causal-effect-drift alert)."""
    ws = open_workspace(ctx)
    with err().status(f"Rerunning {name}..."):
        made, change = ws.causal.rerun(name, dataset=dataset)
    if as_json:
        print_json({"study": made, "effect_change": change})
        return
    print_change(change.payload)


def print_change(p: dict[str, Any]) -> None:
    """An effect change (a rerun's stored result, or a comparison of two versions) as a table."""
    out().print(f"{p['previous_study']} ({p['previous_dataset']}) -> [bold]{p['study']}[/] ({p['dataset']})")
    t = table("estimator", "previous>", "new>", "difference>", "z>", "drifted")
    for r in p["estimators"]:
        z = "-" if r["z"] is None else f"{r['z']:.2f}"
        mark = "[bold red]yes[/]" if r["drifted"] else "no"
        t.add_row(r["estimator"], number(r["previous"]), number(r["new"]), number(r["difference"]), z, mark)
    out().print(t)
    out().print(escape(p["rule"]))


@app.command("results")
def results(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version."),
    kind: str | None = typer.Option(None, "--kind", help="refutation, sensitivity, effect_change, bootstrap, policy."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The stored results of a study version, oldest first."""
    stored = open_workspace(ctx).causal.results(ref, kind)
    if as_json:
        print_json(stored)
        return
    t = table("id>", "kind", "created", "summary")
    for r in stored:
        t.add_row(str(r.id), r.kind, when(r.created_at, short=True), escape(_summary(r)))
    out().print(t)


def _summary(r: StudyResult) -> str:
    p = r.payload
    if r.kind == "refutation":
        return f"{p['verdict']} ({p['estimate']['estimator']})"
    if r.kind == "sensitivity":
        return f"robustness value {p['robustness_value']:.1%} ({p['estimator']})"
    if r.kind == "effect_change":
        return f"{p['previous_study']} -> {p['study']}: {'drifted' if p['drifted'] else 'stable'}"
    return ", ".join(sorted(p))[:80]


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every study with its newest version."""
    studies = open_workspace(ctx).causal.list()
    if as_json:
        print_json(studies)
        return
    if not studies:
        out().print("No causal studies yet: keel causal study NAME DATASET@V --edges 'a->b' -t T -y Y")
        return
    t = table("study", "dataset", "treatment", "outcome", "strategy", "created", "description")
    for s in studies:
        t.add_row(
            s.ref,
            s.dataset,
            s.treatment,
            s.outcome,
            str(s.identification.get("strategy", "")),
            when(s.created_at, short=True),
            s.description,
        )
    out().print(t)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version."),
    as_json: bool = JSON_OPTION,
) -> None:
    """A study version: its graph, identification, stored estimates and latest refutation verdict."""
    ws = open_workspace(ctx)
    found = ws.causal.get(ref)
    stored = ws.causal.estimates(found)
    refutations = ws.causal.results(found, kind="refutation")
    latest = refutations[-1] if refutations else None
    if as_json:
        print_json({"study": found, "estimates": stored, "refutation": latest})
        return
    _print_study(found)
    if stored:
        _print_estimates(stored)
    else:
        out().print(f"No estimates yet: keel causal estimate {found.ref}")
    if latest is None:
        out().print(f"Not refuted yet: keel causal refute {found.ref}")
    else:
        p = latest.payload
        colour = {"robust": "green", "fragile": "yellow"}.get(p["verdict"], "bold red")
        out().print(
            f"refutation ({escape(p['estimate']['estimator'])}, {when(latest.created_at)}): [{colour}]{p['verdict']}[/]"
        )
        for reason in p["reasons"]:
            out().print(f"  - {escape(reason)}")


def _print_study(s: Study) -> None:
    console = out()
    console.print(f"[bold]{s.ref}[/]  {escape(s.description)}")
    console.print(f"effect of {escape(s.treatment)} on {escape(s.outcome)} in {s.dataset} ({s.dataset_digest[:19]})")
    console.print(f"graph: {escape(', '.join(f'{a}->{b}' for a, b in s.edges))}")
    if s.latent:
        console.print(f"latent: {escape(', '.join(s.latent))}")
    if s.model:
        console.print(f"explains model {escape(s.model)}")
    console.print(
        f"identified by {escape(str(s.identification.get('strategy')))}; "
        f"adjustment set: {escape(', '.join(s.covariates) or '(none)')}"
    )
    console.print(f"created {when(s.created_at)} by {escape(s.author)}")


def _print_estimates(stored: list[StudyEstimate]) -> None:
    t = table("estimator", "estimand", "effect>", "95% interval", "interval", "n>", "overlap")
    for e in stored:
        t.add_row(
            e.estimator,
            e.estimand,
            number(e.value),
            f"[{number(e.ci_low)}, {number(e.ci_high)}]",
            escape(e.interval_method.split(",")[0]),  # the method; --json has its details
            f"{e.n:,}",
            _overlap(e.overlap),
        )
    out().print(t)


def _overlap(report: dict[str, Any] | None) -> str:
    if not report:
        return "-"
    share = report.get("share_outside_support") or 0.0
    ess = "/".join(number(round(report.get(key) or 0)) for key in ("ess_treated", "ess_control"))
    return f"{share:.1%} outside, ESS {ess}" + (" (warnings)" if report.get("warnings") else "")
