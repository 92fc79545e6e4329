"""The GenAI pages: `/genai` (every language model and retrieval index), `/genai/models/{name}` and
`/genai/indexes/{name}` (`?version=`, default the latest).

A language model page shows, for one `lm` version: what it was trained on (corpus, base model, run,
size and speed); its training curves (the run's `train_loss` and `val_loss` step metrics, an inline
SVG laid out in _svg); the perplexity table on the held-out split against the baselines
(`ws.genai.evaluation` where the workspace has it, else the version's own metrics), each row with its
ratio to this model; and a prompt box whose text streams from `/api/v1/models/{name}/generate`
(static/genai.js).

An index page shows, for one index version: its corpus lineage and chunking, the near-duplicate
counts, the retrieval metrics on held-out questions per mode (recall@1, recall@5, MRR), and an ask box
posting to `/api/v1/genai/{index}/ask` that lists the passages with their citations and the question's
words highlighted (built as DOM nodes by static/genai.js: the passages are user data).

Both boxes call prediction routes, which need the predictor role: a reader sees why there is no box.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from keel.entities import ModelVersion, Role
from keel.errors import KeelError, NotFoundError
from keel.server.auth import Principal
from keel.server.dashboard._svg import line_plot, number
from keel.server.dashboard.base import page_router, reader, render, workspace

__all__ = ["router"]

router = page_router()

LM = "lm"
CURVES = ("train_loss", "val_loss")
MODES = ("hybrid", "dense", "bm25")  # the ask route's modes, the fused one first
# The version's metrics the table reads when the workspace has no ws.genai.evaluation:
# (metric, kind, the row's name: a tag holding the model it measured, or a fixed label).
METRIC_ROWS = (
    ("val_perplexity", "domain", None, "this model"),
    ("ngram_perplexity", "ngram-3", None, "Kneser-Ney trigram"),
    ("bigram_perplexity", "ngram-2", None, "Kneser-Ney bigram"),
    ("general_perplexity", "general", "keel.general", "general model"),
    ("base_perplexity", "base", "keel.base", "base model before tuning"),
    ("adapter_perplexity", "adapter", "keel.adapter", "LoRA adapter, unmerged"),
)
CROSS_TOKENIZER = ("general", "general+lora")  # rows with a tokenizer of their own: compared per byte
KIND_NOTES = {
    "domain": "this model on the held-out domain texts",
    "ngram-3": "interpolated Kneser-Ney up to trigrams, counted on the same training tokens",
    "ngram-2": "interpolated Kneser-Ney bigram, same tokens",
    "general": "a general model of the same size, same held-out texts (its own tokenizer)",
    "general+lora": "the general model after LoRA on this corpus",
    "base": "the base model before tuning",
    "adapter": "the LoRA adapter before merging (equals the merged model)",
}


def _can_predict(request: Request) -> bool:
    who: Principal | None = getattr(request.state, "principal", None)
    return who is not None and who.role.allows(Role.PREDICTOR)


def _lm_versions(ws: Any) -> list[ModelVersion]:
    """The latest `lm` version of every model that has one, newest model first."""
    found = []
    for registered in ws.models.list():
        versions = [mv for mv in ws.models.versions(registered.name) if mv.flavor == LM]
        if versions:
            found.append(versions[-1])
    return sorted(found, key=lambda mv: mv.created_at, reverse=True)


@router.get("/genai", response_class=HTMLResponse)
def genai_page(request: Request, _: Principal = reader) -> HTMLResponse:
    ws = workspace(request)
    models = [{"mv": mv, "table": perplexity_table(ws, mv)} for mv in _lm_versions(ws)]
    indexes = [{"index": ix, "best": _best_mode(ix.spec.get("evaluation") or {})} for ix in ws.genai.list()]
    return render(request, "genai.html", section="genai", models=models, indexes=indexes)


# -- a language model version -------------------------------------------------------------------------
@router.get("/genai/models/{name}", response_class=HTMLResponse)
def lm_page(
    name: str, request: Request, version: int | None = Query(default=None, ge=1), _: Principal = reader
) -> HTMLResponse:
    ws = workspace(request)
    lms = [mv for mv in ws.models.versions(name) if mv.flavor == LM]  # an unknown model: a friendly 404
    if not lms:
        raise NotFoundError(f"{name} has no language model version (flavour {LM!r}); its page is /models/{name}")
    mv = next((m for m in lms if m.version == version), None) if version is not None else lms[-1]
    if mv is None:
        raise NotFoundError(f"{name}@{version} is not a language model version of {name}")
    return render(
        request,
        "genai_model.html",
        section="genai",
        mv=mv,
        versions=lms,
        run=_run(ws, mv.run_id),
        curves=_curves(ws, mv.run_id),
        table=perplexity_table(ws, mv),
        can_predict=_can_predict(request),
    )


def _run(ws: Any, run_id: str | None) -> Any:
    if not run_id:
        return None
    try:
        return ws.runs.get(run_id)
    except NotFoundError:
        return None


def _curves(ws: Any, run_id: str | None) -> dict[str, Any] | None:
    """The run's train and validation loss per step, as an SVG line plot; None without a run or points."""
    if not run_id:
        return None
    try:
        points = ws.runs.metric_history(run_id)
    except NotFoundError:
        return None
    series: dict[str, list[tuple[float, float]]] = {key: [] for key in CURVES}
    for p in points:
        if p.key in series:
            series[p.key].append((p.step, p.value))
    return line_plot(series)


