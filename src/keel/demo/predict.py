"""Act 6, Predict: the champion by alias and the other version by number, on held-out applications."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.demo._shared import INDENT, MODEL_NAME, POSITIVE, SHOWN_APPLICATIONS, split, step
from keel.refs import CHAMPION

if TYPE_CHECKING:
    from rich.console import Console

    from keel.demo.train import TrainedModel
    from keel.entities import DatasetVersion
    from keel.workspace import Workspace

__all__ = ["predict_held_out"]


def predict_held_out(
    ws: Workspace, version: DatasetVersion, other: TrainedModel, console: Console
) -> list[dict[str, Any]]:
    with console.status("Predicting..."):
        predictions = _predict_held_out(ws, version, other)
    console.print(f"{step(6, 'Predict')}P(bad) for held-out applications, by alias and by version")
    console.print(_predictions_table(predictions, other))
    return predictions


def _predict_held_out(ws: Workspace, version: DatasetVersion, other: TrainedModel) -> list[dict[str, Any]]:
    frame = ws.datasets.load(version)
    _, X_test, _, y_test = split(frame)
    X_new, y_new = X_test.head(SHOWN_APPLICATIONS), y_test.head(SHOWN_APPLICATIONS)
    records = X_new.to_dict(orient="records")  # what an application form or an HTTP client would send
    champion = ws.models.load(f"{MODEL_NAME}@{CHAMPION}")
    previous = ws.models.load(other.ref)
    p_champion = champion.predict_proba(records)[:, list(champion.classes or ()).index(POSITIVE)]
    p_other = previous.predict_proba(records)[:, list(previous.classes or ()).index(POSITIVE)]
    return [
        {"row": int(row) + 1, "actual": actual, "p_bad_champion": float(a), "p_bad_other": float(b)}
        for row, actual, a, b in zip(X_new.index, y_new, p_champion, p_other, strict=True)
    ]


def _predictions_table(predictions: list[dict[str, Any]], other: TrainedModel) -> str:
    champion = f"{MODEL_NAME}@{CHAMPION}"
    lines = [f"{INDENT}{'application':>11}  {'actual':<8}{champion:>22}{other.ref:>16}"]
    for p in predictions:
        row = f"#{p['row']}"
        lines.append(f"{INDENT}{row:>11}  {p['actual']:<8}{p['p_bad_champion']:>22.2f}{p['p_bad_other']:>16.2f}")
    return "\n".join(lines)
