"""`ws.explain(...)`: load a model version and a background sample of its training data, call the
explain package, and turn the attributions into reason codes (composition, beside the Workspace)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from keel.explain import Explanation

__all__ = ["Explained", "Context", "context", "explain", "explain_rows", "explain_lime", "measure_importance", "importance"]


@dataclass(frozen=True)
class Explained:
    """Attributions, predictions and reason codes for some rows of one model version."""

    model: str  # 'credit-risk@2'
    explanation: Explanation
    predictions: list[Any]
    reasons: list[list[dict[str, Any]]]
    typical: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        e = self.explanation
        return {
            "model": self.model, "method": e.method, "space": e.space, "target": _plain(e.target), "features": list(e.features),
            "rows": [{"prediction": _plain(p), "base_value": float(e.base_values[i]), "output": float(e.outputs[i]),
                      "attributions": e.row(i), "reasons": self.reasons[i]} for i, p in enumerate(self.predictions)],
        }  # fmt: skip


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class Context:
    """What explaining a model version needs besides the model: computed once per version."""

    background: pd.DataFrame | None  # a seeded sample of the training data, typed by the signature
    typical: dict[str, Any]
    display: dict[str, dict[str, str]]


def context(ws: Any, info: Any, *, background_rows: int = 200) -> Context:
    """The background sample comes from the version's training dataset, else from the sample it
    was registered with (X=); typical values from all of X, else the dataset's profile, else the sample."""
    from keel.explain import typical_values
    from keel.registry.signature import validate_input

    if info.signature is None:
        raise InvalidInputError(f"{info.ref} has no signature; explanations need its input columns (register it with X=...)")
    columns = list(info.signature.column_names)
    stored = ws.models.training_sample(info)
    train = _training_sample(ws, info, background_rows)
    if train is None and stored is not None and set(columns) <= set(stored[0].columns):
        train = _subsample(stored[0][columns], background_rows)
    background = validate_input(train, info.signature) if train is not None else None
    typical = typical_values(train[columns]) if train is not None else {}
    typical.update(_profile_typical(ws, info, columns))
    if stored is not None:
        typical.update({c: v for c, v in stored[1].items() if c in columns})
    return Context(background, typical, _display(ws, info.name))


def explain_rows(loaded: Any, rows: Any, ctx: Context, *, method: str = "auto", target: Any = None, top: int = 3) -> Explained:
    """Attributions, predictions and reason codes for `rows` of a loaded model version."""
    from keel.explain import explain_model, reason_codes
    from keel.registry.signature import validate_input

    X = validate_input(rows, loaded.signature)
    if len(X) == 0:
        raise InvalidInputError("no rows to explain")
    explanation = explain_model(loaded.model, X, background=ctx.background, target=target, method=method)
    predictions = list(loaded.predict(X))
    reasons = reason_codes(explanation, X, ctx.typical, outcomes=predictions if loaded.classes else None, top=top,
                           display=ctx.display)  # fmt: skip
    return Explained(loaded.ref, explanation, predictions, reasons, ctx.typical)


def explain(ws: Any, model: str, rows: Any, *, method: str = "auto", target: Any = None, top: int = 3,
            background_rows: int = 200) -> Explained:  # fmt: skip
    info = ws.models.get(model)
    loaded = ws.models.load(info)
    return explain_rows(loaded, rows, context(ws, info, background_rows=background_rows), method=method, target=target, top=top)


def _training_sample(ws: Any, info: Any, rows: int) -> pd.DataFrame | None:
    """A seeded sample of the version's training dataset, with its input columns."""
    if not info.datasets:
        return None
    frame = ws.datasets.load(info.datasets[0])
    columns = [c for c in info.signature.column_names if c in frame.columns]
    if len(columns) < len(info.signature.column_names):
        return None
    return _subsample(frame[columns], rows)


def _subsample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """`rows` seeded rows of `frame`, complete ones where it has at least 10 (maskers and means need values)."""
    frame = frame.dropna() if frame.isna().any().any() and len(frame.dropna()) >= 10 else frame
    return frame.sample(n=min(rows, len(frame)), random_state=0)


def _profile_typical(ws: Any, info: Any, columns: list[str]) -> dict[str, Any]:
    """Typical values over the whole training dataset, from its stored profile: the median of a
    numeric column, the most frequent category or boolean value (a 200-row sample's median is off)."""
    from keel.errors import NotFoundError

    if not info.datasets:
        return {}
    try:
        profile = ws.datasets.get(info.datasets[0]).profile or {}
    except NotFoundError:
        return {}
    out: dict[str, Any] = {}
    for column in columns:
        entry = profile.get("columns", {}).get(column) or {}
        median = (entry.get("quantiles") or {}).get("p50")
        if entry.get("kind") == "numeric" and median is not None:
            out[column] = float(median)
        elif entry.get("kind") == "categorical" and entry.get("top"):
            out[column] = entry["top"][0]["value"]
        elif entry.get("kind") == "boolean" and entry.get("true", 0) + entry.get("false", 0):
            out[column] = entry.get("true", 0) > entry.get("false", 0)
    return out