def perplexity_table(ws: Any, mv: ModelVersion) -> dict[str, Any]:
    """{source, corpus, held_out, rows: [{name, kind, note, perplexity, bits_per_byte, ratio, bar, best,
    this}], verdict}: `ws.genai.evaluation` when the workspace has it and it answers, else the metrics."""
    evaluation: dict[str, Any] | None = None
    if hasattr(ws.genai, "evaluation"):
        try:
            evaluation = ws.genai.evaluation(mv.ref)
        except (KeelError, KeyError):  # a version it cannot evaluate (or lacking a row) still has metrics
            evaluation = None
    if evaluation is not None:
        source = "evaluation"
        raw = [(r.get("name"), r.get("kind"), r.get("perplexity"), r.get("bits_per_byte")) for r in evaluation["rows"]]
        corpus, held_out = evaluation.get("corpus"), evaluation.get("held_out_documents") or None
    else:
        source = "metrics"
        raw = []
        for metric, kind, tag, label in METRIC_ROWS:
            if metric in mv.metrics:
                named = mv.ref if kind == "domain" else (mv.tags.get(tag) if tag else None)
                bpb = mv.metrics.get(metric.replace("_perplexity", "_bits_per_byte"))
                raw.append((f"{named} ({label})" if named else label, kind, mv.metrics[metric], bpb))
        corpus, held_out = mv.tags.get("keel.corpus"), None
    return _table(raw, source, corpus, held_out)


def _table(raw: list[tuple[Any, ...]], source: str, corpus: Any, held_out: Any) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        {
            "name": str(name),
            "kind": str(kind),
            "note": KIND_NOTES.get(str(kind), ""),
            "perplexity": number(p),
            "bits_per_byte": number(bpb),
        }
        for name, kind, p, bpb in raw
    ]
    finite = [r["perplexity"] for r in rows if r["perplexity"] is not None]
    domain = next((r["perplexity"] for r in rows if r["kind"] == "domain"), None)
    low, top = min(finite, default=None), max(finite, default=None)
    for r in rows:
        p = r["perplexity"]
        r["this"] = r["kind"] == "domain"
        r["best"] = p is not None and p == low
        r["ratio"] = None if p is None or domain in (None, 0) else p / domain
        # log-scaled bars: perplexities of baselines can differ by orders of magnitude
        r["bar"] = None if p is None or not top or p <= 0 else 100 * math.log1p(p) / math.log1p(top)
    return {"source": source, "corpus": corpus, "held_out": held_out, "rows": rows, "verdict": _verdict(rows)}


def _score(row: dict[str, Any], this: dict[str, Any]) -> tuple[float | None, float | None]:
    """The pair of numbers that compare `row` with this model: bits per byte across tokenizers (a
    general model cuts text into other tokens, so its per-token perplexity is not comparable) when
    both have it, else perplexity per token."""
    if row["kind"] in CROSS_TOKENIZER and row["bits_per_byte"] is not None and this["bits_per_byte"] is not None:
        return row["bits_per_byte"], this["bits_per_byte"]
    return row["perplexity"], this["perplexity"]


def _verdict(rows: list[dict[str, Any]]) -> str | None:
    """One sentence on the claim: is this model below the n-gram bar (and the general model)?"""
    this = next((r for r in rows if r["this"] and r["perplexity"] is not None), None)
    if this is None:
        return None
    beaten: list[str] = []
    above: list[str] = []
    for r in rows:
        if r["this"] or r["kind"] == "adapter":  # the adapter is this model before merging
            continue
        theirs, ours = _score(r, this)
        if theirs is not None and ours is not None:
            (beaten if ours < theirs else above).append(r["name"])
    if not beaten and not above:
        return None
    if not above:
        return f"Lower perplexity than every baseline ({', '.join(beaten)})."
    return f"Not below {', '.join(above)}" + (f"; below {', '.join(beaten)}." if beaten else ".")


# -- a retrieval index version --------------------------------------------------------------------------
def _best_mode(evaluation: dict[str, Any]) -> str | None:
    """The mode with the highest MRR; a tie goes to the earlier of MODES (hybrid, the ask box's default)."""
    order = [m for m in MODES if m in evaluation] + [m for m in evaluation if m not in MODES]
    finite = {m: v for m in order if (v := number((evaluation[m] or {}).get("mrr"))) is not None}
    return max(finite, key=lambda m: finite[m]) if finite else None


@router.get("/genai/indexes/{name}", response_class=HTMLResponse)
def index_page(
    name: str, request: Request, version: int | None = Query(default=None, ge=1), _: Principal = reader
) -> HTMLResponse:
    ws = workspace(request)
    made = ws.genai.get(name if version is None else f"{name}@{version}")  # unknown: a friendly 404
    evaluation = made.spec.get("evaluation") or {}
    ordered = [m for m in MODES if m in evaluation] + [m for m in evaluation if m not in MODES]
    return render(
        request,
        "genai_index.html",
        section="genai",
        index=made,
        versions=ws.genai.versions(made.name),
        evaluation=[(m, evaluation[m]) for m in ordered],
        best=_best_mode(evaluation),
        dedupe=made.spec.get("dedupe") or {},
        models=[mv.ref for mv in _lm_versions(ws)],
        modes=MODES,
        can_predict=_can_predict(request),
    )
