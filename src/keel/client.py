"""keel.Client: the Workspace API over HTTP, so a script runs against a local workspace or a
`keel serve` by changing one line:

    ws = keel.Workspace()                                   # local
    ws = keel.Client("http://127.0.0.1:8080", token=...)   # remote; same calls below
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from keel import errors as e
from keel.entities import (
    AliasEvent,
    ArtifactRecord,
    ColumnChange,
    ColumnSchema,
    DatasetDiff,
    DatasetSummary,
    DatasetVersion,
    Lineage,
    MetricPoint,
    ModelVersion,
    RegisteredModel,
    Run,
    RunStatus,
    Signature,
)
from keel.tracking import metric_point, params_text, tags_text

__all__ = ["Client"]

# The HTTP API takes steps from 0 to 2^53 (keel.server.schemas.MAX_STEP: exact in JavaScript too).
_HTTP_MAX_STEP = 2**53


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_E = TypeVar("_E", bound="DataclassInstance")


def _entity(cls: type[_E], data: dict[str, Any]) -> _E:
    """Rebuild a frozen entity from the server's JSON (the inverse of keel.server.schemas.dump)."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for f in dataclasses.fields(cls):
        if f.name not in kwargs:
            continue
        v = kwargs[f.name]
        if f.name.endswith("_at") and isinstance(v, str):
            kwargs[f.name] = _dt(v)
        elif isinstance(v, list) and f.name not in ("input_example",):
            kwargs[f.name] = tuple(v)
    if cls is DatasetVersion:
        kwargs["columns"] = tuple(
            ColumnSchema(c["name"], c["type"], c["nullable"], tuple(c["categories"]) if c.get("categories") else None)
            for c in data["columns"]
        )
    if cls is ModelVersion and data.get("signature") is not None:
        sig = data["signature"]
        kwargs["signature"] = Signature.from_dict(
            {"inputs": sig["inputs"], "output": sig["output"], "classes": sig.get("classes")}
        )
    if cls is Run:
        kwargs["status"] = RunStatus(data["status"])
        kwargs["artifacts"] = tuple(ArtifactRecord(**a) for a in data["artifacts"])
    if cls is DatasetDiff:
        kwargs["columns"] = tuple(_entity(ColumnChange, c) for c in data["columns"])
        kwargs["type_changes"] = tuple(tuple(t) for t in data["type_changes"])
    return cls(**kwargs)


class _Http:
    def __init__(self, url: str, token: str | None, timeout_s: float) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.url = url

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise e.StoreUnavailableError(f"Cannot reach the Keel server at {self.url}: {exc}") from exc
        if r.status_code >= 400:
            raise _error(r)
        return r

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


_ERRORS: dict[str, type[e.KeelError]] = {
    cls.__name__: cls for cls in vars(e).values() if isinstance(cls, type) and issubclass(cls, e.KeelError)
}


def _error(r: Any) -> e.KeelError:
    try:
        body = r.json()["error"]
        kind, detail = body.get("type", ""), body.get("detail", r.text)
    except (ValueError, KeyError, TypeError):
        kind, detail, body = "", r.text, {}
    if kind == "SignatureError":
        return e.SignatureError(
            detail,
            missing=tuple(body.get("missing") or ()),
            extra=tuple(body.get("extra") or ()),
            mistyped=tuple((m["field"], m["expected"], m["got"]) for m in body.get("mistyped") or ()),
        )
    if kind in _ERRORS:
        return _ERRORS[kind](detail)
    if r.status_code in (401, 403):
        return e.AccessDeniedError(f"{r.status_code}: {detail}")
    if r.status_code == 404:
        return e.NotFoundError(detail)
    if r.status_code in (400, 413, 415, 422):
        return e.InvalidInputError(detail)
    return e.KeelError(f"Server answered {r.status_code}: {detail}")


class RemoteDatasets:
    def __init__(self, http: _Http) -> None:
        self._http = http

    def add(
        self, name: str, source: Any, *, description: str = "", tags: dict[str, str] | None = None
    ) -> DatasetVersion:
        """Upload a table (DataFrame, Arrow table, CSV or Parquet path) as a new version."""
        from keel.data import to_arrow
        from keel.data.datasets import parquet_bytes

        data = self._http.json(
            "POST",
            f"/api/v1/datasets/{name}",
            content=parquet_bytes(to_arrow(source)),
            params={"format": "parquet", "description": description},
        )
        return _entity(DatasetVersion, data)

    def get(self, ref: str) -> DatasetVersion:
        return _entity(DatasetVersion, self._http.json("GET", f"/api/v1/datasets/{ref}"))

    def list(self) -> list[DatasetSummary]:
        return [_entity(DatasetSummary, d) for d in self._http.json("GET", "/api/v1/datasets")]

    def versions(self, name: str) -> builtins.list[DatasetVersion]:
        return [_entity(DatasetVersion, d) for d in self._http.json("GET", f"/api/v1/datasets/{name}/versions")]

    def load(self, ref: str, *, format: Literal["pandas", "arrow"] = "pandas") -> Any:
        import pyarrow.parquet as pq

        r = self._http.request("GET", f"/api/v1/datasets/{ref}/download", params={"format": "parquet"})
        table = pq.read_table(io.BytesIO(r.content))
        return table if format == "arrow" else table.to_pandas()

    def diff(self, a: str, b: str) -> DatasetDiff:
        return _entity(DatasetDiff, self._http.json("GET", f"/api/v1/datasets/{a}/diff/{b}"))


