"""Model flavours: how each kind of model is saved, loaded, fed and described, in safe formats.

    sklearn   scikit-learn estimators and pipelines, saved with skops (no pickle)
    lightgbm  LightGBM boosters and their scikit-learn wrappers, as the booster's text format
    xgboost   XGBoost boosters and their scikit-learn wrappers, as XGBoost's JSON format
    callable  a plain module-level Python function, saved as its import path ('module:qualname');
              a lambda or nested function is refused (it has no import path)
    lm        a keel.genai language model, as safetensors with its config and tokenizer (flavor_lm.py)
    policy    keel.causal.PolicyTree (which action for whom), as plain JSON (flavor_policy.py)
    torch     a PyTorch nn.Sequential of plain layers, as a layer list and safetensors (flavor_torch.py)
    pickle    anything else, only when asked for by name (flavor='pickle'); saved with cloudpickle
              when it is installed (so lambdas work), and loading needs trusted=True

A flavour is a small object (see `Flavor` in flavor_base.py) that knows everything kind-specific about a model:
its format, its trust rule, the input it takes and how it predicts, so `LoadedModel` and
registration never ask which flavour they hold. A new capability (ONNX, C builds, RL policies,
language models) subclasses `BaseFlavor`, adds itself to FLAVORS and a case to
tests/contracts/test_flavor_contract.py. The vetting of untrusted skops files is in _skops_vetting.py.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from keel._optional import require
from keel.errors import InvalidInputError, InvalidModelError, KeelError, UnsafeLoadError, UserCodeError
from keel.registry._skops_vetting import check_tree_arrays, skops_audit, skops_io, vet_skops
from keel.registry.flavor_base import BaseFlavor, Flavor, RecordsForm
from keel.registry.flavor_lm import LMFlavor
from keel.registry.flavor_policy import PolicyFlavor
from keel.registry.flavor_torch import TorchFlavor

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FLAVORS", "flavor_for", "get_flavor"]


class _FittedOnArrays(BaseFlavor):
    """A model fitted on an array (no feature_names_in_) gets one: column names would only draw warnings."""

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        return "array" if getattr(model, "feature_names_in_", None) is None else "frame"

    def prepare(self, model: Any, frame: pd.DataFrame) -> Any:
        return frame.to_numpy() if getattr(model, "feature_names_in_", None) is None else frame


def _module_of(model: Any) -> str:
    return type(model).__module__ or ""


class SklearnFlavor(_FittedOnArrays):
    name = "sklearn"
    format = "skops zip"

    def accepts(self, model: Any) -> bool:
        try:
            from sklearn.base import BaseEstimator
        except ImportError:  # pragma: no cover
            return False
        return isinstance(model, BaseEstimator)

    def save(self, model: Any) -> bytes:
        return bytes(skops_io().dumps(model))

    def audit(self, data: bytes, *, trusted: bool) -> None:
        if not trusted:
            vet_skops(data)

    def load(self, data: bytes, *, trusted: bool) -> Any:
        sio = skops_io()
        from skops.io.exceptions import UntrustedTypesFoundException

        try:
            if trusted:
                return sio.loads(data, trusted=skops_audit(data))
            # Our vetting decides; skops' own audit, told only the names vetted, checks again.
            model = sio.loads(data, trusted=vet_skops(data))
        except UntrustedTypesFoundException as exc:
            raise UnsafeLoadError(
                f"This scikit-learn model contains types keel does not trust by default ({exc}). "
                "Load it with trusted=True if you trust where it came from."
            ) from exc
        except (KeelError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed file fails anywhere inside skops
            raise InvalidModelError(
                f"This is not a readable skops (scikit-learn) file: {type(exc).__name__}: {exc}"
            ) from exc
        if not trusted:
            check_tree_arrays(model)
        return model


class _BoostWrapper:
    """A loaded LightGBM/XGBoost model with scikit-learn's predict / predict_proba contract."""

    def __init__(self, booster: Any, *, kind: str, classes: list[Any] | None, feature_names: list[str] | None) -> None:
        self.booster = booster
        self.kind = kind
        self.classes_ = None if classes is None else np.asarray(classes)
        self.feature_names_in_ = None if feature_names is None else np.asarray(feature_names, dtype=object)


class LightGBMModel(_BoostWrapper):
    """A loaded LGBMRegressor (or any non-classifier wrapper): predict() only."""

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.booster.predict(X))

    def predict_raw(self, X: Any) -> np.ndarray:
        return np.asarray(self.booster.predict(X, raw_score=True))


