"""The REST API under /api/v1: datasets, runs and models, mirroring the Python API."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from keel.entities import Role, RunStatus
from keel.errors import InvalidInputError
from keel.server.auth import Principal, need
from keel.server.errors import ERROR_RESPONSES
from keel.server.schemas import MAX_INPUTS, AliasMove, MetricBatch, Params, Ref, RunCreate, RunEnd, dump
from keel.server.state import server_state
from keel.server.uploads import spool_body, suffix_for

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

reader = Depends(need(Role.READER))
writer = Depends(need(Role.WRITER))
admin = Depends(need(Role.ADMIN))


def _ws(request: Request) -> Any:
    return server_state(request).ws


# -- datasets -----------------------------------------------------------------------------------
@router.get("/datasets", tags=["datasets"])
def list_datasets(request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    return dump(_ws(request).datasets.list())


@router.get("/datasets/{name}/versions", tags=["datasets"])
def dataset_versions(name: str, request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    return dump(_ws(request).datasets.versions(name))


@router.get("/datasets/{ref}", tags=["datasets"])
def show_dataset(ref: str, request: Request, _: Principal = reader) -> dict[str, Any]:
    return dump(_ws(request).datasets.get(ref))


@router.get("/datasets/{ref}/diff/{other}", tags=["datasets"])
def diff_datasets(ref: str, other: str, request: Request, _: Principal = reader) -> dict[str, Any]:
    d = _ws(request).datasets.diff(ref, other)
    out = dump(d)
    out["rows_delta"] = d.rows_delta
    return out


@router.post("/datasets/{name}", tags=["datasets"], status_code=201)
async def upload_dataset(
    name: str,
    request: Request,
    format: str | None = Query(default=None, description="csv, tsv or parquet (default: from Content-Type)"),
    description: str = Query(default="", max_length=2000),
    _: Principal = writer,
) -> dict[str, Any]:
    """Upload a CSV or Parquet file as a new version (the body is the file's bytes)."""
    from fastapi.responses import JSONResponse

    ws = _ws(request)
    ws.datasets.check_name(name)  # before the body is read: a bad name costs no upload
    suffix = suffix_for(request, format)
    path = await spool_body(request, suffix=suffix, max_bytes=server_state(request).max_upload_bytes)

    def add() -> JSONResponse:
        # Parsing, profiling and encoding the answer (a profile per column: megabytes for a wide
        # table) all run here, in a worker thread, never on the event loop that serves other clients.
        return JSONResponse(dump(ws.datasets.add(name, path, description=description)), status_code=201)

    try:
        # The annotation documents the body for OpenAPI; the JSONResponse carries it with status 201.
        return await run_in_threadpool(add)  # type: ignore[arg-type]
    finally:
        path.unlink(missing_ok=True)


@router.get("/datasets/{ref}/download", tags=["datasets"])
def download_dataset(
    ref: str,
    request: Request,
    background: BackgroundTasks,
    format: str = Query(default="parquet"),
    _: Principal = reader,
) -> Response:
    ws = _ws(request)
    version = ws.datasets.get(ref)
    if version.kind != "table":
        raise InvalidInputError(f"{version.ref} is a folder of files; download its files one by one")
    tmp = Path(tempfile.mkdtemp(prefix="keel-dl-"))
    if format == "parquet":
        path = ws.datasets.materialize(version, tmp) / f"{version.name}.parquet"
        media = "application/vnd.apache.parquet"
    elif format == "csv":
        from keel.workspace.files import write_dataset_csv  # nulls as empty cells, floats that read back as floats

        path = write_dataset_csv(ws, version, tmp / f"{version.name}.csv")
        media = "text/csv"
    else:
        raise InvalidInputError(f"format must be parquet or csv, got {format!r}")
    background.add_task(_cleanup, tmp)
    return FileResponse(path, media_type=media, filename=f"{version.name}-v{version.version}{path.suffix}")


def _cleanup(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# -- runs ---------------------------------------------------------------------------------------
@router.get("/runs", tags=["runs"])
def list_runs(
    request: Request,
    experiment: str | None = Query(default=None, max_length=128),
    limit: int = Query(default=100, ge=1, le=10_000),
    _: Principal = reader,
) -> list[dict[str, Any]]:
    return dump(_ws(request).runs.list(experiment=experiment, limit=limit))


@router.get("/runs/search", tags=["runs"])
def search_runs(
    request: Request,
    filter: str | None = Query(
        default=None,
        max_length=100_000,
        description="e.g. metrics.auc > 0.8 and params.max_depth = 6 (at most 50 comparisons)",
    ),
    order_by: str | None = Query(
        default=None, max_length=2_000, description="e.g. metrics.auc desc (at most 8 fields)"
    ),
    experiment: str | None = Query(default=None, max_length=128),
    limit: int = Query(default=100, ge=1, le=10_000),
    _: Principal = reader,
) -> list[dict[str, Any]]:
    return dump(_ws(request).runs.search(filter, order_by=order_by, limit=limit, experiment=experiment))


@router.get("/experiments", tags=["runs"])
def list_experiments(request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    return [{"name": n, "runs": c} for n, c in _ws(request).runs.experiments()]


@router.get("/runs/{run_id}", tags=["runs"])
def show_run(run_id: str, request: Request, _: Principal = reader) -> dict[str, Any]:
    return dump(_ws(request).runs.get(run_id))


@router.get("/runs/{run_id}/metrics", tags=["runs"])
def run_metrics(run_id: str, request: Request, key: str | None = None, _: Principal = reader) -> dict[str, Any]:
    """Metric series: {key: {"steps": [...], "values": [...], "timestamps": [...]}}."""
    series: dict[str, dict[str, list[Any]]] = {}
    for p in _ws(request).runs.metric_history(run_id, key):
        s = series.setdefault(p.key, {"steps": [], "values": [], "timestamps": []})
        s["steps"].append(p.step)
        s["values"].append(p.value)
        s["timestamps"].append(p.timestamp)
    return series


@router.post("/runs", tags=["runs"], status_code=201)
def create_run(body: RunCreate, request: Request, _: Principal = writer) -> dict[str, Any]:
    run = _ws(request).runs.start(
        body.experiment, name=body.name, params=body.params, tags=body.tags, inputs=body.inputs
    )
    run.detach()
    return dump(_ws(request).runs.get(run.id))


@router.post("/runs/{run_id}/params", tags=["runs"])
def log_params(run_id: str, body: Params, request: Request, _: Principal = writer) -> dict[str, str]:
    _ws(request).runs.log_params(run_id, body)
    return {"status": "ok"}


@router.post("/runs/{run_id}/tags", tags=["runs"])
def set_tags(run_id: str, body: Params, request: Request, _: Principal = writer) -> dict[str, str]:
    _ws(request).runs.set_tags(run_id, body)
    return {"status": "ok"}


@router.post("/runs/{run_id}/metrics", tags=["runs"])
def log_metrics(run_id: str, body: MetricBatch, request: Request, _: Principal = writer) -> dict[str, int]:
    n = _ws(request).runs.log_metric_points(run_id, [(p.key, p.value, p.step, p.timestamp) for p in body.points])
    return {"logged": n}


@router.post("/runs/{run_id}/inputs", tags=["runs"])
def log_inputs(
    run_id: str, body: Annotated[list[Ref], Field(max_length=MAX_INPUTS)], request: Request, _: Principal = writer
) -> dict[str, Any]:
    return {"inputs": [v.ref for v in _ws(request).runs.log_inputs(run_id, body)]}


@router.post("/runs/{run_id}/end", tags=["runs"])
def end_run(run_id: str, body: RunEnd, request: Request, _: Principal = writer) -> dict[str, Any]:
    return dump(_ws(request).runs.end(run_id, RunStatus(body.status)))


# -- models -------------------------------------------------------------------------------------
@router.get("/models", tags=["models"])
def list_models(request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    return dump(_ws(request).models.list())


@router.get("/models/{name}/versions", tags=["models"])
def model_versions(name: str, request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    return dump(_ws(request).models.versions(name))


@router.get("/models/{ref}", tags=["models"])
def show_model(ref: str, request: Request, _: Principal = reader) -> dict[str, Any]:
    """A version by reference: 'credit-risk@4', 'credit-risk@champion' or 'credit-risk' (latest)."""
    return dump(_ws(request).models.get(ref))


@router.get("/models/{ref}/lineage", tags=["models"])
def model_lineage(ref: str, request: Request, _: Principal = reader) -> dict[str, Any]:
    return dump(_ws(request).models.lineage(ref))


@router.get("/models/{name}/aliases", tags=["models"])
def alias_history(name: str, request: Request, alias: str | None = None, _: Principal = reader) -> dict[str, Any]:
    ws = _ws(request)
    current = next((m.aliases for m in ws.models.list() if m.name == name), None)
    return {"aliases": current or {}, "history": dump(ws.models.alias_history(name, alias))}


@router.put("/models/{name}/aliases/{alias}", tags=["models"])
def move_alias(name: str, alias: str, body: AliasMove, request: Request, who: Principal = admin) -> dict[str, Any]:
    reason = body.reason or f"moved over the API by {who.name}"
    return dump(_ws(request).models.set_alias(name, alias, version=body.version, reason=reason))


@router.delete("/models/{name}/aliases/{alias}", tags=["models"])
def delete_alias(
    name: str, alias: str, request: Request, reason: str = Query(default="", max_length=2000), who: Principal = admin
) -> dict[str, Any]:
    return dump(_ws(request).models.delete_alias(name, alias, reason=reason or f"removed over the API by {who.name}"))


@router.get("/models/{ref}/artifact", tags=["models"])
def model_artifact(ref: str, request: Request, _: Principal = reader) -> Response:
    """The version's artifact bytes (verified); the X-Keel-Digest header carries its SHA-256."""
    ws = _ws(request)
    version = ws.models.get(ref)
    data = ws.models.artifact_bytes(version)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"X-Keel-Digest": version.digest, "X-Keel-Flavor": version.flavor},
    )


@router.post("/models/{name}/versions", tags=["models"], status_code=201)
async def register_version(name: str, request: Request, _: Principal = writer) -> dict[str, Any]:
    """Register a version from a flavour's artifact bytes (body) and its metadata (X-Keel-Meta header, JSON).

    This is how `keel.Client` registers: the model is saved by its flavour on the client side.
    """
    import json

    raw = request.headers.get("x-keel-meta", "{}")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInputError("The X-Keel-Meta header is not valid JSON") from None
    path = await spool_body(request, suffix=".bin", max_bytes=server_state(request).max_upload_bytes)
    try:
        data = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    version = await run_in_threadpool(_ws(request).models.register_artifact, name, data, **_register_meta(meta))
    return dump(version)


def _register_meta(meta: dict[str, Any]) -> dict[str, Any]:
    from keel.entities import Signature

    allowed = {"flavor", "signature", "input_example", "metrics", "params", "tags", "description", "run", "trained_on"}
    unknown = set(meta) - allowed
    if unknown:
        raise InvalidInputError(f"Unknown metadata field(s): {', '.join(sorted(unknown))}")
    if "flavor" not in meta:
        raise InvalidInputError("metadata field 'flavor' is required")
    out = dict(meta)
    if out.get("signature") is not None:
        try:
            out["signature"] = Signature.from_dict(out["signature"])
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"metadata field 'signature' is malformed: {exc}") from exc
    return out
