"""`keel rl`: digital twins of inventory systems fitted on dataset versions (twin, list, show) and the
best classic policies and exact optimum on them (baselines)."""

from __future__ import annotations

from typing import Any

import typer

from keel.cli._common import JSON_OPTION, escape, number, open_workspace, out, print_json, queue_job, table, when
from keel.entities_rl import Twin, TwinResult

app = typer.Typer(
    help="Digital twins: inventory systems fitted on demand data, their classic policies and the optimum.",
    no_args_is_help=True,
)


@app.command("twin")
def twin(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The twin's name (a new version if it exists)."),
    dataset: str = typer.Argument(..., metavar="DATASET@VERSION", help="The demand history, e.g. sales@3."),
    demand_column: str = typer.Option(..., "--demand", help="The column of demand per period."),
    time_column: str | None = typer.Option(None, "--time", help="Orders the rows; must advance in equal steps."),
    period: str | None = typer.Option(None, "--period", help="month, week, day, ...: the seasonal cycle tested."),
    season: int | None = typer.Option(None, "--season", min=1, help="The seasonal cycle in periods (instead)."),
    scale: float | None = typer.Option(None, "--scale", help="Multiply a non-integer series into whole units."),
    lead_time: int = typer.Option(2, "--lead-time", help="Periods from an order to its arrival."),
    holding: float = typer.Option(1.0, "--holding", help="Cost per unit on hand at the end of a period."),
    penalty: float = typer.Option(9.0, "--penalty", help="Cost per unit short (backordered or lost)."),
    fixed_cost: float = typer.Option(0.0, "--fixed-cost", help="Cost per order placed."),
    lost_sales: bool = typer.Option(False, "--lost-sales", help="Unmet demand is lost (default: backordered)."),
    capacity: int | None = typer.Option(None, "--capacity", help="The most that can be ordered in a period."),
    shelf_life: int | None = typer.Option(None, "--shelf-life", help="Periods a unit keeps (perishable)."),
    description: str = typer.Option("", "--description"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Fit a twin's demand model on a dataset version and store the twin (lineage: the version)."""
    made = open_workspace(ctx).rl.twin(
        name,
        dataset,
        demand_column=demand_column,
        time_column=time_column,
        period=period,
        season=season,
        scale=scale,
        lead_time=lead_time,
        costs={"holding": holding, "penalty": penalty, "fixed_order": fixed_cost},
        lost_sales=lost_sales,
        capacity=capacity,
        shelf_life=shelf_life,
        description=description,
    )
    if as_json:
        print_json(made)
        return
    _print_twin(made)


@app.command("baselines")
def baselines(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="TWIN[@VERSION]"),
    periods: int = typer.Option(1000, "--periods", min=10, help="Simulated periods per copy."),
    copies: int = typer.Option(256, "--copies", min=10, help="Independent copies (common random numbers)."),
    seed: int = typer.Option(0, "--seed", min=0),
    as_json: bool = JSON_OPTION,
) -> None:
    """The best base-stock, (s,S) and capped base-stock policies on a twin, and the exact optimum
    where dynamic programming covers it; each with its cost per period and the gap (stored)."""
    stored = open_workspace(ctx).rl.baselines(ref, periods=periods, copies=copies, seed=seed)
    if as_json:
        print_json(stored)
        return
    _print_baselines(stored[0])


@app.command("train")
def train(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="TWIN[@VERSION]"),
    register_as: str | None = typer.Option(None, "--register-as", help="Register the policy as this model."),
    steps: int = typer.Option(200_000, "--steps", min=256, help="PPO training steps per seed."),
    seeds: int = typer.Option(1, "--seeds", min=1, max=16, help="Seeds trained (tasks on the executor)."),
    action: str = typer.Option("order_up_to", "--action", help="order_up_to, delta or quantity."),
    n_envs: int = typer.Option(8, "--n-envs", min=1, help="Parallel copies of the twin per seed."),
    queue: bool = typer.Option(False, "--queue", help="Queue it as a job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a PPO policy on a twin (warm-started from its best classic policy), score it against the
    best classic policy and the optimum with common random numbers, and register it on request."""
    ws = open_workspace(ctx)
    if queue:
        from keel.workspace.payloads import TrainPolicyPayload

        twin_ref = ws.rl.get(ref).ref  # an unknown twin fails here, not in the worker
        payload = TrainPolicyPayload(twin_ref, register_as, steps, seeds, action, n_envs)
        queue_job(ws, payload, as_json)
        return
    result = ws.rl.train(ref, register_as=register_as, steps=steps, seeds=seeds, action=action, n_envs=n_envs)
    if as_json:
        print_json(result)
        return
    _print_evaluation(result)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The latest version of every twin."""
    twins = open_workspace(ctx).rl.list()
    if as_json:
        print_json(twins)
        return
    if not twins:
        out().print("No twins yet: fit one with keel rl twin NAME DATASET@VERSION --demand COLUMN")
        return
    t = table("twin", "dataset", "demand", "lead time>", "costs", "created")
    for w in twins:
        t.add_row(w.ref, w.dataset, _demand(w), str(w.spec["system"]["lead_time"]), _costs(w), when(w.created_at))
    out().print(t)


@app.command("show")
def show(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="TWIN[@VERSION]"), as_json: bool = JSON_OPTION
) -> None:
    """A twin version: its system, the demand fit and its evidence, and its latest baselines."""
    ws = open_workspace(ctx)
    made = ws.rl.get(ref)
    found = ws.rl.results(made, kind="baselines")
    if as_json:
        print_json({"twin": made, "baselines": found[-1] if found else None})
        return
    _print_twin(made)
    if found:
        _print_baselines(found[-1])


def _demand(w: Twin) -> str:
    d = w.spec["demand"]
    fit = w.spec["fit"]
    seasonal = f", seasonal ({fit['season']})" if fit.get("seasonal") else ""
    if d["family"] == "poisson":
        return f"Poisson, mean {number(d['rate'])}{seasonal}"
    if d["family"] == "negbin":
        return f"negative binomial, mean {number(d['mean'])}, dispersion {number(d['dispersion'])}{seasonal}"
    return f"empirical{seasonal}"


def _costs(w: Twin) -> str:
    c = w.spec["system"]["costs"]
    return f"h {number(c['holding'])}, p {number(c['penalty'])}" + (
        f", K {number(c['fixed_order'])}" if c.get("fixed_order") else ""
    )


def _print_twin(w: Twin) -> None:
    console = out()
    system = w.spec["system"]
    console.print(f"[bold]twin {escape(w.ref)}[/] fitted on {escape(w.dataset)} ({escape(w.spec['column'])})")
    shortage = "lost sales" if system["lost_sales"] else "backorders"
    extras = [
        f"capacity {system['capacity']}" if system.get("capacity") else "",
        f"shelf life {system['shelf_life']}" if system.get("shelf_life") else "",
    ]
    console.print(
        f"  system    lead time {system['lead_time']}, {shortage}, {_costs(w)}"
        + "".join(f", {e}" for e in extras if e),
        markup=False,
    )
    console.print(f"  demand    {_demand(w)}", markup=False)
    console.print(f"  why       {w.spec['fit']['reason']}", markup=False)
    if w.spec.get("scale"):
        console.print(f"  scale     {w.spec['scale']['note']}", markup=False)
    t = table("candidate", "log-lik>", "AIC>", "fit test", "p>")
    for c in w.spec["fit"]["candidates"]:
        t.add_row(
            c["family"], number(c["log_likelihood"]), number(c["aic"]), c["gof_test"][:40], number(c["gof_p_value"])
        )
    console.print(t)


def _print_evaluation(result: TwinResult) -> None:
    p: dict[str, Any] = result.payload
    e, b, d = p["evaluation"], p["baseline"]["evaluation"], p["difference"]
    console = out()
    head = f"policy {p['model']}" if p.get("model") else "policy (not registered)"
    console.print(f"[bold]{escape(head)}[/] on twin {escape(result.twin)}: PPO, {p['policy']['action']} actions")
    console.print(f"  cost      {number(e['cost'])} ± {number(e['se'])} per period", markup=False)
    console.print(
        f"  vs best   {p['baseline']['family']} {number(b['cost'])}: {d['value']:+.4f} ± {d['se']:.4f} (paired)",
        markup=False,
    )
    if p.get("gap") is not None:
        console.print(f"  optimum   gap {100 * p['gap']:+.2f} % ± {100 * p['gap_se']:.2f} %", markup=False)
    curve = p.get("learning_curve") or []
    if curve:
        console.print(f"  curve     {len(curve)} checkpoints, kept step {p['kept_step']:,}", markup=False)


def _print_baselines(result: TwinResult) -> None:
    p: dict[str, Any] = result.payload
    t = table("policy", "parameters", "cost / period>", "± SE>", "gap to optimum>")
    for family, row in p["classic"].items():
        params = ", ".join(f"{k}={v}" for k, v in row["policy"].items() if k != "kind")
        gap = "-" if row["gap"] is None else f"{100 * row['gap']:+.2f} %"
        name = f"{family} (best)" if family == p["best"] else family
        t.add_row(name, params, number(row["evaluation"]["cost"]), number(row["evaluation"]["se"]), gap)
    optimum = p.get("optimum")
    if optimum is not None:
        t.add_row("optimum (DP)", optimum["method"][:40], number(optimum["cost"]), "exact", "0 %")
    out().print(t)
    if optimum is None:
        out().print(f"  no exact optimum: {p.get('optimum_note')}", markup=False)