class LightGBMClassifierModel(LightGBMModel):
    """A loaded LGBMClassifier: predict() gives class labels, predict_proba() probabilities."""

    def predict_proba(self, X: Any) -> np.ndarray:
        p = np.asarray(self.booster.predict(X))
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p  # binary: (rows,) -> (rows, 2)

    def predict(self, X: Any) -> np.ndarray:
        assert self.classes_ is not None
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class LightGBMFlavor(BaseFlavor):
    name = "lightgbm"
    format = "LightGBM text model"
    checks_loaded = True

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        # An array only where the booster's features are the signature's columns, in that order.
        names = getattr(model, "feature_names_in_", None)
        if names is None and callable(getattr(model, "feature_name", None)):  # a raw Booster
            names = model.feature_name()
        return "array" if names is not None and [str(n) for n in names] == list(columns) else "frame"

    def labels_from_proba(self, model: Any, proba: np.ndarray) -> np.ndarray | None:
        # What LightGBMClassifierModel.predict computes: its trees run once instead of twice.
        if isinstance(model, LightGBMClassifierModel) and model.classes_ is not None:
            return model.classes_[np.argmax(proba, axis=1)]
        return None

    def accepts(self, model: Any) -> bool:
        return _module_of(model).startswith("lightgbm") or isinstance(model, LightGBMModel)

    def save(self, model: Any) -> bytes:
        lgb = require("lightgbm", extra="boost", purpose="LightGBM models")
        if isinstance(model, lgb.Booster):
            booster, kind, classes = model, "booster", None
        elif isinstance(model, LightGBMModel):  # a loaded model, registered again
            booster, kind = model.booster, model.kind
            classes = None if model.classes_ is None else [_plain(c) for c in model.classes_]
        else:
            booster = model.booster_
            kind = "classifier" if hasattr(model, "classes_") else "regressor"
            classes = [_plain(c) for c in model.classes_] if kind == "classifier" else None
        names = booster.feature_name()
        head = json.dumps({"kind": kind, "classes": classes, "feature_names": names}).encode()
        return head + b"\n" + booster.model_to_string().encode()

    def audit(self, data: bytes, *, trusted: bool) -> None:
        """LightGBM's text format holds no code: it loads untrusted."""

    def load(self, data: bytes, *, trusted: bool) -> Any:
        lgb = require("lightgbm", extra="boost", purpose="LightGBM models")
        head, _, body = data.partition(b"\n")
        info = json.loads(head)
        booster = lgb.Booster(model_str=body.decode())
        if info["kind"] == "booster":
            return booster
        cls = LightGBMClassifierModel if info["kind"] == "classifier" else LightGBMModel
        return cls(booster, kind=info["kind"], classes=info["classes"], feature_names=info["feature_names"])


class XGBoostFlavor(_FittedOnArrays):
    name = "xgboost"
    format = "XGBoost JSON model"
    checks_loaded = True

    def accepts(self, model: Any) -> bool:
        return _module_of(model).startswith("xgboost")

    def save(self, model: Any) -> bytes:
        xgb = require("xgboost", extra="boost", purpose="XGBoost models")
        kind = "booster" if isinstance(model, xgb.Booster) else type(model).__name__
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.json")
            model.save_model(path)  # XGBoost's own JSON format, with the wrapper's attributes
            with open(path, "rb") as fh:
                body = fh.read()
        return json.dumps({"kind": kind}).encode() + b"\n" + body

    def audit(self, data: bytes, *, trusted: bool) -> None:
        """XGBoost's JSON format holds no code: it loads untrusted."""

    def load(self, data: bytes, *, trusted: bool) -> Any:
        xgb = require("xgboost", extra="boost", purpose="XGBoost models")
        head, _, body = data.partition(b"\n")
        kind = json.loads(head)["kind"]
        allowed = {
            "booster": xgb.Booster,
            "XGBClassifier": xgb.XGBClassifier,
            "XGBRegressor": xgb.XGBRegressor,
            "XGBRanker": xgb.XGBRanker,
            "XGBRFClassifier": xgb.XGBRFClassifier,
            "XGBRFRegressor": xgb.XGBRFRegressor,
        }
        if kind not in allowed:
            raise InvalidInputError(f"Unknown XGBoost model kind {kind!r}")
        model = allowed[kind]()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.json")
            with open(path, "wb") as fh:
                fh.write(body)
            model.load_model(path)
        return model