class RemoteRun:
    """An ActiveRun over HTTP: params and tags go at once, metric points in batches."""

    def __init__(self, http: _Http, run: Run, *, buffer_points: int = 5000) -> None:
        self._http = http
        self.id = run.id
        self.experiment = run.experiment
        self.name = run.name
        self._buffer: list[dict[str, Any]] = []
        self._buffer_points = buffer_points
        self._next_step: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ended = False

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._http.json("POST", f"/api/v1/runs/{self.id}/params", json=params_text(params))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._http.json("POST", f"/api/v1/runs/{self.id}/tags", json=tags_text(tags))

    def log_metric(self, key: str, value: float, *, step: int | None = None, timestamp: float | None = None) -> None:
        # ActiveRun's checks (keel.tracking), so a bad point fails as it does locally, and at its
        # call, not at the batch flush.
        key, number, at, ts = metric_point(key, value, step, timestamp)
        if at is not None and not 0 <= at <= _HTTP_MAX_STEP:
            raise e.InvalidInputError(
                f"The step of metric {key!r} must be between 0 and {_HTTP_MAX_STEP} over HTTP, got {at}"
            )
        with self._lock:
            if at is None:
                at = self._next_step.get(key, 0)
            self._next_step[key] = max(self._next_step.get(key, 0), at + 1)
            self._buffer.append({"key": key, "value": number, "step": at, "timestamp": ts})
            full = len(self._buffer) >= self._buffer_points
        if full:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        for k, v in metrics.items():
            self.log_metric(k, v, step=step)

    def log_input(self, dataset: str | DatasetVersion) -> None:
        ref = dataset.ref if isinstance(dataset, DatasetVersion) else dataset
        self._http.json("POST", f"/api/v1/runs/{self.id}/inputs", json=[ref])

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self._http.json("POST", f"/api/v1/runs/{self.id}/metrics", json={"points": batch})

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        if not self._ended:
            self.flush()
            self._ended = True
            return _entity(
                Run, self._http.json("POST", f"/api/v1/runs/{self.id}/end", json={"status": RunStatus(status).value})
            )
        return _entity(Run, self._http.json("GET", f"/api/v1/runs/{self.id}"))

    def __enter__(self) -> RemoteRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED)
        else:
            self.end(RunStatus.FAILED)


class RemoteRuns:
    def __init__(self, http: _Http) -> None:
        self._http = http

    def start(
        self,
        experiment: str = "default",
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        inputs: list[str | DatasetVersion] | None = None,
    ) -> RemoteRun:
        body = {
            "experiment": experiment,
            "name": name,
            "params": params_text(params or {}),
            "tags": tags_text(tags or {}),
            "inputs": [i.ref if isinstance(i, DatasetVersion) else i for i in inputs or []],
        }
        return RemoteRun(self._http, _entity(Run, self._http.json("POST", "/api/v1/runs", json=body)))

    def get(self, run_id: str) -> Run:
        return _entity(Run, self._http.json("GET", f"/api/v1/runs/{run_id}"))

    def list(self, *, experiment: str | None = None, limit: int = 100) -> list[Run]:
        params: dict[str, Any] = {"limit": limit}
        if experiment:
            params["experiment"] = experiment
        return [_entity(Run, r) for r in self._http.json("GET", "/api/v1/runs", params=params)]

    def search(
        self,
        filter: str | None = None,
        *,
        order_by: str | builtins.list[str] | None = None,
        limit: int = 100,
        experiment: str | None = None,
    ) -> builtins.list[Run]:
        params: dict[str, Any] = {"limit": limit}
        if filter:
            params["filter"] = filter
        if order_by:
            params["order_by"] = order_by if isinstance(order_by, str) else ",".join(order_by)
        if experiment:
            params["experiment"] = experiment
        return [_entity(Run, r) for r in self._http.json("GET", "/api/v1/runs/search", params=params)]

    def metric_history(self, run_id: str, key: str | None = None) -> builtins.list[MetricPoint]:
        series = self._http.json("GET", f"/api/v1/runs/{run_id}/metrics", params={"key": key} if key else None)
        points = []
        for k, s in series.items():
            for step, value, ts in zip(s["steps"], s["values"], s["timestamps"], strict=True):
                points.append(MetricPoint(k, value, step, ts))
        return points

    def experiments(self) -> builtins.list[tuple[str, int]]:
        return [(x["name"], x["runs"]) for x in self._http.json("GET", "/api/v1/experiments")]


