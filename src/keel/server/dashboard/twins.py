"""The digital twins pages: `/twins` and `/twins/{name}` (`?version=`).

The list shows every twin's latest version: its dataset version, demand model, lead time, costs,
the best classic policy's cost and the exact optimum (from the latest baselines).

A twin page shows, for one version: the system; the demand fit (the chosen family and why, every
candidate's fit, the seasonal factors as a bar chart when the demand is seasonal); the latest
baselines (each classic family's cost per period with a 95 % error bar against the optimum, as an
inline SVG laid out in _svg, and their gaps); the trained policies scored on the twin (its
'evaluation' results: cost, the paired difference to the best classic policy, the gap to the optimum,
and each one's learning curve against the best classic cost and the optimum); and one simulated
trajectory of the trained policy (the champion, when there is one) and of every classic policy, all
facing the same demand (ws.rl.trajectories), side by side.
The payloads are read as keel.workspace.rl stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from keel.entities_rl import Twin, TwinResult
from keel.errors import KeelError
from keel.server.auth import Principal
from keel.server.dashboard._svg import Z95, cost_plot, number
from keel.server.dashboard.base import num, page_router, reader, render, workspace
from keel.server.schemas import dump

__all__ = ["router"]

router = page_router()

TRAJECTORY_PERIODS = 52  # a year of weeks: long enough to see the cycle, short enough to read
SERIES = (("stock", "stock (on hand − backlog)"), ("order", "orders"), ("demand", "demand"))


def _last(results: Sequence[TwinResult]) -> TwinResult | None:
    return results[-1] if results else None


def demand_text(demand: dict[str, Any]) -> str:
    """'poisson, rate 10' / 'negbin, mean 12.5, dispersion 3 · seasonal': the stored model in words."""
    params = ", ".join(
        f"{key} {num(value)}"
        for key, value in demand.items()
        if key not in ("family", "seasonal") and number(value) is not None
    )
    text = f"{demand.get('family', '?')}{', ' + params if params else ''}"
    return text + (" · seasonal" if demand.get("seasonal") else "")


def headline(baselines: TwinResult | None) -> dict[str, Any] | None:
    """The best classic family and its cost, and the optimum's cost (None without the DP), of a baselines result."""
    if baselines is None:
        return None
    p = baselines.payload
    best = p.get("best")
    evaluation = ((p.get("classic") or {}).get(best) or {}).get("evaluation") or {}
    optimum = p.get("optimum") or {}
    return {"best": best, "cost": evaluation.get("cost"), "se": evaluation.get("se"), "optimum": optimum.get("cost")}


@router.get("/twins", response_class=HTMLResponse)
def twins_page(request: Request, _: Principal = reader) -> HTMLResponse:
    rl = workspace(request).rl
    rows = [
        {
            "twin": twin,
            "demand": demand_text(twin.spec.get("demand") or {}),
            "head": headline(_last(rl.results(twin, "baselines"))),
        }
        for twin in rl.list()
    ]
    return render(request, "twins.html", section="twins", rows=rows)


@router.get("/twins/{name}", response_class=HTMLResponse)
def twin_page(
    name: str, request: Request, version: int | None = Query(default=None, ge=1), _: Principal = reader
) -> HTMLResponse:
    rl = workspace(request).rl
    twin: Twin = rl.get(name if version is None else f"{name}@{version}")  # unknown: a friendly 404
    baselines = _last(rl.results(twin, "baselines"))
    head = headline(baselines)
    return render(
        request,
        "twin.html",
        section="twins",
        twin=twin,
        versions=rl.versions(twin.name),
        system=twin.spec.get("system") or {},
        demand=demand_text(twin.spec.get("demand") or {}),
        fit=_fit(twin.spec.get("fit") or {}),
        baselines=_baselines(baselines) if baselines else None,
        policies=[_policy(r, head) for r in rl.results(twin, "evaluation")],
        trajectory=_trajectory(rl, twin) if baselines else None,
    )


def _fit(fit: dict[str, Any]) -> dict[str, Any]:
    """The stored fit, with the seasonal factors as a bar chart spec when the demand is seasonal."""
    factors = fit.get("seasonal_factors") or []
    chart = None
    if fit.get("seasonal") and factors:
        chart = {
            "type": "bar",
            "title": "Seasonal factors",
            "note": f"demand relative to the mean, per period of a {fit.get('season') or len(factors)}-period cycle",
            "labels": [str(i + 1) for i in range(len(factors))],
            "datasets": [{"label": "factor", "data": [float(f) for f in factors], "colors": "#7c3aed"}],
        }
    return {**fit, "chart": dump(chart) if chart else None}