class CallableFlavor(BaseFlavor):
    """A module-level function, stored by import path: loading imports it, nothing is unpickled."""

    name = "callable"
    format = "import path"
    needs_trust = True

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        return None  # the function gets exactly what validate_input gives

    def predict(self, model: Any, data: Any, *, ref: str) -> Any:
        try:
            return np.asarray(model(data))
        except Exception as exc:  # user code: wrap whatever it raised
            raise UserCodeError(f"The model function of {ref} raised {type(exc).__name__}: {exc}") from exc

    def describe(self, model: Any) -> dict[str, Any]:
        return {**super().describe(model), "function": _import_path(model)}

    def accepts(self, model: Any) -> bool:
        # Every plain function is ours, so a lambda gets save()'s clear refusal, not a generic one.
        return callable(model) and not hasattr(model, "predict") and not isinstance(model, type)

    def save(self, model: Any) -> bytes:
        path = _import_path(model)
        if path is None:
            what = "a lambda" if getattr(model, "__name__", "") == "<lambda>" else f"{model!r}"
            raise InvalidInputError(
                f"Cannot register {what} as a callable model: it has no import path (a lambda, a nested "
                "function, or code in __main__), so it could not be loaded again. Define it as a "
                "module-level function in an importable module, or register it with flavor='pickle' "
                "(loading it will then need trusted=True)."
            )
        return json.dumps({"callable": path}).encode()

    def audit(self, data: bytes, *, trusted: bool) -> None:
        if not trusted:
            self.load(data, trusted=False)  # refuses before importing anything

    def load(self, data: bytes, *, trusted: bool) -> Any:
        try:
            path = json.loads(data)["callable"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidModelError(
                f"This is not a callable-model artifact ({{'callable': 'module:function'}}): {exc}"
            ) from None
        if not isinstance(path, str):
            raise InvalidModelError(
                f"This is not a callable-model artifact: 'callable' is {path!r}, not 'module:function'"
            )
        if not trusted:
            # Importing the named module runs its import-time code, and calling the function runs
            # it: whoever can write artifacts could name any installed function. Opt in, as for pickle.
            raise UnsafeLoadError(
                f"This model is the Python function {path!r}; loading imports and later calls it. "
                "Load it with trusted=True if you trust where it came from."
            )
        module, _, qualname = path.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise UserCodeError(f"Cannot import the model function {path!r}: {exc}") from exc
        return obj


class PickleFlavor(BaseFlavor):
    name = "pickle"
    format = "pickle"
    needs_trust = True
    by_name_only = True

    def accepts(self, model: Any) -> bool:
        return True

    def save(self, model: Any) -> bytes:
        try:
            import cloudpickle  # joblib's dependency: pickles lambdas and closures by value

            dumps: Any = cloudpickle.dumps
        except ImportError:  # pragma: no cover - scikit-learn brings joblib, joblib brings cloudpickle
            dumps = pickle.dumps
        try:
            return bytes(dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"Cannot pickle the {type(model).__name__} model: {exc}") from exc

    def audit(self, data: bytes, *, trusted: bool) -> None:
        if not trusted:
            self.load(data, trusted=False)  # refuses

    def load(self, data: bytes, *, trusted: bool) -> Any:
        if not trusted:
            raise UnsafeLoadError(
                "This model is stored as a pickle, which can run arbitrary code when loaded. "
                "Load it with trusted=True only if you trust where it came from."
            )
        return pickle.loads(data)  # noqa: S301 - the caller said trusted=True


def _import_path(fn: Any) -> str | None:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if obj is fn else None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# Order matters: the first flavour that accepts a model saves it.
FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        LightGBMFlavor(),
        XGBoostFlavor(),
        SklearnFlavor(),
        PolicyFlavor(),
        TorchFlavor(),  # before callable: a torch module is callable too
        LMFlavor(),
        CallableFlavor(),
        PickleFlavor(),
    )
}


def get_flavor(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise InvalidInputError(f"Unknown model flavor {name!r}; known: {', '.join(FLAVORS)}") from None


def flavor_for(model: Any) -> Flavor:
    """The flavour that saves `model` safely; never pickle unless asked for by name."""
    for flavor in FLAVORS.values():
        if not flavor.by_name_only and flavor.accepts(model):
            return flavor
    raise InvalidInputError(
        f"Keel has no safe format for {type(model).__module__}.{type(model).__name__}. "
        "Register it with flavor='pickle' (loading it will then need trusted=True)."
    )
