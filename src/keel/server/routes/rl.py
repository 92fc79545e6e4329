"""Digital twins over HTTP (/api/v1/rl): fit a twin on a dataset version, list and show twins, find the
best classic policies and the exact optimum on one, list its stored results -- all through `ws.rl`.

Writers fit twins and compute baselines (both are stored); readers list and show. Bad input (negative
costs, a lead time longer than the history, a demand column with negatives or gaps) is a KeelError
from the facade, answered 4xx naming it; nothing is stored then.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from keel.entities import Role
from keel.server.auth import Principal, need
from keel.server.errors import ERROR_RESPONSES
from keel.server.schemas import INT64_MAX, Ref, dump, started_job
from keel.server.state import server_state

router = APIRouter(prefix="/api/v1/rl", responses=ERROR_RESPONSES, tags=["rl"])
reader = Depends(need(Role.READER))
writer = Depends(need(Role.WRITER))

Name = Annotated[str, Field(min_length=1, max_length=128)]
Cost = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Units = Annotated[int, Field(ge=1, le=1_000_000)]
VersionQuery = Query(default=None, ge=1, le=INT64_MAX, description="A version number (default: the latest)")


class Costs(BaseModel):
    holding: Cost = Field(default=1.0, description="Per unit on hand at the end of a period")
    penalty: Cost = Field(default=9.0, description="Per unit short: backordered at the end of a period, or lost")
    fixed_order: Cost = Field(default=0.0, description="Per order placed")
    unit: Cost = Field(default=0.0, description="Per unit ordered")


class TwinCreate(BaseModel):
    name: Name = Field(description="The twin's name; a second twin of the name is its next version")
    dataset: Ref = Field(description="The demand history: sales@3")
    demand_column: Name = Field(description="The column of demand per period")
    time_column: Name | None = Field(default=None, description="Orders the rows; must advance in equal steps")
    period: Literal["hour", "day", "week", "month", "quarter"] | None = Field(
        default=None, description="The seasonal cycle tested"
    )
    season: Annotated[int, Field(ge=1, le=366)] | None = Field(default=None, description="The cycle in periods")
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Multiply a non-integer series into whole units (the rounding is stated)"
    )
    lead_time: Annotated[int, Field(ge=0, le=1000)] = Field(default=2, description="Periods from order to arrival")
    costs: Costs = Field(default_factory=Costs)
    lost_sales: bool = Field(default=False, description="Unmet demand is lost (default: backordered)")
    capacity: Units | None = Field(default=None, description="The most that can be ordered in one period")
    shelf_life: Units | None = Field(default=None, description="Periods a unit keeps (perishable)")
    description: Annotated[str, Field(max_length=10_000)] = ""


class BaselinesRequest(BaseModel):
    periods: Annotated[int, Field(ge=10, le=100_000)] = Field(default=1000, description="Simulated periods per copy")
    copies: Annotated[int, Field(ge=10, le=10_000)] = Field(default=256, description="Independent copies")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0


class TrainRequest(BaseModel):
    register_as: Name | None = Field(default=None, description="Register the policy as the next version of this model")
    steps: Annotated[int, Field(ge=256, le=10_000_000)] = Field(default=200_000, description="PPO steps per seed")
    seeds: Annotated[int, Field(ge=1, le=16)] = Field(default=1, description="Seeds trained, as tasks")
    action: Literal["order_up_to", "delta", "quantity"] = Field(
        default="order_up_to", description="What the network outputs"
    )
    n_envs: Annotated[int, Field(ge=1, le=256)] = Field(default=8, description="Parallel copies of the twin per seed")


def _ref(name: str, version: int | None) -> str:
    return name if version is None else f"{name}@{version}"


@router.get("/twins")
def list_twins(request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    """The latest version of every twin."""
    return list(dump(server_state(request).ws.rl.list()))


@router.post("/twins", status_code=201)
def create_twin(body: TwinCreate, request: Request, _: Principal = writer) -> dict[str, Any]:
    """Fit the twin's demand model on the dataset version (Poisson, negative binomial or empirical,
    seasonal where the history says so; the choice and every candidate's fit in `spec.fit`) and store
    the twin's next version, with lineage to the dataset version."""
    made = server_state(request).ws.rl.twin(
        body.name,
        body.dataset,
        demand_column=body.demand_column,
        time_column=body.time_column,
        period=body.period,
        season=body.season,
        scale=body.scale,
        lead_time=body.lead_time,
        costs=body.costs.model_dump(),
        lost_sales=body.lost_sales,
        capacity=body.capacity,
        shelf_life=body.shelf_life,
        description=body.description,
    )
    return dict(dump(made))


@router.get("/twins/{name}")
def show_twin(name: str, request: Request, version: int | None = VersionQuery, _: Principal = reader) -> dict[str, Any]:
    """A twin version (`?version=`, default the latest), its latest baselines (or null) and every version."""
    rl = server_state(request).ws.rl
    twin = rl.get(_ref(name, version))
    found = rl.results(twin, kind="baselines")
    return {
        "twin": dump(twin),
        "baselines": dump(found[-1]) if found else None,
        "versions": dump(rl.versions(twin.name)),
    }


@router.post("/twins/{name}/baselines", status_code=201)
def baselines(
    name: str, body: BaselinesRequest, request: Request, version: int | None = VersionQuery, _: Principal = writer
) -> dict[str, Any]:
    """The best base-stock, (s,S) and capped base-stock policies on the twin (common random numbers),
    and the exact optimum where dynamic programming covers it; stored, and returned."""
    stored = server_state(request).ws.rl.baselines(
        _ref(name, version), periods=body.periods, copies=body.copies, seed=body.seed
    )
    return {"baselines": dump(stored[0]), "optimum": dump(stored[1]) if len(stored) > 1 else None}


@router.get("/twins/{name}/results")
def results(
    name: str,
    request: Request,
    version: int | None = VersionQuery,
    kind: Literal["baselines", "optimum", "evaluation", "trajectory"] | None = Query(default=None),
    _: Principal = reader,
) -> list[dict[str, Any]]:
    """The stored results of a twin version, oldest first (of one kind with `?kind=`)."""
    return list(dump(server_state(request).ws.rl.results(_ref(name, version), kind)))


@router.post("/twins/{name}/train", status_code=201)
def train(
    name: str,
    body: TrainRequest,
    request: Request,
    response: Response,
    version: int | None = VersionQuery,
    queue: bool = Query(default=False, description="Run it as a job: answer 202 at once with the job"),
    _: Principal = writer,
) -> dict[str, Any]:
    """Train a PPO policy on the twin (warm-started from its best classic policy), score it against that
    policy (paired, common random numbers) and the optimum, store the 'evaluation' result and, with
    `register_as`, register the policy (served at /api/v1/models/{name}/predict: an observation in, the
    order out). With `?queue=true` it runs as a job: 202 with the job (`url`, also in `Location`)."""
    ws = server_state(request).ws
    twin = ws.rl.get(_ref(name, version))  # an unknown twin is a 404 now, not a failed job later
    options = body.model_dump()
    if queue:
        from keel.workspace.payloads import TrainPolicyPayload

        payload = TrainPolicyPayload(twin.ref, **options)
        return started_job(ws, payload, response)
    return dict(dump(ws.rl.train(twin, **options)))
