"""What a model flavour is: the `Flavor` protocol, and `BaseFlavor`, the defaults a flavour overrides.

Kept apart from the flavour table (flavors.py) so that a flavour in its own module
(flavor_policy.py) subclasses `BaseFlavor` without importing the table that lists it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Flavor", "BaseFlavor", "RecordsForm", "RowHook"]

# (model, prepared data) -> one JSON-ready dict per row.
RowHook = Callable[[Any, Any], list[dict[str, Any]]]

RecordsForm = Literal["array", "frame"]


class Flavor(Protocol):
    name: str
    format: str  # how the artifact is stored, in words (describe() shows it)
    needs_trust: bool  # the artifact is code (a function, a pickle): it loads only with trusted=True
    by_name_only: bool  # flavor_for() never picks it: the caller asks for it by name
    # register() checks the model as loaded from its bytes, not the live object: the flavour
    # serves it through keel's own wrappers, so the check predicts as serving will.
    checks_loaded: bool

    def accepts(self, model: Any) -> bool: ...
    def save(self, model: Any) -> bytes: ...
    def load(self, data: bytes, *, trusted: bool) -> Any: ...
    def audit(self, data: bytes, *, trusted: bool) -> None:
        """Raise UnsafeLoadError where load(data, trusted=trusted) would, without building the model."""

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        """How all-numeric records with these columns reach the model: a float64 array, a typed
        frame, or None to go through validate_input like any other input."""

    def prepare(self, model: Any, frame: pd.DataFrame) -> Any:
        """The validated frame as the model takes it."""

    def predict(self, model: Any, data: Any, *, ref: str) -> Any:
        """The model's predictions for prepared `data` (`ref` names the version in errors)."""

    def labels_from_proba(self, model: Any, proba: np.ndarray) -> np.ndarray | None:
        """The labels predict() would give, computed from predict_proba()'s output; None to call predict()."""

    def describe(self, model: Any) -> dict[str, Any]:
        """What the model is, in JSON-ready values: flavour, format, type and what the flavour adds."""

    # Optional per-row hooks; None where the flavour has none (the usual case: nothing to compute).
    # row_fields: extra fields of each row's answer (a policy: its expected gain).
    # explain_rows: the flavour's own explanation of each row (a policy: the rule that fired),
    # used instead of SHAP attributions where it exists.
    @property
    def row_fields(self) -> RowHook | None: ...
    @property
    def explain_rows(self) -> RowHook | None: ...


class BaseFlavor:
    """The defaults of a flavour whose models have scikit-learn's predict / predict_proba and take
    a DataFrame; a flavour overrides what differs."""

    name = ""
    format = ""
    needs_trust = False
    by_name_only = False
    checks_loaded = False
    row_fields: RowHook | None = None
    explain_rows: RowHook | None = None

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        return "frame"

    def prepare(self, model: Any, frame: pd.DataFrame) -> Any:
        return frame

    def predict(self, model: Any, data: Any, *, ref: str) -> Any:
        return model.predict(data)

    def labels_from_proba(self, model: Any, proba: np.ndarray) -> np.ndarray | None:
        return None

    def describe(self, model: Any) -> dict[str, Any]:
        kind = type(model)
        return {"flavor": self.name, "format": self.format, "type": f"{kind.__module__}.{kind.__qualname__}"}
