"""Explanation use cases (`ws.explain`, `ws.explain_lime`, `ws.importance`, `ws.explainer`): load a
model version and a background sample of its training data, call the explain package, and turn the
attributions into reason codes.

`Explainer` keeps one bounded cache (least recently used, `MAX_VERSIONS` versions) of what
explaining a version needs besides the model (`Context`), and of its explained training sample:
the Python API, the server's /predict?explain=true, the dashboard and batch jobs all go through it.
A version's context never changes (its training data and registered sample are immutable), so
nothing needs invalidating; the bound keeps memory flat when many versions are explained.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from keel.entities import ModelVersion
    from keel.explain import Explanation
    from keel.storage.importance import ImportanceStore
    from keel.workspace.facade import Workspace

__all__ = ["Explained", "ExplainedRow", "Context", "Explainer", "explain_rows", "measure_importance", "MAX_VERSIONS"]

MAX_VERSIONS = 8  # model versions whose context (and explained sample) stay in memory
BACKGROUND_ROWS = 200  # rows of training data an explainer samples around


@dataclass(frozen=True)
class Explained:
    """Attributions, predictions and reason codes for some rows of one model version."""

    model: str  # 'credit-risk@2'
    explanation: Explanation
    predictions: list[Any]
    reasons: list[list[dict[str, Any]]]
    typical: dict[str, Any]

    def row(self, i: int) -> ExplainedRow:
        """Row `i`'s explanation: what the API, the server's /predict?explain=true and batch jobs show."""
        e = self.explanation
        return ExplainedRow(
            prediction=_plain(self.predictions[i]),
            base_value=float(e.base_values[i]),
            output=float(e.outputs[i]),
            space=e.space,
            target=_plain(e.target),
            method=e.method,
            attributions=e.row(i),
            reasons=self.reasons[i],
        )

    def to_dict(self) -> dict[str, Any]:
        e = self.explanation
        return {
            "model": self.model,
            "method": e.method,
            "space": e.space,
            "target": _plain(e.target),
            "features": list(e.features),
            "rows": [self.row(i).to_dict(with_model=False) for i in range(len(self.predictions))],
        }


@dataclass(frozen=True)
class ExplainedRow:
    """One explained prediction: the model's output split into a base value and per-feature
    attributions (in `space`: log-odds, probability or the raw output), and its reason codes."""

    prediction: Any
    base_value: float
    output: float
    space: str
    target: Any
    method: str
    attributions: dict[str, float]
    reasons: list[dict[str, Any]]

    def to_dict(self, *, with_model: bool = True) -> dict[str, Any]:
        """The JSON form. `with_model=False` (inside a response that states the model's method,
        space and target once): prediction, base value, output, attributions, reasons. With the
        model (beside a prediction that already holds its value): no prediction."""
        if not with_model:
            return {
                "prediction": self.prediction,
                "base_value": self.base_value,
                "output": self.output,
                "attributions": self.attributions,
                "reasons": self.reasons,
            }
        return {
            "base_value": self.base_value,
            "output": self.output,
            "space": self.space,
            "target": self.target,
            "method": self.method,
            "attributions": self.attributions,
            "reasons": self.reasons,
        }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class Context:
    """What explaining a model version needs besides the model: computed once per version."""

    background: pd.DataFrame | None  # a seeded sample of the training data, typed by the signature
    typical: dict[str, Any]
    display: dict[str, dict[str, str]]


def _context(ws: Workspace, info: ModelVersion, *, background_rows: int = BACKGROUND_ROWS) -> Context:
    """The background sample comes from the version's training dataset, else from the sample it
    was registered with (X=); typical values from all of X, else the dataset's profile, else the sample."""
    from keel.explain import typical_values
    from keel.registry.signature import validate_input

    if info.signature is None:  # a version without one: no input columns to explain
        raise InvalidInputError(
            f"{info.ref} has no signature; explanations need its input columns (register it with X=...)"
        )
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


