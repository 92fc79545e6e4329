"""`keel causal cate`, `keel causal policy` and `keel causal compare`: for whom the treatment works
(meta-learners chosen by a cross-validated score), which action for whom (a shallow doubly robust policy
tree, printed as rules with its value against treating everyone alike, registered as a model on
request), and two study versions side by side. Their own module beside keel.cli.causal (at its size
limit); keel.cli._app adds them to `keel causal`."""

from __future__ import annotations

from typing import Any

import typer

from keel.cli._common import JSON_OPTION, err, escape, number, open_workspace, out, print_json

__all__ = ["cate", "compare", "policy"]


def compare(
    ctx: typer.Context,
    a: str = typer.Argument(..., metavar="NAME@V", help="The earlier study version."),
    b: str = typer.Argument(..., metavar="NAME@V", help="The later study version (any study)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Two study versions side by side: their dataset versions, graph and adjustment-set differences,
    and how each estimator's latest effect moved (drifted: disjoint intervals or |z| > 1.96)."""
    from keel.cli.causal import print_change

    ws = open_workspace(ctx)
    p = ws.causal.compare(a, b)
    if as_json:
        print_json(p)
        return
    for what in ("edges", "covariates"):
        added = [("->".join(x) if isinstance(x, list) else x) for x in p[what]["added"]]
        removed = [("->".join(x) if isinstance(x, list) else x) for x in p[what]["removed"]]
        if added or removed:
            out().print(f"{what}: +{escape(', '.join(added) or '-')}  -{escape(', '.join(removed) or '-')}")
    if not p["same_question"]:
        out().print("[yellow]note:[/] the two versions ask about different treatments or outcomes")
    print_change(p)


def cate(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version (a binary treatment)."),
    learners: str = typer.Option("T,S,X,DR", "--learners", help="Comma-separated meta-learners to choose among."),
    selection: str = typer.Option(
        "r_loss", "--selection", help="r_loss or dr: the cross-validated score that chooses."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the folds and the models."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Estimate heterogeneous effects: fit the meta-learners, choose one, print the choice, every
    candidate's score, the effects' spread and how well they target (Qini); stored as the 'cate' result."""
    if selection not in ("r_loss", "dr"):
        raise typer.BadParameter(f"--selection must be r_loss or dr, got {selection!r}")
    ws = open_workspace(ctx)
    names = [n.strip() for n in learners.split(",") if n.strip()]
    with err().status(f"Fitting the meta-learners on {ref}..."):
        _, stored = ws.causal.cate(ref, learners=names, selection=selection, seed=seed)
    p = stored.payload
    if as_json:
        print_json({**p, "result_id": stored.id, "study": stored.study})
        return
    low, high = p["ate_interval"]
    out().print(f"chosen: {escape(p['learner'])}-learner on {escape(p['model'])} (by {escape(p['selection'])})")
    for key, score in sorted(p["scores"].items(), key=lambda kv: kv[1]):
        mark = " <- chosen" if key == f"{p['learner']}/{p['model']}" else " (within one SE)" * (key in p["near_best"])
        out().print(f"  {escape(key)}: {number(score)}{mark}")
    q = p["quantiles"]
    out().print(
        f"ATE {number(p['ate'])} (95% [{number(low)}, {number(high)}]); effect per unit: 5% {number(q['0.05'])}, "
        f"median {number(q['0.5'])}, 95% {number(q['0.95'])}; positive for {p['share_positive']:.0%}"
    )
    curve = p["uplift"]["1"]
    out().print(
        f"targeting by the effect: Qini coefficient {number(curve['qini_coefficient'])}, "
        f"AUUC above random {number(curve['auuc_lift'])} ({curve['ranking']})"
    )


def policy(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME[@V]", help="The study version; its treatment holds the actions."),
    features: str | None = typer.Option(
        None, "--features", help="Comma-separated columns the rules split on (default: the adjustment set)."
    ),
    depth: int = typer.Option(2, "--depth", min=1, max=3, help="Depth of the policy tree."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="The 'no one' action gains are measured from (default: the first sorted)."
    ),
    register: str | None = typer.Option(
        None, "--register", metavar="MODEL", help="Register the tree as the next version of MODEL (served at /predict)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the cross-fitting."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Learn which action suits whom; print the rules, the policy's value and each single action's,
    and store it as the study's policy result."""
    ws = open_workspace(ctx)
    names = None if features is None else [n.strip() for n in features.split(",") if n.strip()]
    with err().status(f"Learning a policy for {ref}..."):
        result, stored, model = ws.causal.policy(
            ref, features=names, depth=depth, baseline=baseline, register_as=register, seed=seed
        )
    if as_json:
        print_json({**stored.payload, "result_id": stored.id, "study": stored.study})
        return
    _print_policy(result, stored.payload)
    if model is not None:
        out().print(f"registered {model.ref} (flavour policy): keel models show {escape(model.name)}")


def _print_policy(result: Any, payload: dict[str, Any]) -> None:
    """`result` is a keel.causal.PolicyResult, which this edge may not import (it talks to the facade)."""
    for rule in result.tree.rules():
        out().print(f"- {escape(rule)}")
    v = result.value
    out().print(f"policy value {number(v.value)} (95% [{number(v.low)}, {number(v.high)}], {result.interval_method})")
    for action, value in result.action_values.items():
        share = result.shares.get(action, 0.0)
        out().print(
            f"  everyone {escape(str(action))}: {number(value.value)} (95% [{number(value.low)}, {number(value.high)}]); "
            f"the policy recommends it for {share:.0%}"
        )
    g = result.gain
    out().print(
        f"gain over {escape(str(result.tree.baseline))}: {number(g.value)} (95% [{number(g.low)}, {number(g.high)}])"
    )
    for action, curve in (payload.get("uplift") or {}).items():
        out().print(
            f"  targeting {escape(action)}: Qini coefficient {number(curve['qini_coefficient'])}, "
            f"AUUC above random {number(curve['auuc_lift'])} ({curve['ranking']})"
        )
    for note in result.notes:
        out().print(f"[yellow]note:[/] {escape(note)}")
