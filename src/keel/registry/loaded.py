"""A registered model ready to predict: `LoadedModel`, and the predictions frame built from it.

Everything that depends on the kind of model (the input it takes, how it predicts) is asked of
its flavour (keel.registry.flavors), so this module never names one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keel.entities import ModelVersion, Signature
from keel.errors import InvalidInputError, KeelError
from keel.registry.flavors import get_flavor
from keel.registry.signature import NumericRecords, extra_columns, missing_values_error, to_frame, validate_input

logger = logging.getLogger(__name__)

__all__ = ["LoadedModel", "predictions_frame"]


class LoadedModel:
    """A registered model ready to predict; input is checked against the version's signature.

    >>> model = ws.models.load("credit-risk@champion")    # doctest: +SKIP
    >>> model.predict(frame.head(3))                      # doctest: +SKIP
    """

    def __init__(self, version: ModelVersion, model: Any) -> None:
        self.info = version
        self.model = model
        self._flavor = get_flavor(version.flavor)
        # Records against an all-numeric signature skip pandas (see NumericRecords): the model
        # gets a float64 array where it would have got one anyway, or where its feature order is
        # the signature's, else a DataFrame typed as validate_input types it. The flavour says which.
        self._numeric: NumericRecords | None = None
        self._numeric_as_array = False
        sig = version.signature
        if sig is not None and NumericRecords.applies(sig):
            form = self._flavor.records_as(model, sig.column_names)
            if form is not None:
                self._numeric = NumericRecords(sig)
                self._numeric_as_array = form == "array"

    @property
    def ref(self) -> str:
        return self.info.ref

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def flavor(self) -> str:
        return self.info.flavor

    @property
    def signature(self) -> Signature | None:
        return self.info.signature

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return None if self.info.signature is None else self.info.signature.classes

    @property
    def has_proba(self) -> bool:
        return hasattr(self.model, "predict_proba") and self.classes is not None

    def describe(self) -> dict[str, Any]:
        """What this version is, in JSON-ready values: its flavour's description of the model, the
        columns it takes, what it outputs, its classes and whether it gives probabilities."""
        sig = self.info.signature
        return {
            "ref": self.ref,
            **self._flavor.describe(self.model),
            "inputs": None if sig is None else list(sig.column_names),
            "output": None if sig is None else sig.output,
            "classes": None if self.classes is None else list(self.classes),
            "proba": self.has_proba,
        }

    def extra_columns(self, X: Any) -> tuple[str, ...]:
        """The columns of `X` the signature does not name: what predict(X, extra='ignore') drops."""
        return () if self.info.signature is None else extra_columns(X, self.info.signature)

    def prepare(self, X: Any, *, extra: str = "error") -> Any:
        """The input validated and coerced to what the model was trained on.

        `extra='ignore'` drops columns the signature does not name (a target left in the file, an
        id) instead of refusing them; extra_columns(X) says which.
        """
        if extra != "error" and extra != "ignore":
            raise InvalidInputError(f"extra must be 'error' or 'ignore', got {extra!r}")
        if self.info.signature is None:
            return to_frame(X, None) if not isinstance(X, np.ndarray) else X
        if self._numeric is not None and isinstance(X, (list, dict)):
            array = self._numeric.to_array(X)
            if array is not None:
                return array if self._numeric_as_array else self._numeric.to_frame(array)
        if extra == "ignore" and logger.isEnabledFor(logging.INFO):
            dropped = extra_columns(X, self.info.signature)
            if dropped:
                logger.info("%s: dropped input columns it does not take: %s", self.ref, ", ".join(dropped))
        return self._flavor.prepare(self.model, validate_input(X, self.info.signature, extra=extra))

    def predict(self, X: Any, *, extra: str = "error") -> np.ndarray:
        """Predictions for the rows of `X` (DataFrame, records, dict of columns or array).

        Raises SignatureError naming missing, unexpected and mistyped columns, or the columns with
        missing values when the model does not accept them. `extra='ignore'` drops the columns the
        signature does not name instead (extra_columns(X) says which; they are logged at INFO).
        """
        return np.asarray(self._call(self._predict, self.prepare(X, extra=extra)))

    def predict_proba(self, X: Any, *, extra: str = "error") -> np.ndarray:
        """Class probabilities, one column per class in `classes` order; input checked as in predict()."""
        if not hasattr(self.model, "predict_proba"):
            raise InvalidInputError(
                f"{self.ref} ({self.flavor}, {self.info.signature.output if self.info.signature else 'no signature'}) "
                "does not give class probabilities; use predict()"
            )
        return np.asarray(self._call(self.model.predict_proba, self.prepare(X, extra=extra)))

    def predict_and_proba(self, X: Any, *, extra: str = "error") -> tuple[np.ndarray, np.ndarray | None]:
        """predict() and, where `has_proba`, predict_proba() for the same rows, checking the input once.

        Where the flavour computes the labels from the probabilities (a LightGBM classifier's
        labels are the classes of highest probability), the model runs once instead of twice.
        """
        if not self.has_proba:
            return self.predict(X, extra=extra), None
        data = self.prepare(X, extra=extra)
        proba = np.asarray(self._call(self.model.predict_proba, data))
        labels = self._flavor.labels_from_proba(self.model, proba)
        if labels is not None:
            return labels, proba
        return np.asarray(self._call(self._predict, data)), proba

    @property
    def has_row_fields(self) -> bool:
        """Whether each row's answer carries fields of the flavour's own (a policy: `expected_gain`)."""
        return self._flavor.row_fields is not None

    def row_fields(self, X: Any, *, extra: str = "error") -> list[dict[str, Any]] | None:
        """The flavour's extra answer fields, one dict per row of `X`; None where the flavour has none."""
        hook = self._flavor.row_fields
        return None if hook is None else hook(self.model, self.prepare(X, extra=extra))

    def explain_rows(self, X: Any, *, extra: str = "error") -> list[dict[str, Any]] | None:
        """The flavour's own explanation of each row of `X` (a policy: the rule that fired); None where
        it has none, and SHAP attributions (keel.explain) apply instead."""
        hook = self._flavor.explain_rows
        return None if hook is None else hook(self.model, self.prepare(X, extra=extra))

    def predictions_frame(self, X: Any, *, extra: str = "error") -> pd.DataFrame:
        """`prediction`, for classifiers one `proba_<class>` column per class, and the flavour's per-row
        fields (a policy's `expected_gain`): predictions_frame()."""
        return predictions_frame(self, X, extra=extra)

    def _predict(self, data: Any) -> Any:
        return self._flavor.predict(self.model, data, ref=self.ref)

    def _call(self, method: Callable[[Any], Any], data: Any) -> Any:
        """method(data), with scikit-learn's 'Input X contains NaN' (a 70-line traceback from deep
        inside the estimator) turned into a SignatureError naming the columns with missing values.
        Checked only after the model refused: the hot path pays nothing."""
        try:
            return method(data)
        except ValueError as exc:
            if isinstance(exc, KeelError) or "nan" not in str(exc).lower():
                raise
            error = missing_values_error(data, self.info.signature, self.ref)
            if error is None:
                raise
            raise error from exc

    def __repr__(self) -> str:
        return f"LoadedModel({self.ref!r}, flavor={self.flavor!r})"


def predictions_frame(model: LoadedModel, X: Any, *, extra: str = "error") -> pd.DataFrame:
    """Predictions (and class probabilities where they apply) as a DataFrame, one row per input row."""
    labels, proba = model.predict_and_proba(X, extra=extra)
    out = pd.DataFrame({"prediction": labels})
    if proba is not None:
        for i, c in enumerate(model.classes or ()):
            out[f"proba_{c}"] = proba[:, i]
    fields = model.row_fields(X, extra=extra) if model.has_row_fields else None
    if fields:  # the flavour's own per-row answer fields (a policy's expected_gain), as columns
        for key in fields[0]:
            out[key] = [row.get(key) for row in fields]
    return out
