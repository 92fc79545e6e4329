"""The causal studies pages: `/studies` and `/studies/{name}` (`?version=`).

The list shows every study's latest version: its dataset version, treatment -> outcome, the latest
AIPW estimate (or the first of the latest run) with its interval, and the latest refutation verdict.

A study page shows, for one version: the causal graph as an inline SVG laid out in _svg,
the latest estimate run side by side (table and interval plot, disagreeing estimators flagged: their
95 % intervals do not overlap), the overlap histogram of the propensity by arm, the latest
refutation, the latest policy (value against each single action, the rules, and the uplift curves
when the result carries them), the effect changes between versions, and a what-if panel that asks
POST /api/v1/causal/studies/{name}/whatif from dashboard.js (readers may ask; nothing is stored).
The payloads are read as keel.workspace.causal_records, causal_policy and causal_cate store them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from keel.entities_studies import Study, StudyEstimate, StudyResult
from keel.server.auth import Principal
from keel.server.dashboard._svg import graph_layout, interval_plot
from keel.server.dashboard.base import num, page_router, reader, render, workspace
from keel.server.schemas import dump

__all__ = ["router"]

router = page_router()

PREFERRED = ("aipw", "dml", "ipw", "regression")  # whose overlap report and headline the pages show


def latest_run(estimates: Sequence[StudyEstimate]) -> list[StudyEstimate]:
    """The estimates of the newest estimate run (one run is stored at one time)."""
    if not estimates:
        return []
    newest = estimates[-1].created_at
    return [e for e in estimates if e.created_at == newest]


def headline(run: Sequence[StudyEstimate]) -> StudyEstimate | None:
    """The AIPW estimate of a run, else its first."""
    return next((e for e in run if e.estimator == "aipw"), run[0] if run else None)


def disagreements(run: Sequence[StudyEstimate]) -> tuple[list[str], set[str]]:
    """Pairs whose 95 % intervals do not overlap (keel.causal's rule), in words, and the estimators in them."""
    texts: list[str] = []
    flagged: set[str] = set()
    for i, a in enumerate(run):
        for b in run[i + 1 :]:
            if a.ci_high < b.ci_low or b.ci_high < a.ci_low:
                texts.append(
                    f"{a.estimator} ({num(a.value)}, 95% [{num(a.ci_low)}, {num(a.ci_high)}]) and {b.estimator} "
                    f"({num(b.value)}, 95% [{num(b.ci_low)}, {num(b.ci_high)}]) disagree: their intervals do not overlap"
                )
                flagged.update((a.estimator, b.estimator))
    return texts, flagged


def _last(results: Sequence[StudyResult]) -> StudyResult | None:
    return results[-1] if results else None


@router.get("/studies", response_class=HTMLResponse)
def studies_page(request: Request, _: Principal = reader) -> HTMLResponse:
    causal = workspace(request).causal
    rows = []
    for study in causal.list():
        refutation = _last(causal.results(study, kind="refutation"))
        rows.append(
            {
                "study": study,
                "estimate": headline(latest_run(causal.estimates(study))),
                "verdict": refutation.payload.get("verdict") if refutation else None,
            }
        )
    return render(request, "studies.html", section="studies", rows=rows)


@router.get("/studies/{name}", response_class=HTMLResponse)
def study_page(
    name: str, request: Request, version: int | None = Query(default=None, ge=1), _: Principal = reader
) -> HTMLResponse:
    causal = workspace(request).causal
    study: Study = causal.get(name if version is None else f"{name}@{version}")  # unknown: a friendly 404
    estimates = causal.estimates(study)
    run = latest_run(estimates)
    texts, flagged = disagreements(run)
    policy = _last(causal.results(study, kind="policy"))
    cate = _last(causal.results(study, kind="cate"))
    return render(
        request,
        "study.html",
        section="studies",
        study=study,
        versions=causal.versions(study.name),
        graph=graph_layout(study),
        run=run,
        earlier_runs=len({e.created_at for e in estimates}) - (1 if run else 0),
        plot=interval_plot(run, flagged),
        disagreements=texts,
        flagged=flagged,
        overlap=_overlap(run),
        refutation=_last(causal.results(study, kind="refutation")),
        sensitivity=_last(causal.results(study, kind="sensitivity")),
        policy=_policy(policy) if policy else None,
        cate=_cate(cate) if cate else None,
        changes=causal.results(study, kind="effect_change"),
        whatif_nodes=_whatif_nodes(study),
    )


def _overlap(run: Sequence[StudyEstimate]) -> dict[str, Any] | None:
    """The overlap report of the preferred propensity estimator, with its histogram as a chart spec."""
    reports = {e.estimator: e.overlap for e in run if e.overlap}
    chosen = next((k for k in PREFERRED if k in reports), next(iter(reports), None))
    if chosen is None:
        return None
    report = reports[chosen]
    assert report is not None
    edges = [float(v) for v in report.get("histogram_edges") or []]
    treated, control = report.get("treated_counts") or [], report.get("control_counts") or []
    chart = None
    if len(edges) >= 2 and len(treated) == len(control) == len(edges) - 1:
        chart = {
            "type": "histogram",
            "title": "Propensity score by arm",
            "note": f"from the {chosen} estimate",
            "labels": [f"{lo:.2f}–{hi:.2f}" for lo, hi in zip(edges, edges[1:], strict=False)],
            "datasets": [
                {"label": f"treated (n={report.get('n_treated')})", "data": list(treated), "colors": "#dc2626"},
                {"label": f"control (n={report.get('n_control')})", "data": list(control), "colors": "#2563eb"},
            ],
        }
    return {"estimator": chosen, "report": report, "chart": dump(chart) if chart else None}


def _policy(result: StudyResult) -> dict[str, Any]:
    """The stored policy: its value against each single action, the rules, and the uplift / Qini curves
    when the payload carries them (an UpliftCurve.to_dict under 'uplift')."""
    p = result.payload
    shares = p.get("shares") or {}
    values = [{"label": "policy", "share": None, **(p.get("value") or {})}] + [
        {"label": f"everyone: {a}", "share": shares.get(a), **(v or {})}
        for a, v in (p.get("action_values") or {}).items()
    ]
    chart = {
        "type": "bar",
        "title": f"Mean {p.get('outcome', 'outcome')} under the policy and under each single action",
        "note": f"baseline (no one): {p.get('baseline')}",
        "labels": [v["label"] for v in values],
        "datasets": [
            {
                "label": "expected outcome",
                "data": [v.get("value") for v in values],
                "colors": ["#059669"] + ["#94a3b8"] * (len(values) - 1),
            }
        ],
    }
    return {"result": result, "payload": p, "rows": values, "chart": dump(chart), "curves": _curves(p.get("uplift"))}


def _curves(uplift: Any, order: str = "policy order") -> list[dict[str, Any]]:
    """Uplift and Qini charts of one UpliftCurve.to_dict, or of each action's ({action: curve})."""
    if not isinstance(uplift, dict):
        return []
    if "shares" not in uplift:
        return [c for action, curve in uplift.items() for c in _curves_of(curve, order, f" of {action}")]
    return _curves_of(uplift, order, "")


def _curves_of(uplift: Any, order: str, what: str) -> list[dict[str, Any]]:
    if not isinstance(uplift, dict) or not uplift.get("shares"):
        return []
    shares = [100 * float(s) for s in uplift["shares"]]
    charts = []
    for key, title in (("uplift", f"Uplift curve{what}"), ("qini", f"Qini curve{what}")):
        model, random = uplift.get(key), uplift.get(f"random_{key}")
        if not model or len(model) != len(shares):
            continue
        datasets = [{"label": order, "points": _points(shares, model)}]
        if random and len(random) == len(shares):
            datasets.append({"label": "random order", "points": _points(shares, random)})
        note = f"Qini coefficient {num(uplift.get('qini_coefficient'))}; ranking {uplift.get('ranking', 'as stored')}"
        charts.append(
            {"type": "line", "title": title, "note": note, "xTitle": "% of units targeted", "datasets": datasets}
        )
    return [dump(c) for c in charts]


def _cate(result: StudyResult) -> dict[str, Any]:
    """The stored heterogeneous effects: the chosen learner, every candidate's score, the effects'
    histogram and the uplift / Qini curves of targeting by them."""
    p = result.payload
    hist = p.get("histogram") or {}
    edges, counts = [float(v) for v in hist.get("edges") or []], list(hist.get("counts") or [])
    chart = None
    if len(edges) == len(counts) + 1 and counts:
        chart = {
            "type": "histogram",
            "title": "Effect per unit (CATE)",
            "note": f"{p.get('learner')}-learner on {p.get('model')}",
            "labels": [f"{num(lo)}–{num(hi)}" for lo, hi in zip(edges, edges[1:], strict=False)],
            "datasets": [{"label": "units", "data": counts, "colors": "#7c3aed"}],
        }
    scores = sorted((p.get("scores") or {}).items(), key=lambda kv: kv[1])
    return {
        "result": result,
        "payload": p,
        "scores": scores,
        "chart": dump(chart) if chart else None,
        "curves": _curves(p.get("uplift"), "order of the effects"),
    }


def _points(xs: Sequence[float], ys: Sequence[Any]) -> list[list[float]]:
    return [[x, float(y)] for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(float(y))]


def _whatif_nodes(study: Study) -> list[str]:
    """The nodes a what-if may set: every observed node but the outcome, the treatment first."""
    nodes = dict.fromkeys([study.treatment, *(n for edge in study.edges for n in edge)])
    return [n for n in nodes if n != study.outcome and n not in study.latent]
