"""Causal studies over HTTP (/api/v1/causal): list, show and compare studies and their estimates,
create a study, estimate its effect, refute it (now, or as a job with `?queue=true`), learn a
targeting policy (registered as a model on request), rerun it on new data, list its stored results, and ask what-if questions -- all through `ws.causal`.

Writers create studies and estimates (both are stored); a what-if stores nothing, so a reader may
ask one. Bad input (a cyclic graph, a node that is no column) is a KeelError from the facade, which
keel.server.errors answers with 4xx naming the problem; nothing is stored then.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, field_validator

from keel.entities import Role
from keel.server.auth import Principal, need
from keel.server.errors import ERROR_RESPONSES
from keel.server.schemas import INT64_MAX, Key, Ref, dump, started_job
from keel.server.state import server_state

router = APIRouter(prefix="/api/v1/causal", responses=ERROR_RESPONSES, tags=["causal"])
reader = Depends(need(Role.READER))
writer = Depends(need(Role.WRITER))

Name = Annotated[str, Field(min_length=1, max_length=128)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="Seed of the bootstrap, the cross-fitting or the fit")]
MAX_NODES = 1_000
GRAPH_CHARS = 200_000


class StudyCreate(BaseModel):
    name: Name = Field(description="The study's name; a second study of the name is its next version")
    dataset: Ref = Field(description="The dataset version it reads, e.g. nsw@1")
    graph: list[tuple[Key, Key]] | Annotated[str, Field(min_length=1, max_length=GRAPH_CHARS)] = Field(
        description='Edges [["age", "treat"], ...], or DOT or GML text (never a file path)'
    )
    treatment: Key
    outcome: Key
    covariates: list[Key] | None = Field(
        default=None, max_length=MAX_NODES, description="Adjust for these instead of the set the graph gives"
    )
    latent: list[Key] = Field(default=[], max_length=MAX_NODES, description="Graph nodes with no column")
    description: str = Field(default="", max_length=10_000)
    model: Ref | None = Field(default=None, description="The model version the study explains, e.g. credit@3")

    @field_validator("graph")
    @classmethod
    def _some_edges(cls, value: Any) -> Any:
        if isinstance(value, list) and not 1 <= len(value) <= 10 * MAX_NODES:
            raise ValueError(f"give between 1 and {10 * MAX_NODES} edges, as [cause, effect] pairs")
        return value


Estimator = Literal["regression", "ipw", "aipw", "dml"]
ESTIMATORS: tuple[Estimator, ...] = ("regression", "ipw", "aipw", "dml")  # keel.causal.ESTIMATORS


class EstimateRequest(BaseModel):
    estimators: list[Estimator] = Field(
        default=list(ESTIMATORS), min_length=1, max_length=4, description="The estimator families to use"
    )
    estimand: Literal["ate", "att", "atc"] = "ate"
    trim: tuple[float, float] | None = Field(
        default=None, description="Drop units with a propensity outside [low, high], 0 < low < high < 1 (reported)"
    )
    seed: Seed = 0

    @field_validator("trim")
    @classmethod
    def _bounds(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (math.isfinite(value[0]) and 0.0 < value[0] < value[1] < 1.0):
            raise ValueError(f"trim must be [low, high] with 0 < low < high < 1, got {list(value)}")
        return value


class WhatIfRequest(BaseModel):
    intervene: dict[Key, Annotated[str, Field(min_length=1, max_length=100)] | float] = Field(
        min_length=1, max_length=MAX_NODES, description='Node -> set ("5" or 5), shift ("+5") or scale ("*1.1")'
    )
    outcome: Key | None = Field(default=None, description="The outcome asked about (default: the study's)")
    kind: Literal["interventional", "counterfactual"] = "interventional"
    seed: Seed = 0

    @field_validator("intervene")
    @classmethod
    def _finite(cls, value: dict[str, str | float]) -> dict[str, str | float]:
        bad = [node for node, v in value.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"the value for {bad[0]!r} must be a finite number")
        return value


class RefuteRequest(BaseModel):
    estimator: Estimator = "aipw"
    estimand: Literal["ate", "att", "atc"] = "ate"
    seed: Seed = 0


class RerunRequest(BaseModel):
    dataset: Ref | None = Field(default=None, description="The dataset version (default: the study dataset's newest)")


class CateRequest(BaseModel):
    learners: list[Literal["T", "S", "X", "DR"]] | None = Field(
        default=None, min_length=1, max_length=4, description="Meta-learners to choose among (default: all four)"
    )
    selection: Literal["r_loss", "dr"] = Field(default="r_loss", description="The cross-validated score that chooses")
    seed: Seed = 0


class PolicyRequest(BaseModel):
    features: list[Key] | None = Field(
        default=None, max_length=MAX_NODES, description="Columns the rules split on (default: the adjustment set)"
    )
    depth: int = Field(default=2, ge=1, le=3, description="Depth of the policy tree")
    baseline: str | int | None = Field(default=None, description="The 'no one' action (default: the first sorted)")
    register_as: Name | None = Field(default=None, description="Register the tree as the next version of this model")
    seed: Seed = 0


ResultKind = Literal["refutation", "sensitivity", "effect_change", "policy", "bootstrap", "cate"]  # RESULT_KINDS

VersionQuery = Query(default=None, ge=1, le=INT64_MAX, description="A version number (default: the latest)")


def _ref(name: str, version: int | None) -> str:
    return name if version is None else f"{name}@{version}"


@router.get("/studies")
def list_studies(request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    """The latest version of every study."""
    return list(dump(server_state(request).ws.causal.list()))


@router.get("/studies/{name}")
def show_study(
    name: str, request: Request, version: int | None = VersionQuery, _: Principal = reader
) -> dict[str, Any]:
    """A study version (`?version=`, default the latest) with its estimates, its latest refutation (or
    null), and every version of the study. `study.model` is the model version it explains, if any."""
    causal = server_state(request).ws.causal
    study = causal.get(_ref(name, version))
    refutations = causal.results(study, kind="refutation")
    return {
        "study": dump(study),
        "estimates": dump(causal.estimates(study)),
        "refutation": dump(refutations[-1]) if refutations else None,
        "versions": dump(causal.versions(study.name)),
    }


@router.post("/studies", status_code=201)
def create_study(body: StudyCreate, request: Request, _: Principal = writer) -> dict[str, Any]:
    """Check the graph against the dataset version, identify the effect, and store the study's next version."""
    graph: Any = body.graph
    if isinstance(graph, str) and "\n" not in graph:
        # One line of text ending '.dot' would be read as a file on the server: text only, never a path.
        graph += "\n"
    study = server_state(request).ws.causal.study(
        body.name,
        body.dataset,
        graph=graph,
        treatment=body.treatment,
        outcome=body.outcome,
        covariates=body.covariates,
        latent=body.latent,
        description=body.description,
        model=body.model,
    )
    return dict(dump(study))


