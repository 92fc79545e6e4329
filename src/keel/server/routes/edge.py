"""Edge builds over HTTP (/api/v1/edge): build a registered model version into C or ONNX (verified
against the Python model, sized for a Cortex-M), list a version's builds, show one, and download its
zip -- all through `ws.edge`.

Writers build (a build is stored); readers list, show and download. Bad input (a model kind a target
cannot hold, a quantisation it does not support, a model too big for the MCU's flash) is a KeelError
from the facade, answered 4xx naming the limit; nothing is stored then.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from keel.entities import Role
from keel.server.auth import Principal, need
from keel.server.errors import ERROR_RESPONSES
from keel.server.schemas import INT64_MAX, Ref, dump, started_job
from keel.server.state import server_state

router = APIRouter(prefix="/api/v1/edge", responses=ERROR_RESPONSES, tags=["edge"])
reader = Depends(need(Role.READER))
writer = Depends(need(Role.WRITER))

BuildId = Path(ge=1, le=INT64_MAX, description="The build's number")


class BuildRequest(BaseModel):
    model: Ref = Field(description="The model version: credit-risk@champion, credit-risk@3")
    target: Literal["c", "onnx"] = Field(default="c", description="C99 source or an ONNX file")
    quantize: Literal["float32", "int16", "int8"] = Field(default="float32", description="Weights and inputs")
    mcu: Literal["cortex-m4", "cortex-m0", "host"] = Field(default="cortex-m4", description="Whose flash it must fit")
    qemu: bool = Field(default=True, description="Also run the build on an emulated Cortex-M (when QEMU is installed)")


@router.post("/builds", status_code=201)
def build(
    body: BuildRequest,
    request: Request,
    response: Response,
    queue: bool = Query(default=False, description="Run it as a job: answer 202 at once with the job"),
    _: Principal = writer,
) -> dict[str, Any]:
    """Compile the model version for the target, verify it against the Python model on the version's
    held-out rows (agreement, accuracy, flash/RAM/stack on the MCU, host latency, the emulated run), and
    store the zip with its report. A model the target cannot hold is refused before anything is written.
    With `?queue=true` it runs as a job: 202 with the job (`url`, also in `Location`); its result names
    the build."""
    ws = server_state(request).ws
    if queue:
        from keel.workspace.payloads import EdgeBuildPayload

        version = ws.models.get(body.model)  # an unknown model is a 404 now, not a failed job later
        payload = EdgeBuildPayload(
            version.ref, target=body.target, quantize=body.quantize, mcu=body.mcu, qemu=body.qemu
        )
        return started_job(ws, payload, response)
    made = ws.edge.build(body.model, target=body.target, quantize=body.quantize, mcu=body.mcu, qemu=body.qemu)
    return dict(dump(made))


@router.get("/builds")
def list_builds(
    request: Request,
    model: Ref | None = Query(default=None, description="Only the builds of this model (NAME) or version (NAME@V)"),
    _: Principal = reader,
) -> list[dict[str, Any]]:
    """Every edge build, newest first (or a model's, or a version's)."""
    return list(dump(server_state(request).ws.edge.list(model)))


@router.get("/builds/{build_id}")
def show_build(request: Request, build_id: int = BuildId, _: Principal = reader) -> dict[str, Any]:
    """One build with its report."""
    return dict(dump(server_state(request).ws.edge.get(build_id)))


@router.get("/builds/{build_id}/download")
def download_build(request: Request, build_id: int = BuildId, _: Principal = reader) -> Response:
    """The build's zip: the C files (or model.onnx), README.md and report.json."""
    ws = server_state(request).ws
    made = ws.edge.get(build_id)
    name = f"{made.model.replace('@', '-v')}-{made.target}-{made.quantize}-{build_id}.zip"
    return Response(
        ws.edge.archive(build_id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "X-Keel-Digest": made.digest},
    )
