"""Every request is validated before it reaches the records: bad input is a 4xx naming the field,
never a 500, and nothing stored changes. Each case here answered 500 (or was stored) before."""

from __future__ import annotations

import json
from typing import Any

import pytest

import keel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HUGE = "99999999999999999999"  # above 2^63: Python's sqlite3 raised OverflowError on it
JSON = {"content-type": "application/json"}


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()  # allows NaN, as a client's json.dumps does


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["detail"], body
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/models/tumor@{HUGE}",
        f"/api/v1/models/tumor@{HUGE}/lineage",
        f"/api/v1/models/tumor@{HUGE}/artifact",
        f"/api/v1/datasets/cancer@{HUGE}",
        f"/api/v1/datasets/cancer@{HUGE}/download",
        f"/api/v1/datasets/cancer@1/diff/cancer@{HUGE}",
        f"/api/v1/datasets/cancer@{HUGE}/diff/cancer@1",
        "/api/v1/models/tumor@9223372036854775808",
        "/api/v1/models/tumor@" + "9" * 5000,
    ],
)
def test_a_version_past_64_bits_in_a_reference_is_a_400(client: Any, path: str) -> None:
    err = _error(client.get(path), 400)
    assert "at most 9223372036854775807" in err["detail"]


def test_the_largest_64_bit_version_is_simply_not_found(client: Any) -> None:
    assert _error(client.get("/api/v1/models/tumor@9223372036854775807"), 404)["type"] == "NotFoundError"


def test_a_version_past_64_bits_in_a_query_is_refused(client: Any, records: Any, cancer: Any) -> None:
    r = client.post(f"/api/v1/models/tumor/predict?version={HUGE}", json=records(cancer, 1))
    assert r.status_code in (400, 422), r.text
    assert "9223372036854775807" in r.json()["error"]["detail"]
    # Found by schemathesis: the prediction log's version filter reached SQLite (500).
    assert _error(client.get(f"/api/v1/models/tumor/predictions?version={HUGE}"), 422)["field"] == "version"


def test_an_alias_moved_to_a_version_past_64_bits_is_a_422_and_stays(client: Any, served_ws: keel.Workspace) -> None:
    err = _error(client.put("/api/v1/models/tumor/aliases/champion", json={"version": int(HUGE)}), 422)
    assert err["field"] == "version" and "9223372036854775807" in err["detail"]
    assert served_ws.models.get("tumor@champion").version == 1


@pytest.fixture
def run_id(client: Any) -> str:
    r = client.post("/api/v1/runs", json={"experiment": "checks", "params": {"lr": 0.1}})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"key": "loss", "value": 1.0, "step": int(HUGE)}, "points.1.step"),
        ({"key": "loss", "value": 1.0, "step": 2**53 + 1}, "points.1.step"),
        ({"key": "loss", "value": 1.0, "step": -1}, "points.1.step"),
        ({"key": "loss", "value": 1.0, "timestamp": 1e300}, "points.1.timestamp"),
        ({"key": "loss", "value": 1.0, "timestamp": -1e300}, "points.1.timestamp"),
        ({"key": "loss", "value": 1.0, "timestamp": 1.7e12}, "points.1.timestamp"),  # milliseconds, not seconds
        ({"key": "", "value": 1.0}, "points.1.key"),
        ({"key": "loss", "value": float("nan")}, "points.1.value"),
    ],
)
def test_metric_points_out_of_range_are_a_422_and_nothing_is_logged(
    client: Any, served_ws: keel.Workspace, run_id: str, point: dict[str, Any], field: str
) -> None:
    body = {"points": [{"key": "loss", "value": 0.5, "step": 0}, point]}
    err = _error(client.post(f"/api/v1/runs/{run_id}/metrics", content=_json(body), headers=JSON), 422)
    assert err["field"] == field, err
    assert served_ws.runs.metric_history(run_id) == []


def test_a_timestamp_json_reads_as_infinity_is_a_422(client: Any, served_ws: keel.Workspace, run_id: str) -> None:
    body = b'{"points": [{"key": "loss", "value": 1.0, "timestamp": 1e400}]}'
    assert (
        _error(client.post(f"/api/v1/runs/{run_id}/metrics", content=body, headers=JSON), 422)["field"]
        == "points.0.timestamp"
    )
    assert served_ws.runs.metric_history(run_id) == []


def test_metric_points_within_range_are_logged(client: Any, served_ws: keel.Workspace, run_id: str) -> None:
    points = [
        {"key": "loss", "value": 0.5, "step": 2**53, "timestamp": 1.7e9},
        {"key": "loss", "value": 0.4, "timestamp": 0},
    ]
    assert client.post(f"/api/v1/runs/{run_id}/metrics", json={"points": points}).json() == {"logged": 2}
    assert [p.step for p in served_ws.runs.metric_history(run_id)] == [2**53, 2**53 + 1]