@router.post("/studies/{name}/estimate")
def estimate(
    name: str, body: EstimateRequest, request: Request, version: int | None = VersionQuery, _: Principal = writer
) -> dict[str, Any]:
    """Estimate the effect with each estimator family, store each estimate, and compare them
    (a disagreement beyond the intervals is flagged, never averaged)."""
    stored, comparison = server_state(request).ws.causal.estimate(
        _ref(name, version),
        estimators=tuple(dict.fromkeys(body.estimators)),
        estimand=body.estimand,
        trim=body.trim,
        seed=body.seed,
    )
    return {
        "estimates": dump(stored),
        "agree": comparison.agree,
        "disagreements": list(comparison.disagreements),
        "notes": list(comparison.notes),
    }


@router.get("/studies/{name}/estimates")
def list_estimates(
    name: str, request: Request, version: int | None = VersionQuery, _: Principal = reader
) -> dict[str, Any]:
    """Every stored estimate of a study version (default the latest), oldest first."""
    causal = server_state(request).ws.causal
    study = causal.get(_ref(name, version))
    return {"study": study.ref, "estimates": dump(causal.estimates(study))}


@router.post("/studies/{name}/whatif")
def what_if(
    name: str, body: WhatIfRequest, request: Request, version: int | None = VersionQuery, _: Principal = reader
) -> dict[str, Any]:
    """The effect on the outcome of setting, shifting or scaling nodes, through a structural causal
    model fitted on the study's graph and dataset version. Nothing is stored, so readers may ask."""
    answer = server_state(request).ws.causal.what_if(
        _ref(name, version), intervene=dict(body.intervene), outcome=body.outcome, kind=body.kind, seed=body.seed
    )
    return dict(dump(answer.summary()))


