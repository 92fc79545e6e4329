"""Act 7, Explain: the reason codes of the held-out application the champion finds riskiest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.demo._shared import INDENT, MODEL_NAME, POSITIVE, split, step
from keel.refs import CHAMPION

if TYPE_CHECKING:
    from rich.console import Console

    from keel.entities import DatasetVersion
    from keel.workspace import Workspace

__all__ = ["explain_riskiest"]


def explain_riskiest(ws: Workspace, version: DatasetVersion, console: Console) -> dict[str, Any] | None:
    """Reason codes of the held-out application the champion scores as the riskiest."""
    import importlib.util

    from rich.markup import escape

    champion = ws.models.load(f"{MODEL_NAME}@{CHAMPION}")
    if importlib.util.find_spec("shap") is None and "Gradient" in type(champion.model[-1]).__name__:
        console.print(f"{INDENT}(reason codes need the [explain] extra: pip install 'keelml[explain]')")
        return None
    _, X_test, _, _ = split(ws.datasets.load(version))
    p_bad = champion.predict_proba(X_test)[:, list(champion.classes or ()).index(POSITIVE)]
    row = X_test.iloc[[int(p_bad.argmax())]]
    result = ws.explain(f"{MODEL_NAME}@{CHAMPION}", row, target=POSITIVE, top=3)
    console.print(
        f"{step(7, 'Explain')}why application #{int(row.index[0]) + 1} is the riskiest (P(bad) {p_bad.max():.2f}):"
    )
    for reason in result.reasons[0]:
        console.print(f"{INDENT}- {escape(reason['text'])}")
    return {"row": int(row.index[0]) + 1, "p_bad": float(p_bad.max()), "reasons": result.reasons[0]}