def _display(ws: Any, model: str) -> dict[str, dict[str, str]]:
    try:
        return dict(ws.retraining.project(model).explain.get("display", {}))
    except Exception:  # no project, or none with display names: the column names it is
        return {}


def explain_lime(ws: Any, model: str, row: Any, *, target: Any = None, top: int = 5, seed: int = 0, seeds: int = 5,
                 num_samples: int = 2000, text_column: str | None = None) -> Any:  # fmt: skip
    """LIME for one row of a model version, keel.explain.LimeExplanation: over its training
    sample for tabular models; with `text_column`, over the words of that column's text (the
    row's other columns held as they are), for classifiers of text."""
    from keel.explain import lime_tabular, lime_text
    from keel.registry.signature import validate_input

    info = ws.models.get(model)
    loaded = ws.models.load(info)
    X = validate_input(row, info.signature)
    classes = list(info.signature.classes) if info.signature.classes else None
    if text_column is not None:
        if text_column not in X.columns:
            raise InvalidInputError(f"text_column {text_column!r} is not an input of {info.ref}; inputs: {', '.join(X.columns)}")
        if classes is None:
            raise InvalidInputError(f"Text LIME explains classifiers; {info.ref} has no classes")
        if len(X) != 1:
            raise InvalidInputError(f"LIME explains one row at a time, got {len(X)}")
        return lime_text(_TextOf(loaded, X, text_column), str(X[text_column].iloc[0]), classes=classes, target=target,
                         top=top, seed=seed, seeds=seeds, num_samples=num_samples)  # fmt: skip
    ctx = context(ws, info)
    if ctx.background is None:
        raise InvalidInputError(f"{info.ref} has no training data to sample around: register it with X=... or trained_on=...")
    return lime_tabular(loaded, X, ctx.background, target=target, classes=classes, top=top, seed=seed, seeds=seeds,
                        num_samples=num_samples)  # fmt: skip


class _TextOf:
    """A model of documents: each document replaces `column` in a copy of `row`, then the model scores it."""

    def __init__(self, model: Any, row: Any, column: str) -> None:
        self.model, self.row, self.column = model, row, column

    def predict_proba(self, docs: list[str]) -> Any:
        frame = self.row.loc[self.row.index.repeat(len(docs))].reset_index(drop=True)
        frame[self.column] = docs
        return self.model.predict_proba(frame)


IMPORTANCE_ROWS = 200


def measure_importance(model: Any, X: Any) -> dict[str, Any] | None:
    """When a version is registered: mean |attribution| over an evenly spread sample of its
    training input `X` ({"importance", "method", "space", "rows"}, stored with the version), for
    models explained exactly and quickly (trees, linear models, pipelines ending in one). Others
    get theirs on first request (`importance`): a model-agnostic explainer takes seconds."""
    import pandas as pd

    from keel.explain import explain_model
    from keel.explain.attributions import kind_of
    from keel.registry.sample import spread

    if not isinstance(X, pd.DataFrame) or X.empty or kind_of(model) is None:
        return None
    sample = spread(X, IMPORTANCE_ROWS)
    try:
        e = explain_model(model, sample, background=sample)
    except (ImportError, InvalidInputError, ValueError):  # shap not installed, or a pipeline it cannot fold: later
        return None
    return _record(e, len(sample))


def _record(e: Any, rows: int) -> dict[str, Any]:
    """The importance record stored with a version: mean |attribution| and how it was measured."""
    return {"importance": e.importance(), "method": e.method, "space": e.space, "rows": rows}


def importance(ws: Any, model: str) -> dict[str, Any]:
    """The stored global importance of a model version, computed on its training sample (and
    stored) when registration did not compute it."""
    info = ws.models.get(model)
    stored = ws._meta.importance.get(info.name, info.version)
    if stored is not None:
        return stored
    ctx = context(ws, info, background_rows=IMPORTANCE_ROWS)
    if ctx.background is None:
        raise InvalidInputError(f"{info.ref} has no training data to measure importance on: register it with X=... or trained_on=...")
    e = explain_rows(ws.models.load(info), ctx.background, ctx).explanation
    ws._meta.importance.save(info.name, info.version, _record(e, len(ctx.background)))
    return dict(ws._meta.importance.get(info.name, info.version) or {})
