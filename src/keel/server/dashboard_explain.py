"""Dashboard page of explanations: `/models/{name}/explain`.

Per model version: global importance (mean absolute attribution over a seeded sample of its
training data) as a bar chart; per prediction: one row of that sample (`?row=`), its attributions
as a bar chart sorted by size, base value and output, and its reason codes. The sample's
explanation is computed once per version and kept (bounded) in the app.
"""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from keel.errors import InvalidInputError
from keel.server.auth import Principal
from keel.server.dashboard import _render, _ws, reader, router
from keel.server.schemas import dump

__all__: list[str] = []

SAMPLE_ROWS = 200
SHOWN_FEATURES = 15


def _sample(request: Request, name: str, version: int | None) -> tuple[Any, Any]:
    """The explained training sample of a model version, cached per version."""
    from keel._explainer import context, explain_rows

    ws = _ws(request)
    info = ws.models.get(f"{name}@{version}" if version else f"{name}@champion" if "champion" in _aliases(ws, name) else f"{name}@latest")
    cache: dict[tuple[str, int], Any] = request.app.state.explain_samples
    key = (info.name, info.version)
    if key not in cache:
        ctx = context(ws, info, background_rows=SAMPLE_ROWS)
        if ctx.background is None:
            raise InvalidInputError(f"{info.ref} has no training sample to explain (no linked dataset, and it was "
                                    "registered without X=); use ws.explain(ref, rows)")
        cache[key] = (ctx.background, explain_rows(ws.models.load(info), ctx.background, ctx, top=5))
        while len(cache) > 8:
            cache.pop(next(iter(cache)))
    return info, cache[key]


def _aliases(ws: Any, name: str) -> dict[str, int]:
    return next((m.aliases for m in ws.models.list() if m.name == name), {})


@router.get("/models/{name}/explain", response_class=HTMLResponse)
def model_explain(name: str, request: Request, version: int | None = Query(default=None, ge=1), row: int = Query(default=0, ge=0),
                  image: str | None = Query(default=None, pattern=r"^\d{1,3}x\d{1,3}$", description="HxW: draw the attributions as an image"),
                  _: Principal = reader) -> HTMLResponse:  # fmt: skip
    ws = _ws(request)
    ws.models.versions(name)  # a friendly 404 for an unknown model
    info, (sample, explained) = _sample(request, name, version)
    e = explained.explanation
    row = min(row, len(sample) - 1)
    importance = list(e.importance().items())[:SHOWN_FEATURES]
    global_chart = {"type": "hbar", "title": f"Global importance of {info.ref}",
                    "note": f"mean |attribution| over {len(sample)} training rows, in {e.space}",
                    "labels": [f for f, _ in importance], "datasets": [{"label": "mean |attribution|", "data": [v for _, v in importance]}]}  # fmt: skip
    attributions = sorted(e.row(row).items(), key=lambda kv: -abs(kv[1]))[:SHOWN_FEATURES]
    row_chart = {"type": "hbar", "title": f"Attributions of row {row}", "note": f"toward {e.target}" if e.target is not None else "",
                 "labels": [f for f, _ in attributions],
                 "datasets": [{"label": "attribution", "data": [v for _, v in attributions],
                               "colors": ["#dc2626" if v > 0 else "#2563eb" for _, v in attributions]}]}  # fmt: skip
    values = sample.iloc[row].to_dict()
    texts = {col: [(tok, a, _color(a, scale)) for tok, a in e.words(row, col, str(values.get(col, "")))]
             for col, (_, term_values) in e.terms.items() for scale in [float(abs(term_values[row]).max() or 1.0)]}  # fmt: skip
    heat = _heat_map(e.values[row], image) if image else None
    return _render(request, "explain.html", section="models", name=name, info=info, explanation=e, row=row, rows=len(sample),
                   prediction=explained.predictions[row], reasons=explained.reasons[row], values=values,
                   base=float(e.base_values[row]), output=float(e.outputs[row]),
                   global_chart=dump(global_chart), row_chart=dump(row_chart), texts=texts, heat=heat, image=image)  # fmt: skip


def _color(value: float, scale: float) -> str:
    """Red for a push toward the explained class, blue against it; stronger for larger pushes."""
    alpha = min(abs(value) / scale, 1.0) * 0.8 if scale else 0.0
    return f"rgba(220, 38, 38, {alpha:.2f})" if value > 0 else f"rgba(37, 99, 235, {alpha:.2f})"


def _heat_map(values: Any, shape: str) -> list[list[tuple[float, str]]] | None:
    height, width = (int(x) for x in shape.split("x"))
    if height * width != len(values):
        raise InvalidInputError(f"image={shape} does not fit {len(values)} attributions")
    scale = float(abs(values).max() or 1.0)
    return [[(float(values[r * width + c]), _color(float(values[r * width + c]), scale)) for c in range(width)] for r in range(height)]