def explain_rows(
    loaded: Any, rows: Any, ctx: Context, *, method: str = "auto", target: Any = None, top: int = 3
) -> Explained:
    """Attributions, predictions and reason codes for `rows` of a loaded model version."""
    from keel.explain import explain_model, reason_codes
    from keel.registry.signature import validate_input

    X = validate_input(rows, loaded.signature)
    if len(X) == 0:
        raise InvalidInputError("no rows to explain")
    explanation = explain_model(loaded.model, X, background=ctx.background, target=target, method=method)
    predictions = list(loaded.predict(X))
    codes = reason_codes(
        explanation, X, ctx.typical, outcomes=predictions if loaded.classes else None, top=top, display=ctx.display
    )
    # Explained.reasons stays plain dicts: the API's JSON, the CLI, batch jobs and the README read them.
    reasons = [[reason.to_dict() for reason in row] for row in codes]
    return Explained(loaded.ref, explanation, predictions, reasons, ctx.typical)


def _training_sample(ws: Workspace, info: ModelVersion, rows: int) -> pd.DataFrame | None:
    """A seeded sample of the version's training dataset, with its input columns."""
    if not info.datasets:
        return None
    frame = ws.datasets.load(info.datasets[0])
    assert info.signature is not None  # _context checked it
    columns = [c for c in info.signature.column_names if c in frame.columns]
    if len(columns) < len(info.signature.column_names):
        return None
    return _subsample(frame[columns], rows)


def _subsample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """`rows` seeded rows of `frame`, complete ones where it has at least 10 (maskers and means need values)."""
    frame = frame.dropna() if frame.isna().any().any() and len(frame.dropna()) >= 10 else frame
    return frame.sample(n=min(rows, len(frame)), random_state=0)


def _profile_typical(ws: Workspace, info: ModelVersion, columns: list[str]) -> dict[str, Any]:
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


def _display(ws: Workspace, model: str) -> dict[str, dict[str, str]]:
    try:
        return dict(ws.retraining.project(model).explain.get("display", {}))
    except Exception:  # no project, or none with display names: the column names it is
        return {}


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


class _Entry:
    """What the cache keeps of one version: its context, and its explained training sample once asked for."""

    __slots__ = ("context", "sample")

    def __init__(self, context: Context) -> None:
        self.context = context
        self.sample: tuple[pd.DataFrame, Explained] | None = None