def test_a_search_of_thousands_of_terms_is_a_400_naming_the_limit(client: Any) -> None:
    many = " and ".join(["metrics.accuracy > 0.5"] * 2000)
    err = _error(client.get("/api/v1/runs/search", params={"filter": many}), 400)
    assert "more than 50 comparisons" in err["detail"]
    deep = "(" * 2000 + "metrics.accuracy > 0.5" + ")" * 2000
    assert "32 deep" in _error(client.get("/api/v1/runs/search", params={"filter": deep}), 400)["detail"]
    order = ",".join(f"metrics.m{i}" for i in range(100))
    assert "at most 8" in _error(client.get("/api/v1/runs/search", params={"order_by": order}), 400)["detail"]
    ok = client.get("/api/v1/runs/search", params={"filter": " and ".join(["metrics.accuracy > 0.5"] * 50)})
    assert ok.status_code == 200 and len(ok.json()) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nested": {"a": 1}}, "nested"),
        ({"list": [1, 2]}, "list"),
        ({"none": None}, "none"),
        ({"big": int(HUGE)}, "big"),
        ({"long": "x" * 8193}, "long"),
        ({"k" * 251: 1}, None),
        ({f"p{i}": i for i in range(1001)}, None),
    ],
)
@pytest.mark.parametrize("what", ["params", "tags"])
def test_params_and_tags_must_be_bounded_scalars(
    client: Any, served_ws: keel.Workspace, run_id: str, what: str, body: dict[str, Any], field: str | None
) -> None:
    before = served_ws.runs.get(run_id)
    err = _error(client.post(f"/api/v1/runs/{run_id}/{what}", json={"fine": 1, **body}), 422)
    if field is not None:
        assert err["field"] == field and "param or tag value" in err["detail"], err
    after = served_ws.runs.get(run_id)
    assert (after.params, after.tags) == (before.params, before.tags)
    # The same bodies are refused when a run is created, and no run is made.
    n = len(served_ws.runs.list(experiment="checks"))
    assert client.post("/api/v1/runs", json={"experiment": "checks", what: body}).status_code == 422
    assert len(served_ws.runs.list(experiment="checks")) == n


def test_scalar_params_and_tags_are_stored(client: Any, served_ws: keel.Workspace, run_id: str) -> None:
    body = {"flag": True, "depth": 6, "rate": 0.25, "name": "x" * 8192}
    assert client.post(f"/api/v1/runs/{run_id}/params", json=body).status_code == 200
    assert client.post(f"/api/v1/runs/{run_id}/tags", json={"team": "risk"}).status_code == 200
    run = served_ws.runs.get(run_id)
    assert run.params["depth"] == "6" and run.params["flag"] == "True" and run.tags["team"] == "risk"


def test_run_create_and_inputs_are_bounded(client: Any, served_ws: keel.Workspace, run_id: str) -> None:
    assert _error(client.post("/api/v1/runs", json={"experiment": "x" * 129}), 422)["field"] == "experiment"
    assert _error(client.post("/api/v1/runs", json={"name": ""}), 422)["field"] == "name"
    assert _error(client.post("/api/v1/runs", json={"inputs": ["cancer@1"] * 1001}), 422)["field"] == "inputs"
    _error(client.post(f"/api/v1/runs/{run_id}/inputs", json=["cancer@1"] * 1001), 422)
    assert _error(client.post(f"/api/v1/runs/{run_id}/inputs", json=["c" * 301]), 422)["field"] == "0"
    assert "at most" in _error(client.post(f"/api/v1/runs/{run_id}/inputs", json=[f"cancer@{HUGE}"]), 400)["detail"]
    assert served_ws.runs.get(run_id).inputs == ()


@pytest.mark.parametrize("status", ["running", "bogus", 1, None])
def test_a_run_ends_only_with_an_end_status(client: Any, served_ws: keel.Workspace, run_id: str, status: Any) -> None:
    # Regression: {"status": "running"} marked the run ended (ended_at set) and still running.
    err = _error(client.post(f"/api/v1/runs/{run_id}/end", json={"status": status}), 422)
    assert err["field"] == "status" and "finished" in err["detail"]
    run = served_ws.runs.get(run_id)
    assert run.status.value == "running" and run.ended_at is None
    assert client.post(f"/api/v1/runs/{run_id}/end", json={"status": "killed"}).json()["status"] == "killed"


def test_framework_errors_use_the_one_error_body(client: Any, run_id: str) -> None:
    assert _error(client.get("/api/v1/no-such-route"), 404)["type"] == "HTTPError"
    assert _error(client.delete("/api/v1/runs"), 405)["type"] == "HTTPError"
    # More digits than Python parses into an int: FastAPI answered {"detail": ...}.
    r = client.post(
        f"/api/v1/runs/{run_id}/params",
        content=b'{"p": ' + b"9" * 5000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (400, 422) and r.json()["error"]["detail"]
    err = _error(client.post(f"/api/v1/runs/{run_id}/params", content=b"{not json", headers=JSON), 422)
    assert err["type"] == "ValidationError"


def test_every_api_operation_declares_its_error_answers(app: Any) -> None:
    schema = app.openapi()
    assert "ErrorBody" in schema["components"]["schemas"]
    operations = [(p, m, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    assert len(operations) > 30
    for path, method, op in operations:
        declared = set(op["responses"])
        missing = {"400", "401", "403", "404", "409", "413", "415", "422"} - declared
        assert not missing, f"{method.upper()} {path} does not declare {sorted(missing)}"
        ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody"), (path, ref)


@pytest.mark.parametrize("b", ["\u00b2", "9" * 5000, HUGE])
def test_dashboard_diff_with_a_strange_version_is_a_400(client: Any, b: str) -> None:
    # Regression: str.isdigit() accepts '²', and int() refuses 5,000 digits: both were a 500.
    assert client.get("/datasets/cancer/diff", params={"b": b}).status_code == 400