class RemoteModels:
    def __init__(self, http: _Http) -> None:
        self._http = http

    def register(
        self,
        name: str,
        model: Any,
        *,
        run: RemoteRun | Run | str | None = None,
        trained_on: str | DatasetVersion | Iterable[str | DatasetVersion] | None = None,
        X: Any = None,
        signature: Signature | None = None,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        description: str = "",
        flavor: str | None = None,
    ) -> ModelVersion:
        """Save the model with its flavour here, upload the artifact, and register it there."""
        from keel.registry.flavors import flavor_for, get_flavor
        from keel.registry.models import params_of
        from keel.registry.signature import infer_signature, input_example

        chosen = get_flavor(flavor) if flavor else flavor_for(model)
        if signature is None and X is not None:
            signature = infer_signature(model, X)
        if isinstance(trained_on, (str, DatasetVersion)):
            trained = [trained_on]
        else:
            trained = list(trained_on or [])
        meta = {
            "flavor": chosen.name,
            "signature": None if signature is None else signature.to_dict(),
            "input_example": input_example(X) if X is not None else None,
            "metrics": metrics,
            "params": {str(k): str(v) for k, v in params.items()} if params is not None else params_of(model),
            "tags": {str(k): str(v) for k, v in (tags or {}).items()},
            "description": description,
            "run": None if run is None else (run if isinstance(run, str) else run.id),
            "trained_on": [t.ref if isinstance(t, DatasetVersion) else t for t in trained],
        }
        data = chosen.save(model)
        out = self._http.json(
            "POST",
            f"/api/v1/models/{name}/versions",
            content=data,
            headers={"X-Keel-Meta": json.dumps(meta), "Content-Type": "application/octet-stream"},
        )
        return _entity(ModelVersion, out)

    def get(self, ref: str) -> ModelVersion:
        return _entity(ModelVersion, self._http.json("GET", f"/api/v1/models/{ref}"))

    def list(self) -> list[RegisteredModel]:
        return [_entity(RegisteredModel, m) for m in self._http.json("GET", "/api/v1/models")]

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        return [_entity(ModelVersion, m) for m in self._http.json("GET", f"/api/v1/models/{name}/versions")]

    def load(self, ref: str, *, trusted: bool = False) -> Any:
        """Download the version's artifact, verify its hash, and load it here."""
        import hashlib

        from keel.registry.flavors import get_flavor
        from keel.registry.loaded import LoadedModel

        version = self.get(ref)
        data = self._http.request("GET", f"/api/v1/models/{version.ref}/artifact").content
        if "sha256:" + hashlib.sha256(data).hexdigest() != version.digest:
            raise e.CorruptArtifactError(f"The artifact of {version.ref} arrived corrupted (hash mismatch)")
        return LoadedModel(version, get_flavor(version.flavor).load(data, trusted=trusted))

    def set_alias(self, name: str, alias: str, *, version: int, reason: str = "") -> AliasEvent:
        out = self._http.json(
            "PUT", f"/api/v1/models/{name}/aliases/{alias}", json={"version": version, "reason": reason}
        )
        return _entity(AliasEvent, out)

    def delete_alias(self, name: str, alias: str, *, reason: str = "") -> AliasEvent:
        out = self._http.json("DELETE", f"/api/v1/models/{name}/aliases/{alias}", params={"reason": reason})
        return _entity(AliasEvent, out)

    def alias_history(self, name: str, alias: str | None = None) -> builtins.list[AliasEvent]:
        out = self._http.json("GET", f"/api/v1/models/{name}/aliases", params={"alias": alias} if alias else None)
        return [_entity(AliasEvent, a) for a in out["history"]]

    def lineage(self, ref: str) -> Lineage:
        return _entity(Lineage, self._http.json("GET", f"/api/v1/models/{ref}/lineage"))

    def predict(
        self, name: str, records: Any, *, alias: str | None = None, version: int | None = None
    ) -> dict[str, Any]:
        """Server-side predictions: {'model', 'version', 'predictions': [{'id', 'prediction', 'probabilities'}]}."""
        if hasattr(records, "to_dict"):
            records = json.loads(records.to_json(orient="records", date_format="iso"))
        params: dict[str, Any] = {}
        if alias:
            params["alias"] = alias
        if version:
            params["version"] = version
        return self._http.json("POST", f"/api/v1/models/{name}/predict", json={"records": records}, params=params)


class Client:
    """The Workspace API of a remote `keel serve`.

    >>> ws = keel.Client("http://127.0.0.1:8080", token="keel_...")   # doctest: +SKIP
    >>> ws.models.get("credit-risk@champion").version                   # doctest: +SKIP
    """

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 60.0) -> None:
        self._http = _Http(url, token, timeout_s)
        self.url = url
        self.datasets = RemoteDatasets(self._http)
        self.runs = RemoteRuns(self._http)
        self.models = RemoteModels(self._http)

    def health(self) -> dict[str, Any]:
        return self._http.json("GET", "/readyz")

    def close(self) -> None:
        self._http.client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"