class Explainer:
    """`ws.explainer`: explanations of model versions, with one bounded per-version cache shared
    by every caller of this Workspace (the Python API, the server, the dashboard, batch jobs)."""

    def __init__(self, ws: Workspace, importance: ImportanceStore, *, max_versions: int = MAX_VERSIONS) -> None:
        self._ws = ws
        self._importance = importance
        self.max_versions = max_versions
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._lock = threading.Lock()  # the server calls from worker threads

    # -- the cache ------------------------------------------------------------------------
    def _entry(self, info: ModelVersion) -> _Entry:
        key = (info.name, info.version)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = _Entry(_context(self._ws, info))  # outside the lock: seconds; two callers may both compute it
        with self._lock:
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_versions:
                self._entries.popitem(last=False)
        return entry

    def context(self, model: ModelVersion | str, *, background_rows: int = BACKGROUND_ROWS) -> Context:
        """What explaining a version needs besides the model (cached per version for the default
        `background_rows`; another sample size is computed afresh)."""
        info = self._info(model)
        if background_rows != BACKGROUND_ROWS:
            return _context(self._ws, info, background_rows=background_rows)
        return self._entry(info).context

    def __len__(self) -> int:
        return len(self._entries)

    def _info(self, model: ModelVersion | str) -> ModelVersion:
        return self._ws.models.get(model) if isinstance(model, str) else model

    # -- use cases ------------------------------------------------------------------------
    def explain(
        self,
        model: str,
        rows: Any,
        *,
        method: str = "auto",
        target: Any = None,
        top: int = 3,
        background_rows: int = BACKGROUND_ROWS,
    ) -> Explained:
        """Attributions, predictions and reason codes for `rows` of a model version (`ws.explain`)."""
        info = self._ws.models.get(model)
        ctx = self.context(info, background_rows=background_rows)
        return explain_rows(self._ws.models.load(info), rows, ctx, method=method, target=target, top=top)

    def rows(self, loaded: Any, rows: Any, *, method: str = "auto", target: Any = None, top: int = 3) -> Explained:
        """The same for a model already loaded (a LoadedModel: the server's cache, a batch job's chunk)."""
        return explain_rows(loaded, rows, self.context(loaded.info), method=method, target=target, top=top)

    def sample(self, model: ModelVersion | str, *, top: int = 5) -> tuple[pd.DataFrame, Explained]:
        """A version's training sample and its explanation (the dashboard's page), cached with its context."""
        info = self._info(model)
        entry = self._entry(info)
        if entry.sample is None:
            if entry.context.background is None:
                raise InvalidInputError(
                    f"{info.ref} has no training sample to explain (no linked dataset, and it was "
                    "registered without X=); use ws.explain(ref, rows)"
                )
            background = entry.context.background
            entry.sample = (background, explain_rows(self._ws.models.load(info), background, entry.context, top=top))
        return entry.sample

    def lime(
        self,
        model: str,
        row: Any,
        *,
        target: Any = None,
        top: int = 5,
        seed: int = 0,
        seeds: int = 5,
        num_samples: int | None = None,
        text_column: str | None = None,
    ) -> Any:
        """LIME for one row of a model version, keel.explain.LimeExplanation: over its training
        sample for tabular models; with `text_column`, over the words of that column's text (the
        row's other columns held as they are), for classifiers of text. `num_samples`: the first
        round of tabular LIME (default: keel.explain's, grown until the top features are stable),
        the whole sample of text LIME (default 2,000)."""
        from keel.explain import lime_tabular, lime_text
        from keel.registry.signature import validate_input

        info = self._ws.models.get(model)
        if info.signature is None:
            raise InvalidInputError(
                f"{info.ref} has no signature; explanations need its input columns (register it with X=...)"
            )
        loaded = self._ws.models.load(info)
        X = validate_input(row, info.signature)
        classes = list(info.signature.classes) if info.signature.classes else None
        if text_column is not None:
            if text_column not in X.columns:
                raise InvalidInputError(
                    f"text_column {text_column!r} is not an input of {info.ref}; inputs: {', '.join(X.columns)}"
                )
            if classes is None:
                raise InvalidInputError(f"Text LIME explains classifiers; {info.ref} has no classes")
            if len(X) != 1:
                raise InvalidInputError(f"LIME explains one row at a time, got {len(X)}")
            return lime_text(
                _TextOf(loaded, X, text_column),
                str(X[text_column].iloc[0]),
                classes=classes,
                target=target,
                top=top,
                seed=seed,
                seeds=seeds,
                num_samples=num_samples or 2000,
            )
        ctx = self.context(info)
        if ctx.background is None:
            raise InvalidInputError(
                f"{info.ref} has no training data to sample around: register it with X=... or trained_on=..."
            )
        sized = {} if num_samples is None else {"num_samples": num_samples}
        return lime_tabular(
            loaded, X, ctx.background, target=target, classes=classes, top=top, seed=seed, seeds=seeds, **sized
        )

    def importance(self, model: str) -> dict[str, Any]:
        """The stored global importance of a model version, computed on its training sample (and
        stored) when registration did not compute it."""
        info = self._ws.models.get(model)
        stored = self._importance.get(info.name, info.version)
        if stored is not None:
            return stored
        ctx = self.context(info, background_rows=IMPORTANCE_ROWS)
        if ctx.background is None:
            raise InvalidInputError(
                f"{info.ref} has no training data to measure importance on: register it with X=... or trained_on=..."
            )
        e = explain_rows(self._ws.models.load(info), ctx.background, ctx).explanation
        self._importance.save(info.name, info.version, _record(e, len(ctx.background)))
        return dict(self._importance.get(info.name, info.version) or {})