@router.post("/studies/{name}/refute")
def refute(
    name: str,
    body: RefuteRequest,
    request: Request,
    response: Response,
    version: int | None = VersionQuery,
    queue: bool = Query(default=False, description="Run it as a job: answer 202 at once with the job"),
    _: Principal = writer,
) -> dict[str, Any]:
    """Try to break the study's estimate (every check refits everything) and store the verdict as a
    'refutation' result. With `?queue=true` it runs as a job (its checks as tasks on the executor):
    202 with the job (`url`, also in `Location`); poll it for `progress` and the stored `result`."""
    ws = server_state(request).ws
    study = ws.causal.get(_ref(name, version))  # an unknown study is a 404 now, not a failed job later
    if queue:
        from keel.workspace.payloads import CausalRefutePayload

        payload = CausalRefutePayload(study.ref, estimator=body.estimator, estimand=body.estimand, seed=body.seed)
        return started_job(ws, payload, response)
    ws.causal.refute(study, estimator=body.estimator, estimand=body.estimand, seed=body.seed)
    return dict(dump(ws.causal.results(study, kind="refutation")[-1]))


@router.get("/studies/{name}/results")
def list_results(
    name: str,
    request: Request,
    version: int | None = VersionQuery,
    kind: ResultKind | None = Query(default=None, description="Only results of this kind"),
    _: Principal = reader,
) -> dict[str, Any]:
    """The stored results of a study version (default the latest), oldest first: refutations,
    sensitivity sweeps, effect changes between versions, ..."""
    causal = server_state(request).ws.causal
    study = causal.get(_ref(name, version))
    return {"study": study.ref, "results": dump(causal.results(study, kind))}


@router.post("/studies/{name}/cate", status_code=201)
def cate(
    name: str, body: CateRequest, request: Request, version: int | None = VersionQuery, _: Principal = writer
) -> dict[str, Any]:
    """Heterogeneous effects: the T/S/X/DR meta-learners fitted on the study's binary treatment, one
    chosen by a cross-validated R-loss or doubly robust score (every candidate's score is in the
    answer), with the effects' distribution and the uplift / Qini curves; stored as a 'cate' result."""
    _, stored = server_state(request).ws.causal.cate(
        _ref(name, version), learners=body.learners, selection=body.selection, seed=body.seed
    )
    return dict(dump(stored))


@router.post("/studies/{name}/policy", status_code=201)
def policy(
    name: str, body: PolicyRequest, request: Request, version: int | None = VersionQuery, _: Principal = writer
) -> dict[str, Any]:
    """Learn which action suits whom: a shallow doubly robust policy tree over the study's treatment
    (K >= 2 actions), its out-of-fold value versus treating everyone alike, and uplift / Qini curves;
    stored as the study's 'policy' result. With `register_as` the tree becomes a model version
    (flavour 'policy') served at /api/v1/models/{model}/predict with each row's expected gain."""
    _, stored, model = server_state(request).ws.causal.policy(
        _ref(name, version),
        features=body.features,
        depth=body.depth,
        baseline=body.baseline,
        register_as=body.register_as,
        seed=body.seed,
    )
    return {**dict(dump(stored)), "model": None if model is None else dump(model)}


@router.get("/studies/{name}/compare")
def compare(
    name: str,
    request: Request,
    a: int = Query(ge=1, le=INT64_MAX, description="The earlier version"),
    b: int = Query(ge=1, le=INT64_MAX, description="The later version"),
    _: Principal = reader,
) -> dict[str, Any]:
    """Two versions of a study side by side: dataset versions, graph and adjustment-set differences,
    and each estimator's latest effect in both with their difference, z and whether it drifted."""
    return dict(dump(server_state(request).ws.causal.compare(f"{name}@{a}", f"{name}@{b}")))


@router.post("/studies/{name}/rerun", status_code=201)
def rerun(name: str, body: RerunRequest, request: Request, _: Principal = writer) -> dict[str, Any]:
    """A new version of the study on its dataset's newest version (or `dataset`), re-estimated like
    its last estimate run, with the 'effect_change' result (a drifted effect raises an alert)."""
    study, change = server_state(request).ws.causal.rerun(name, dataset=body.dataset)
    return {"study": dump(study), "effect_change": dump(change)}
