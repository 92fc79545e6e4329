"""The model registry: versions with lineage, aliases with history, loading by reference."""

from __future__ import annotations

import builtins
import itertools
import logging
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from keel.entities import AliasEvent, DatasetVersion, Lineage, ModelVersion, RegisteredModel, Run, Signature
from keel.errors import InvalidInputError, InvalidModelError, KeelError, UnsafeLoadError
from keel.refs import MAX_VERSION, check_name, parse_ref
from keel.registry.flavor_base import Flavor
from keel.registry.flavors import flavor_for, get_flavor
from keel.registry.loaded import LoadedModel
from keel.registry.sample import read_sample, sample_bytes
from keel.registry.signature import infer_signature, input_example, signature_from_schema

if TYPE_CHECKING:
    from keel.storage import BlobStore, MetadataStore
    from keel.tracking import ActiveRun

logger = logging.getLogger(__name__)

__all__ = ["Models", "params_of"]


def _finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"Model metric {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InvalidInputError(f"Model metric {key!r} must be finite, got {number}")
        out[str(key)] = number
    return out


def params_of(model: Any) -> dict[str, str]:
    """The model's simple hyperparameters (get_params(deep=True)) as text, at most 200."""
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


def _validate(
    name: str,
    flavor: Flavor,
    data: bytes,
    model: Any,
    *,
    signature: Signature | None,
    example: list[dict[str, Any]] | None,
    trusted: bool,
) -> None:
    """Refuse a version serving could never use: bytes that do not load, an unfitted model, one that fails on its example.

    `model` is the live object when the caller registered one: a scikit-learn model's saved bytes
    are then only audited (cheap, and cached for serving's load) instead of loaded a second time.
    """
    what = f"Cannot register {name}: the {flavor.name} artifact"
    # Bytes from elsewhere are checked as served (labels and probabilities); a live object only
    # predicts, which halves the cost of the check (registering 200 versions stays cheap).
    served = model is None
    try:
        if model is None or flavor.checks_loaded:
            # Served through keel's own wrappers (boosters): predict as they will (loading is cheap).
            model = flavor.load(data, trusted=trusted)
        else:
            flavor.audit(data, trusted=trusted)
    except UnsafeLoadError as exc:
        raise InvalidModelError(
            f"{what} would not load where models load untrusted (the server, keel models predict): {exc} "
            "From Python, register(..., trusted=True) stores it anyway; it then loads only with trusted=True."
        ) from exc
    except InvalidModelError as exc:
        raise InvalidModelError(f"{what} is malformed: {exc}") from exc
    except (KeelError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - each format's parser fails in its own way on bad bytes
        raise InvalidModelError(f"{what} does not load: {type(exc).__name__}: {exc}") from exc
    _check_fitted(name, model)
    if not example:
        return
    provisional = ModelVersion(
        name=name,
        version=0,
        flavor=flavor.name,
        digest="",
        size_bytes=len(data),
        signature=signature,
        input_example=example,
        metrics={},
        params={},
        tags={},
        description="",
        run_id=None,
        datasets=(),
        aliases=(),
        created_at=datetime.now(timezone.utc),
        author="",
    )
    try:
        loaded = LoadedModel(provisional, model)
        labels, proba = loaded.predict_and_proba(example) if served else (loaded.predict(example), None)
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, it cannot serve
        raise InvalidModelError(
            f"Cannot register {name}: the model fails on its input example ({len(example)} rows): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if len(labels) != len(example) or (proba is not None and len(proba) != len(example)):
        raise InvalidModelError(
            f"Cannot register {name}: the model gave {len(labels)} predictions for the {len(example)} rows of its input example"
        )


def _check_fitted(name: str, model: Any) -> None:
    try:
        from sklearn.base import BaseEstimator
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return
    if not isinstance(model, BaseEstimator):
        return  # boosters, keel's LightGBM wrappers, functions: fitted by construction
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise InvalidModelError(
            f"Cannot register {name}: the {type(model).__name__} is not fitted ({exc}). Call fit() before registering it."
        ) from exc


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
        measure: Callable[[Any, Any], dict[str, Any] | None] | None = None,
    ) -> None:
        self._meta = meta
        # (model, X) -> {"importance", "method", "space", "rows"} or None: the version's global
        # importance on a sample of X, stored with it (the workspace passes keel's explainer).
        self._measure = measure
        self._blobs = blobs
        self._author = author
        self._datasets_get = datasets_get
        self._dataset_id = dataset_id
        self._runs_get = runs_get
        self._changes = itertools.count(1)
        self._generation = 0

    @property
    def generation(self) -> int:
        """A number that changes after every registration and alias move, made through this object
        or by any other process sharing the store (`keel.storage.changes`): a memory read.

        A cache of resolved references (the server's) is stale once it changed.
        """
        return self._generation + self._meta.changes.value()

    def _changed(self) -> None:
        self._generation = next(self._changes)  # after the commit: a reader that saw the old number re-reads
        self._meta.changes.bump()  # ...in every process sharing the store

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
        trusted: bool = False,
    ) -> ModelVersion:
        """Save `model` as the next version of `name`, linked to its run and training data.

        The signature comes from `X` (training input), else from the model's feature names
        and the training dataset's schema. `metrics` default to the run's latest metrics and
        `params` to the model's get_params(); the training data is `trained_on` plus every
        dataset version the run read. Writes the artifact first, then the version row in one
        transaction, so a failed register leaves no version (only a blob that `ws.gc()` removes).
        The format is the model's flavour (see keel.registry.flavors); `flavor='pickle'` must
        be asked for by name. Raises NotFoundError for an unknown run or dataset.

        The version is checked before anything is stored (InvalidModelError if not): its saved
        bytes must load untrusted, as the server loads them (a scikit-learn model holding a
        function or a type of your own needs `trusted=True` here, and then loads only with
        trusted=True), it must be fitted, and it must predict on the first rows of `X`. A
        'callable' or 'pickle' model is your own code: it always loads with trusted=True only.

        >>> mv = ws.models.register("credit-risk", est, run=run, X=X_train)   # doctest: +SKIP
        >>> mv.ref                                                           # doctest: +SKIP
        'credit-risk@1'
        """
        check_name(name, what="model name")
        if isinstance(model, LoadedModel):  # registering a loaded model again: keep its format
            flavor = flavor or model.flavor
            signature = signature or model.signature
            model = model.model
        chosen = get_flavor(flavor) if flavor else flavor_for(model)
        if not chosen.accepts(model):
            raise InvalidInputError(
                f"Flavor {chosen.name!r} cannot save a {type(model).__module__}.{type(model).__name__}"
            )
        run_record, datasets = self._lineage_of(run, trained_on)
        if signature is None and X is not None:
            signature = infer_signature(model, X)
        if signature is None:
            names = getattr(model, "feature_names_in_", None)
            if names is not None and datasets:
                signature = signature_from_schema(model, [str(n) for n in names], datasets[0].columns)
        if signature is None and not chosen.needs_trust:
            logger.warning("model %s registered without a signature: pass X= to validate predict() input", name)
        data = chosen.save(model)
        example = input_example(X) if X is not None else None
        # Pickle and callables are code the caller handed over in-process; their loads need trusted=True anyway.
        _validate(
            name, chosen, data, model, signature=signature, example=example, trusted=trusted or chosen.needs_trust
        )
        importance, sample = self._explanation_inputs(name, model, X, signature)
        return self._store(
            name,
            data,
            flavor=chosen.name,
            signature=signature,
            input_example=example,
            metrics=_finite_metrics(metrics) if metrics is not None else None,
            params={str(k): str(v) for k, v in params.items()} if params is not None else params_of(model),
            tags=tags,
            description=description,
            run=run_record,
            datasets=datasets,
            importance=importance,
            training_sample=sample,
        )

    def _explanation_inputs(
        self, name: str, model: Any, X: Any, signature: Signature | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The new version's global importance and the digest of its stored training sample (None
        where there is no X or signature, or where computing one failed: neither stops registering)."""
        if signature is None or X is None:
            return None, None
        importance = None
        if self._measure is not None:
            try:
                importance = self._measure(model, X)
            except Exception:  # noqa: BLE001 - importance is computed again on request; registering goes on
                logger.exception("global importance of the new version of %s not computed at registration", name)
        sample = None
        try:  # explanations' background and typical values when no training dataset is linked
            sample = self._blobs.put_bytes(sample_bytes(X, signature))  # before the row that points at it
        except Exception:  # noqa: BLE001 - a version without a sample explains from its dataset; registering goes on
            logger.exception("training sample of the new version of %s not stored at registration", name)
        return importance, sample

    def register_artifact(
        self,
        name: str,
        data: bytes,
        *,
        flavor: str,
        signature: Signature | dict[str, Any] | None = None,
        input_example: list[dict[str, Any]] | None = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str = "",
        run: ActiveRun | Run | str | None = None,
        trained_on: str | DatasetVersion | Iterable[str | DatasetVersion] | None = None,
        trusted: bool = False,
    ) -> ModelVersion:
        """Register a version from bytes a flavour saved elsewhere (how keel.Client registers over HTTP).

        The bytes are stored as given once they pass register()'s checks: they load with the
        flavour's safety rules (untrusted, as the server loads them, unless `trusted=True`; the
        HTTP API never passes it, so a 'pickle' or 'callable' artifact is refused there), the
        model is fitted, and it predicts on `input_example`. InvalidModelError otherwise.
        """
        check_name(name, what="model name")
        chosen = get_flavor(flavor)
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise InvalidInputError(f"A {chosen.name} model artifact must be non-empty bytes")
        if isinstance(signature, dict):
            try:
                signature = Signature.from_dict(signature)
            except (KeyError, TypeError) as exc:
                raise InvalidInputError(f"Malformed signature {signature!r}: {exc}") from exc
        if input_example is not None and not (
            isinstance(input_example, list) and all(isinstance(r, dict) for r in input_example)
        ):
            raise InvalidInputError("input_example must be a list of records (dicts)")
        run_record, datasets = self._lineage_of(run, trained_on)
        _validate(name, chosen, bytes(data), None, signature=signature, example=input_example, trusted=trusted)
        return self._store(
            name,
            bytes(data),
            flavor=chosen.name,
            signature=signature,
            input_example=input_example,
            metrics=_finite_metrics(metrics) if metrics is not None else None,
            params={str(k): str(v) for k, v in (params or {}).items()},
            tags=tags,
            description=description,
            run=run_record,
            datasets=datasets,
        )

    def _lineage_of(
        self,
        run: ActiveRun | Run | str | None,
        trained_on: str | DatasetVersion | Iterable[str | DatasetVersion] | None,
    ) -> tuple[Run | None, list[DatasetVersion]]:
        """The run as recorded and the training data: what the caller names plus what the run read."""
        run_record: Run | None = None
        if run is not None:
            flush = getattr(run, "flush", None)
            if callable(flush):  # an ActiveRun: its buffered metric points count as the run's metrics
                flush()
            run_record = self._runs_get(run if isinstance(run, str) else run.id)
        if trained_on is None:
            named: list[Any] = []
        elif isinstance(trained_on, (str, DatasetVersion)):
            named = [trained_on]
        else:
            named = list(trained_on)
        versions = [self._datasets_get(d) for d in named]
        if run_record is not None:
            versions += [self._datasets_get(r) for r in run_record.inputs]
        unique = {(d.name, d.version): d for d in versions}
        return run_record, list(unique.values())

    def _store(
        self,
        name: str,
        data: bytes,
        *,
        flavor: str,
        signature: Signature | None,
        input_example: list[dict[str, Any]] | None,
        metrics: dict[str, float] | None,
        params: dict[str, str],
        tags: Mapping[str, Any] | None,
        description: str,
        run: Run | None,
        datasets: list[DatasetVersion],
        importance: dict[str, Any] | None = None,
        training_sample: str | None = None,
    ) -> ModelVersion:
        digest = self._blobs.put_bytes(data)  # the artifact exists before any row points at it
        version = self._meta.models.create_version(
            name,
            flavor=flavor,
            digest=digest,
            size_bytes=len(data),
            signature=signature,
            input_example=input_example,
            metrics=metrics if metrics is not None else dict(run.metrics if run else {}),
            params=params,
            tags={str(k): str(v) for k, v in (tags or {}).items()},
            description=description,
            run_id=run.id if run else None,
            dataset_version_ids=[self._dataset_id(d) for d in datasets],
            author=self._author,
            importance=importance,
            training_sample=training_sample,
        )
        self._changed()
        logger.info("registered %s (%s, %s bytes)", version.ref, flavor, len(data))
        return version

    # -- aliases --------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, *, version: int, reason: str = "") -> AliasEvent:
        """Point `alias` at `version` (moving it if it pointed elsewhere) and record the move.

        The move and its AliasEvent (who, when, from, to, reason) are one transaction; moves
        of one model are serialized, so the history chains exactly.

        >>> ws.models.set_alias("credit-risk", "champion", version=4, reason="AUC +0.01")  # doctest: +SKIP
        """
        try:
            number = -1 if isinstance(version, bool) else operator.index(version)  # numpy integers too
        except TypeError:
            number = -1
        if not 1 <= number <= MAX_VERSION:
            raise InvalidInputError(f"version must be an integer from 1 to {MAX_VERSION}, got {version!r}")
        version = number
        event = self._meta.models.set_alias(
            check_name(name, what="model name"), alias, version, author=self._author, reason=reason
        )
        self._changed()
        if event.from_version is None:
            logger.info("alias %s set on %s@%s", alias, name, version)
        else:
            logger.info("alias %s moved %s@%s -> %s@%s", alias, name, event.from_version, name, version)
        return event

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasEvent:
        """Remove `alias` and record that in its history."""
        event = self._meta.models.delete_alias(name, alias, author=self._author, reason=reason)
        self._changed()
        logger.info("alias %s removed from %s@%s", alias, name, event.from_version)
        return event

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

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        return self._meta.models.versions(check_name(name, what="model name"))

    def training_sample(self, ref: str | ModelVersion) -> tuple[pd.DataFrame, dict[str, Any]] | None:
        """The sample of its training input a version was registered with (up to SAMPLE_ROWS evenly
        spread rows of X, and the typical value of each column over all of X), or None when it was
        registered without X."""
        version = self.get(ref)
        digest = self._meta.importance.training_sample(version.name, version.version)
        return None if digest is None else read_sample(self._blobs.get_bytes(digest))

    def artifact_bytes(self, ref: str | ModelVersion) -> bytes:
        """The version's saved model, verified against its SHA-256 (CorruptArtifactError if not)."""
        return self._blobs.get_bytes(self.get(ref).digest)

    def load(self, ref: str | ModelVersion, *, trusted: bool = False) -> LoadedModel:
        """Load a version's model; its artifact is verified against its hash first.

        Pickled models raise UnsafeLoadError unless `trusted=True`.
        """
        version = self.get(ref)
        return LoadedModel(version, get_flavor(version.flavor).load(self.artifact_bytes(version), trusted=trusted))

    def lineage(self, ref: str | ModelVersion) -> Lineage:
        """Which run made a version and which dataset versions it learned from."""
        version = self.get(ref)
        experiment = self._runs_get(version.run_id).experiment if version.run_id else None
        digests = tuple(self._datasets_get(d).digest for d in version.datasets)
        return Lineage(version.ref, version.run_id, experiment, version.datasets, digests)

    def trained_on(self, dataset: str | DatasetVersion) -> builtins.list[ModelVersion]:
        """Every model version trained on this dataset version (lineage, walked backwards)."""
        version = self._datasets_get(dataset)
        return self._meta.models.trained_on(self._dataset_id(version))

    def set_description(self, name: str, description: str) -> None:
        self._meta.models.set_description(name, description)
