"""The web dashboard of `keel serve`: server-rendered pages over the same Workspace as the API.

One module per section, each with its own `router` from `base.page_router()`:

    login         /login, /logout
    overview      /  (counts, model health, recent activity)
    datasets      /datasets...  (versions, profile charts, diff)
    runs          /runs...  (search, detail, artifacts, compare)
    models        /models, /models/{name}  (versions, aliases and their history, lineage, promote / roll back)
    monitoring    /models/{name}/monitoring, /alerts
    explanations  /models/{name}/explain
    studies       /studies, /studies/{name}  (causal graph, estimates, overlap, refutation, policy, what-if)
    edge          /edge  (each model version's edge builds: size against the MCU, agreement, emulated run)
    twins         /twins, /twins/{name}  (system, demand fit, classic baselines against the optimum, trained
                  policies and their learning curves, a simulated trajectory)
    genai         /genai, /genai/models/{name}, /genai/indexes/{name}  (a language model's curves,
                  perplexity against the baselines and a streamed prompt box; an index's retrieval
                  metrics and an ask box with highlighted citations)

`base` holds what they share: the templates (keel/server/templates) and their filters, `render`,
the route class, the `reader` guard and the queries several sections ask. A new section is one
module here, one template, and one entry in SECTIONS.

Pages use the API's auth (`need(Role.READER)`). `base.PageRoute` turns failures into pages: no
valid token sends a browser to /login (whose form stores the token in the HttpOnly `keel_token`
cookie), an unknown dataset, run or model is a friendly 404. Charts are drawn by
static/dashboard.js with the vendored Chart.js from JSON the page carries in `data-spec`
attributes; run metric series come from `/api/v1/runs/{id}/metrics`.
"""

from __future__ import annotations

from fastapi import APIRouter

from keel.server.dashboard import (
    datasets,
    edge,
    explanations,
    genai,
    login,
    models,
    monitoring,
    overview,
    runs,
    studies,
    twins,
)

__all__ = ["SECTIONS", "router"]

SECTIONS = (login, overview, datasets, runs, models, monitoring, explanations, studies, edge, twins, genai)


def _router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for section in SECTIONS:
        router.include_router(section.router)
    return router


router = _router()
