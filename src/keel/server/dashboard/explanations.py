"""The explanations page: `/models/{name}/explain`.

Per model version: global importance (mean absolute attribution over a seeded sample of its
training data) as a bar chart; per prediction: one row of that sample (`?row=`), its attributions
as a bar chart sorted by size, base value and output, and its reason codes. The sample's
explanation is computed once per version and kept (bounded) by the workspace's explainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from keel.errors import InvalidInputError
from keel.refs import CHAMPION
from keel.server.auth import Principal
from keel.server.dashboard.base import page_router, reader, render, workspace
from keel.server.schemas import dump

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

__all__ = ["router"]

SHOWN_FEATURES = 15

router = page_router()


def _sample(request: Request, name: str, version: int | None) -> tuple[Any, Any]:
    """The explained training sample of a model version (cached per version by ws.explainer)."""
    ws = workspace(request)
    info = ws.models.get(
        f"{name}@{version}" if version else f"{name}@{CHAMPION}" if CHAMPION in _aliases(ws, name) else f"{name}@latest"
    )
    return info, ws.explainer.sample(info, top=5)


def _aliases(ws: Workspace, name: str) -> dict[str, int]:
    return next((m.aliases for m in ws.models.list() if m.name == name), {})


@router.get("/models/{name}/explain", response_class=HTMLResponse)
def model_explain(
    name: str,
    request: Request,
    version: int | None = Query(default=None, ge=1),
    row: int = Query(default=0, ge=0),
    image: str | None = Query(
        default=None, pattern=r"^\d{1,3}x\d{1,3}$", description="HxW: draw the attributions as an image"
    ),
    _: Principal = reader,
) -> HTMLResponse:
    ws = workspace(request)
    ws.models.versions(name)  # a friendly 404 for an unknown model
    info, (sample, explained) = _sample(request, name, version)
    e = explained.explanation
    row = min(row, len(sample) - 1)
    importance = list(e.importance().items())[:SHOWN_FEATURES]
    global_chart = {
        "type": "hbar",
        "title": f"Global importance of {info.ref}",
        "note": f"mean |attribution| over {len(sample)} training rows, in {e.space}",
        "labels": [f for f, _ in importance],
        "datasets": [{"label": "mean |attribution|", "data": [v for _, v in importance]}],
    }
    attributions = sorted(e.row(row).items(), key=lambda kv: -abs(kv[1]))[:SHOWN_FEATURES]
    row_chart = {
        "type": "hbar",
        "title": f"Attributions of row {row}",
        "note": f"toward {e.target}" if e.target is not None else "",
        "labels": [f for f, _ in attributions],
        "datasets": [
            {
                "label": "attribution",
                "data": [v for _, v in attributions],
                "colors": ["#dc2626" if v > 0 else "#2563eb" for _, v in attributions],
            }
        ],
    }
    values = sample.iloc[row].to_dict()
    texts = {
        col: [(tok, a, _color(a, scale)) for tok, a in e.words(row, col, str(values.get(col, "")))]
        for col, (_, term_values) in e.terms.items()
        for scale in [float(abs(term_values[row]).max() or 1.0)]
    }
    heat = _heat_map(e.values[row], image) if image else None
    return render(
        request,
        "explain.html",
        section="models",
        name=name,
        info=info,
        explanation=e,
        row=row,
        rows=len(sample),
        prediction=explained.predictions[row],
        reasons=explained.reasons[row],
        values=values,
        base=float(e.base_values[row]),
        output=float(e.outputs[row]),
        global_chart=dump(global_chart),
        row_chart=dump(row_chart),
        texts=texts,
        heat=heat,
        image=image,
    )


def _color(value: float, scale: float) -> str:
    """Red for a push toward the explained class, blue against it; stronger for larger pushes."""
    alpha = min(abs(value) / scale, 1.0) * 0.8 if scale else 0.0
    return f"rgba(220, 38, 38, {alpha:.2f})" if value > 0 else f"rgba(37, 99, 235, {alpha:.2f})"


def _heat_map(values: Any, shape: str) -> list[list[tuple[float, str]]] | None:
    height, width = (int(x) for x in shape.split("x"))
    if height * width != len(values):
        raise InvalidInputError(f"image={shape} does not fit {len(values)} attributions")
    scale = float(abs(values).max() or 1.0)
    return [
        [(float(values[r * width + c]), _color(float(values[r * width + c]), scale)) for c in range(width)]
        for r in range(height)
    ]