def _baselines(result: TwinResult) -> dict[str, Any]:
    """Each classic family's policy, cost with its 95 % interval and gap, the optimum, and the cost plot."""
    p = result.payload
    classic = p.get("classic") or {}
    optimum = p.get("optimum") or None
    rows = []
    for family, entry in classic.items():
        evaluation = entry.get("evaluation") or {}
        cost, se = number(evaluation.get("cost")), number(evaluation.get("se"))
        params = {k: v for k, v in (entry.get("policy") or {}).items() if k != "kind"}
        rows.append(
            {
                "family": family,
                "params": ", ".join(f"{k} {num(v)}" for k, v in params.items()),
                "evaluation": evaluation,
                "interval": None if cost is None or se is None else (cost - Z95 * se, cost + Z95 * se),
                "gap": entry.get("gap"),
                "best": family == p.get("best"),
            }
        )
    return {
        "result": result,
        "rows": rows,
        "best": p.get("best"),
        "optimum": optimum,
        "optimum_note": p.get("optimum_note"),
        "plot": cost_plot(classic, p.get("best"), optimum.get("cost") if optimum else None),
    }


def _policy(result: TwinResult, head: dict[str, Any] | None) -> dict[str, Any]:
    """One trained policy's evaluation, with its learning curve against the best classic cost and the optimum."""
    p = result.payload
    model = p.get("model")
    curve = [
        [float(s), float(c)]
        for s, c in p.get("learning_curve") or []
        if number(s) is not None and number(c) is not None
    ]
    chart = None
    if curve:
        span = [curve[0][0], curve[-1][0]]
        datasets: list[dict[str, Any]] = [{"label": f"{model or 'policy'} (cost per period)", "points": curve}]
        baseline = (p.get("baseline") or {}).get("evaluation") or {}
        best_cost = number(baseline.get("cost", head.get("cost") if head else None))
        if best_cost is not None:
            family = (p.get("baseline") or {}).get("family") or (head or {}).get("best")
            datasets.append({"label": f"best classic ({family})", "points": [[x, best_cost] for x in span]})
        optimum = number(head.get("optimum")) if head else None
        if optimum is not None:
            datasets.append({"label": "optimum", "points": [[x, optimum] for x in span]})
        chart = {
            "type": "line",
            "title": f"Learning curve of {model or 'the policy'}",
            "note": "cost per period on the twin against training steps",
            "xTitle": "training steps",
            "datasets": datasets,
        }
    return {
        "result": result,
        "payload": p,
        "model": model,
        "model_name": model.split("@")[0] if isinstance(model, str) else None,
        "policy": p.get("policy") or {},
        "evaluation": p.get("evaluation") or {},
        "baseline": p.get("baseline") or {},
        "difference": p.get("difference") or {},
        "gap": p.get("gap"),
        "chart": dump(chart) if chart else None,
    }


def _role(name: str, found: dict[str, Any]) -> str:
    if name == found.get("trained"):
        return " (trained policy)"
    return " (best classic)" if name == found.get("best") else ""


def _trajectory(rl: Any, twin: Twin) -> dict[str, Any]:
    """One simulated path per policy (the trained one, then the classic families, the best first) under
    the same demand, as line charts; or why there is none (a system the simulator cannot replay here)."""
    try:
        found = rl.trajectories(twin, periods=TRAJECTORY_PERIODS, seed=0)
    except KeelError as exc:
        return {"charts": [], "error": str(exc)}
    charts = []
    for family, path in found["paths"].items():
        datasets = [
            {"label": label, "points": [[t + 1, float(v)] for t, v in enumerate(path[key])]} for key, label in SERIES
        ]
        mean = path.get("mean_cost") or [None]
        charts.append(
            dump(
                {
                    "type": "line",
                    "title": family + _role(family, found),
                    "note": f"mean cost {num(mean[0])} per period over this path",
                    "xTitle": "period",
                    "datasets": datasets,
                }
            )
        )
    return {"charts": charts, "error": None, "periods": found["periods"], "seed": found["seed"]}
