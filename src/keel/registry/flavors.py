"""Model flavours: how each kind of model is saved, loaded and described, in safe formats.

    sklearn   scikit-learn estimators and pipelines, saved with skops (no pickle)
    lightgbm  LightGBM boosters and their scikit-learn wrappers, as the booster's text format
    xgboost   XGBoost boosters and their scikit-learn wrappers, as XGBoost's JSON format
    callable  a plain module-level Python function, saved as its import path ('module:qualname');
              a lambda or nested function is refused (it has no import path)
    pickle    anything else, only when asked for by name (flavor='pickle'); saved with cloudpickle
              when it is installed (so lambdas work), and loading needs trusted=True

A flavour is a small object with `name`, `accepts`, `save`, `load` and `describe`; later
capabilities (ONNX, C builds, RL policies, language models) add theirs to FLAVORS.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import tempfile
import threading
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np

from keel._optional import require
from keel.errors import InvalidInputError, UnsafeLoadError, UserCodeError

__all__ = ["Flavor", "FLAVORS", "flavor_for", "get_flavor"]

# Types from these packages are trusted when a skops file is loaded: they are what a
# scikit-learn pipeline is made of. Anything else needs trusted=True.
_TRUSTED_MODULES = ("functools.partial", "sklearn.", "numpy.", "scipy.", "lightgbm.", "xgboost.", "pandas.", "keel.registry.")


class Flavor(Protocol):
    name: str

    def accepts(self, model: Any) -> bool: ...
    def save(self, model: Any) -> bytes: ...
    def load(self, data: bytes, *, trusted: bool) -> Any: ...


def _module_of(model: Any) -> str:
    return type(model).__module__ or ""


class SklearnFlavor:
    name = "sklearn"

    def accepts(self, model: Any) -> bool:
        try:
            from sklearn.base import BaseEstimator
        except ImportError:  # pragma: no cover
            return False
        return isinstance(model, BaseEstimator)

    def save(self, model: Any) -> bytes:
        import skops.io as sio

        return bytes(sio.dumps(model))

    def load(self, data: bytes, *, trusted: bool) -> Any:
        import skops.io as sio

        untrusted = _skops_audit(data)
        unknown = [t for t in untrusted if not t.startswith(_TRUSTED_MODULES)]
        if unknown and not trusted:
            raise UnsafeLoadError(
                f"This scikit-learn model contains types keel does not trust by default: {', '.join(unknown[:5])}. "
                "Load it with trusted=True if you trust where it came from."
            )
        return sio.loads(data, trusted=untrusted)


_AUDITS: OrderedDict[bytes, list[str]] = OrderedDict()
_AUDITS_KEPT = 256
_audits_lock = threading.Lock()


def _skops_audit(data: bytes) -> list[str]:
    """The types a skops file would construct that are not skops' defaults, per content.

    Auditing parses the whole file a second time, which costs as much as loading it; the
    answer depends on nothing but the bytes, so it is kept per SHA-256 (the last 256 files).
    """
    import skops.io as sio

    key = hashlib.sha256(data).digest()
    with _audits_lock:
        hit = _AUDITS.get(key)
        if hit is not None:
            _AUDITS.move_to_end(key)
            return list(hit)
    found = list(sio.get_untrusted_types(data=data))
    with _audits_lock:
        _AUDITS[key] = found
        while len(_AUDITS) > _AUDITS_KEPT:
            _AUDITS.popitem(last=False)
    return list(found)


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


class LightGBMFlavor:
    name = "lightgbm"

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

    def load(self, data: bytes, *, trusted: bool) -> Any:
        lgb = require("lightgbm", extra="boost", purpose="LightGBM models")
        head, _, body = data.partition(b"\n")
        info = json.loads(head)
        booster = lgb.Booster(model_str=body.decode())
        if info["kind"] == "booster":
            return booster
        cls = LightGBMClassifierModel if info["kind"] == "classifier" else LightGBMModel
        return cls(booster, kind=info["kind"], classes=info["classes"], feature_names=info["feature_names"])


class XGBoostFlavor:
    name = "xgboost"

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

    def load(self, data: bytes, *, trusted: bool) -> Any:
        xgb = require("xgboost", extra="boost", purpose="XGBoost models")
        head, _, body = data.partition(b"\n")
        kind = json.loads(head)["kind"]
        allowed = {"booster": xgb.Booster, "XGBClassifier": xgb.XGBClassifier, "XGBRegressor": xgb.XGBRegressor,
                   "XGBRanker": xgb.XGBRanker, "XGBRFClassifier": xgb.XGBRFClassifier, "XGBRFRegressor": xgb.XGBRFRegressor}  # fmt: skip
        if kind not in allowed:
            raise InvalidInputError(f"Unknown XGBoost model kind {kind!r}")
        model = allowed[kind]()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.json")
            with open(path, "wb") as fh:
                fh.write(body)
            model.load_model(path)
        return model


class CallableFlavor:
    """A module-level function, stored by import path: loading imports it, nothing is unpickled."""

    name = "callable"

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

    def load(self, data: bytes, *, trusted: bool) -> Any:
        path = json.loads(data)["callable"]
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


class PickleFlavor:
    name = "pickle"

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
    f.name: f for f in (LightGBMFlavor(), XGBoostFlavor(), SklearnFlavor(), CallableFlavor(), PickleFlavor())
}


def get_flavor(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise InvalidInputError(f"Unknown model flavor {name!r}; known: {', '.join(FLAVORS)}") from None


def flavor_for(model: Any) -> Flavor:
    """The flavour that saves `model` safely; never pickle unless asked for by name."""
    for flavor in FLAVORS.values():
        if flavor.name != "pickle" and flavor.accepts(model):
            return flavor
    raise InvalidInputError(
        f"Keel has no safe format for {type(model).__module__}.{type(model).__name__}. "
        "Register it with flavor='pickle' (loading it will then need trusted=True)."
    )
