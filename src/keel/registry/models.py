"""The model registry: versions with lineage, aliases with history, loading by reference."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.entities import AliasEvent, DatasetVersion, Lineage, ModelVersion, RegisteredModel, Run, Signature
from keel.errors import InvalidInputError, UserCodeError
from keel.refs import check_name, parse_ref
from keel.registry.flavors import flavor_for, get_flavor
from keel.registry.signature import infer_signature, input_example, signature_from_schema, to_frame, validate_input

if TYPE_CHECKING:
    from keel.storage import BlobStore, MetadataStore
    from keel.tracking import ActiveRun

logger = logging.getLogger(__name__)

__all__ = ["Models", "LoadedModel"]


class LoadedModel:
    """A registered model ready to predict; input is checked against the version's signature.

    >>> model = ws.models.load("credit-risk@champion")    # doctest: +SKIP
    >>> model.predict(frame.head(3))                      # doctest: +SKIP
    """

    def __init__(self, version: ModelVersion, model: Any) -> None:
        self.info = version
        self.model = model

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

    def prepare(self, X: Any) -> Any:
        """The input validated and coerced to what the model was trained on."""
        if self.info.signature is None:
            return to_frame(X, None) if not isinstance(X, np.ndarray) else X
        frame = validate_input(X, self.info.signature)
        if self.info.flavor == "callable":
            return frame
        names = getattr(self.model, "feature_names_in_", None)
        if names is None and self.info.flavor in ("sklearn", "xgboost"):
            return frame.to_numpy()  # fitted on an array: column names would only draw warnings
        return frame

    def predict(self, X: Any) -> np.ndarray:
        data = self.prepare(X)
        if self.info.flavor == "callable":
            try:
                return np.asarray(self.model(data))
            except Exception as exc:  # user code: wrap whatever it raised
                raise UserCodeError(f"The model function of {self.ref} raised {type(exc).__name__}: {exc}") from exc
        return np.asarray(self.model.predict(data))

    def predict_proba(self, X: Any) -> np.ndarray:
        if not hasattr(self.model, "predict_proba"):
            raise InvalidInputError(f"{self.ref} ({self.flavor}) does not give class probabilities")
        return np.asarray(self.model.predict_proba(self.prepare(X)))

    def __repr__(self) -> str:
        return f"LoadedModel({self.ref!r}, flavor={self.flavor!r})"


def _params_of(model: Any) -> dict[str, str]:
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return {}
    try:
        params = get_params(deep=True)
    except TypeError:
        params = get_params()
    out = {}
    for k, v in params.items():
        if v is None or isinstance(v, (str, int, float, bool)):
            out[str(k)] = str(v)
        if len(out) >= 200:
            break
    return out


class Models:
    """The model registry of one workspace: `ws.models`."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        *,
        author: str,
        datasets_get: Callable[[Any], DatasetVersion],
        dataset_id: Callable[[DatasetVersion], int],
        runs_get: Callable[[str], Run],
    ) -> None:
        self._meta = meta
        self._blobs = blobs
        self._author = author
        self._datasets_get = datasets_get
        self._dataset_id = dataset_id
        self._runs_get = runs_get

    # -- register -------------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Any,
        *,
        run: ActiveRun | Run | str | None = None,
        trained_on: str | DatasetVersion | Iterable[str | DatasetVersion] | None = None,
        X: Any = None,
        signature: Signature | None = None,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        description: str = "",
        flavor: str | None = None,
    ) -> ModelVersion:
        """Save `model` as the next version of `name`, linked to its run and training data.

        The signature comes from `X` (training input), else from the model's feature names
        and the training dataset's schema. Writes the artifact first, then the version row.

        >>> mv = ws.models.register("credit-risk", est, run=run, X=X_train)   # doctest: +SKIP
        >>> mv.ref                                                           # doctest: +SKIP
        'credit-risk@1'
        """
        check_name(name, what="model name")
        chosen = get_flavor(flavor) if flavor else flavor_for(model)
        if not chosen.accepts(model):
            raise InvalidInputError(f"Flavor {chosen.name!r} cannot save a {type(model).__name__}")
        run_record: Run | None = None
        if run is not None:
            run_record = self._runs_get(run if isinstance(run, str) else run.id)
        # Training data: what the caller names plus what the run read.
        if trained_on is None:
            named: list[Any] = []
        elif isinstance(trained_on, (str, DatasetVersion)):
            named = [trained_on]
        else:
            named = list(trained_on)
        dataset_versions = [self._datasets_get(d) for d in named]
        if run_record is not None:
            dataset_versions += [self._datasets_get(r) for r in run_record.inputs]
        unique = {(d.name, d.version): d for d in dataset_versions}
        dataset_ids = [self._dataset_id(d) for d in unique.values()]

        if signature is None and X is not None:
            signature = infer_signature(model, X)
        if signature is None:
            names = getattr(model, "feature_names_in_", None)
            if names is not None and unique:
                first = next(iter(unique.values()))
                signature = signature_from_schema(model, [str(n) for n in names], first.columns)
        if signature is None and chosen.name not in ("callable", "pickle"):
            logger.warning("model %s registered without a signature: pass X= to validate predict() input", name)
        example = input_example(X) if X is not None else None

        data = chosen.save(model)
        digest = self._blobs.put_bytes(data)  # the artifact exists before any row points at it
        version = self._meta.models.create_version(
            name,
            flavor=chosen.name,
            digest=digest,
            size_bytes=len(data),
            signature=signature,
            input_example=example,
            metrics={k: float(v) for k, v in (metrics if metrics is not None else (run_record.metrics if run_record else {})).items()},
            params={str(k): str(v) for k, v in params.items()} if params is not None else _params_of(model),
            tags={str(k): str(v) for k, v in (tags or {}).items()},
            description=description,
            run_id=run_record.id if run_record else None,
            dataset_version_ids=dataset_ids,
            author=self._author,
        )
        logger.info("registered %s (%s, %s bytes)", version.ref, chosen.name, len(data))
        return version

    # -- aliases --------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, *, version: int, reason: str = "") -> AliasEvent:
        """Point `alias` at `version` (moving it if it pointed elsewhere) and record the move."""
        event = self._meta.models.set_alias(check_name(name, what="model name"), alias, version, author=self._author, reason=reason)
        logger.info("alias %s moved %s@%s -> %s@%s", alias, name, event.from_version, name, version)
        return event

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasEvent:
        return self._meta.models.delete_alias(name, alias, author=self._author, reason=reason)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every move of the model's aliases (or of one alias), oldest first."""
        return self._meta.models.alias_history(name, alias)

    # -- read -----------------------------------------------------------------------------
    def get(self, ref: str | ModelVersion) -> ModelVersion:
        """The version a reference names: 'credit-risk@4', 'credit-risk@champion', 'credit-risk@latest'."""
        if isinstance(ref, ModelVersion):
            return ref
        return self._meta.models.get(parse_ref(ref))

    def list(self) -> list[RegisteredModel]:
        return self._meta.models.list()

    def versions(self, name: str) -> list[ModelVersion]:
        return self._meta.models.versions(check_name(name, what="model name"))

    def load(self, ref: str | ModelVersion, *, trusted: bool = False) -> LoadedModel:
        """Load a version's model; its artifact is verified against its hash first.

        Pickled models raise UnsafeLoadError unless `trusted=True`.
        """
        version = self.get(ref)
        data = self._blobs.get_bytes(version.digest)
        return LoadedModel(version, get_flavor(version.flavor).load(data, trusted=trusted))

    def lineage(self, ref: str | ModelVersion) -> Lineage:
        """Which run made a version and which dataset versions it learned from."""
        version = self.get(ref)
        experiment = self._runs_get(version.run_id).experiment if version.run_id else None
        digests = tuple(self._datasets_get(d).digest for d in version.datasets)
        return Lineage(version.ref, version.run_id, experiment, version.datasets, digests)

    def trained_on(self, dataset: str | DatasetVersion) -> list[ModelVersion]:
        """Every model version trained on this dataset version (lineage, walked backwards)."""
        version = self._datasets_get(dataset)
        return self._meta.models.trained_on(self._dataset_id(version))

    def set_description(self, name: str, description: str) -> None:
        self._meta.models.set_description(name, description)


def predictions_frame(model: LoadedModel, X: Any) -> pd.DataFrame:
    """Predictions (and class probabilities where they apply) as a DataFrame, one row per input row."""
    out = pd.DataFrame({"prediction": model.predict(X)})
    if model.has_proba:
        proba = model.predict_proba(X)
        for i, c in enumerate(model.classes or ()):
            out[f"proba_{c}"] = proba[:, i]
    return out
