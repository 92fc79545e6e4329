"""Every role against every kind of endpoint; no token, a wrong token, remote clients."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest
from routetools import leaf_routes

import keel
from keel.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROLES = ["reader", "predictor", "writer", "admin"]
READ = frozenset({"reader", "writer", "admin"})
PREDICT = frozenset({"predictor", "writer", "admin"})
WRITE = frozenset({"writer", "admin"})
ADMIN = frozenset({"admin"})
OPEN = frozenset(ROLES)

# Every route of the app and the roles that may call it. A route missing here fails
# test_every_route_has_a_decided_role: decide its role, then add it (and to the README's table).
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/datasets"): READ,
    ("GET", "/api/v1/datasets/{name}/versions"): READ,
    ("GET", "/api/v1/datasets/{ref}"): READ,
    ("GET", "/api/v1/datasets/{ref}/diff/{other}"): READ,
    ("GET", "/api/v1/datasets/{ref}/download"): READ,
    ("POST", "/api/v1/datasets/{name}"): WRITE,
    ("GET", "/api/v1/runs"): READ,
    ("GET", "/api/v1/runs/search"): READ,
    ("GET", "/api/v1/experiments"): READ,
    ("GET", "/api/v1/runs/{run_id}"): READ,
    ("GET", "/api/v1/runs/{run_id}/metrics"): READ,
    ("POST", "/api/v1/runs"): WRITE,
    ("POST", "/api/v1/runs/{run_id}/params"): WRITE,
    ("POST", "/api/v1/runs/{run_id}/tags"): WRITE,
    ("POST", "/api/v1/runs/{run_id}/metrics"): WRITE,
    ("POST", "/api/v1/runs/{run_id}/inputs"): WRITE,
    ("POST", "/api/v1/runs/{run_id}/end"): WRITE,
    ("GET", "/api/v1/models"): READ,
    ("GET", "/api/v1/models/{name}/versions"): READ,
    ("GET", "/api/v1/models/{ref}"): READ,
    ("GET", "/api/v1/models/{ref}/lineage"): READ,
    ("GET", "/api/v1/models/{name}/aliases"): READ,
    ("GET", "/api/v1/models/{ref}/artifact"): READ,
    ("POST", "/api/v1/models/{name}/versions"): WRITE,
    ("PUT", "/api/v1/models/{name}/aliases/{alias}"): ADMIN,
    ("DELETE", "/api/v1/models/{name}/aliases/{alias}"): ADMIN,
    ("POST", "/api/v1/models/{name}/predict"): PREDICT,
    ("POST", "/api/v1/models/{name}/generate"): PREDICT,  # a language model's completion, logged as /predict
    ("POST", "/api/v1/models/{name}/predict/batch"): PREDICT,
    ("POST", "/api/v1/models/{name}/feedback"): PREDICT,  # on another token's predictions: writer (routes/feedback.py)
    ("GET", "/api/v1/models/{name}/predictions"): READ,
    ("GET", "/api/v1/models/{name}/monitor"): READ,
    ("PUT", "/api/v1/models/{name}/monitor"): ADMIN,
    ("POST", "/api/v1/models/{name}/monitor/run"): WRITE,
    ("GET", "/api/v1/models/{name}/monitor/runs"): READ,
    ("GET", "/api/v1/models/{name}/monitor/series"): READ,
    ("GET", "/api/v1/models/{name}/monitor/runs/{run_id}"): READ,
    ("GET", "/api/v1/jobs/{job_id}"): READ,
    ("GET", "/api/v1/alerts"): READ,
    ("POST", "/api/v1/alerts/{alert_id}/ack"): WRITE,
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): WRITE,
    ("GET", "/api/v1/causal/studies"): READ,
    ("GET", "/api/v1/causal/studies/{name}"): READ,
    ("GET", "/api/v1/causal/studies/{name}/estimates"): READ,
    ("POST", "/api/v1/causal/studies"): WRITE,
    ("POST", "/api/v1/causal/studies/{name}/estimate"): WRITE,
    ("POST", "/api/v1/causal/studies/{name}/whatif"): READ,  # stores nothing: a question, not a record
    ("POST", "/api/v1/causal/studies/{name}/refute"): WRITE,  # stores the refutation (or queues a job)
    ("GET", "/api/v1/causal/studies/{name}/results"): READ,
    ("POST", "/api/v1/causal/studies/{name}/rerun"): WRITE,
    ("GET", "/api/v1/causal/studies/{name}/compare"): READ,
    ("POST", "/api/v1/edge/builds"): WRITE,  # stores a build
    ("GET", "/api/v1/edge/builds"): READ,
    ("GET", "/api/v1/edge/builds/{build_id}"): READ,
    ("GET", "/api/v1/edge/builds/{build_id}/download"): READ,
    ("GET", "/api/v1/rl/twins"): READ,
    ("POST", "/api/v1/rl/twins"): WRITE,  # stores a twin
    ("GET", "/api/v1/rl/twins/{name}"): READ,
    ("POST", "/api/v1/rl/twins/{name}/baselines"): WRITE,  # stores the baselines
    ("GET", "/api/v1/rl/twins/{name}/results"): READ,
    ("POST", "/api/v1/rl/twins/{name}/train"): WRITE,
    ("GET", "/api/v1/genai/indexes"): READ,
    ("POST", "/api/v1/genai/indexes"): WRITE,  # stores an index
    ("GET", "/api/v1/genai/indexes/{name}"): READ,
    ("POST", "/api/v1/genai/models"): WRITE,  # queues a training job (registers a model)
    ("POST", "/api/v1/genai/tune"): WRITE,  # queues a tuning job (registers a model)
    (
        "POST",
        "/api/v1/genai/{index}/ask",
    ): PREDICT,  # a question to a model, as /predict  # stores an evaluation (and registers a model on request)
    ("POST", "/api/v1/causal/studies/{name}/cate"): WRITE,  # stores the heterogeneous effects
    ("POST", "/api/v1/causal/studies/{name}/policy"): WRITE,  # stores the policy (and registers a model on request)
    ("GET", "/metrics"): READ,
    ("GET", "/docs"): READ,
    ("GET", "/openapi.json"): READ,
    ("GET", "/readyz"): READ,
    ("GET", "/healthz"): OPEN,
    # the dashboard: pages for readers; login and logout for anyone
    ("GET", "/login"): OPEN,
    ("POST", "/login"): OPEN,
    ("GET", "/logout"): OPEN,
    ("POST", "/logout"): OPEN,
    ("GET", "/"): READ,
    ("GET", "/datasets"): READ,
    ("GET", "/datasets/{name}"): READ,
    ("GET", "/datasets/{name}/diff"): READ,
    ("GET", "/datasets/{name}/{version}"): READ,
    ("GET", "/runs"): READ,
    ("GET", "/runs/compare"): READ,
    ("GET", "/runs/{run_id}"): READ,
    ("GET", "/runs/{run_id}/artifacts/{path:path}"): READ,
    ("GET", "/models"): READ,
    ("GET", "/models/{name}"): READ,
    ("GET", "/models/{name}/explain"): READ,
    ("GET", "/models/{name}/monitoring"): READ,
    ("GET", "/studies"): READ,
    ("GET", "/studies/{name}"): READ,
    ("GET", "/edge"): READ,
    ("GET", "/twins"): READ,
    ("GET", "/twins/{name}"): READ,
    ("GET", "/genai"): READ,
    ("GET", "/genai/models/{name}"): READ,
    ("GET", "/genai/indexes/{name}"): READ,
    ("GET", "/alerts"): READ,
    ("MOUNT", "/static"): OPEN,  # the dashboard's CSS, JS and icons
    ("MOUNT", "/static-offline-docs"): OPEN,  # Swagger UI's files (the spec itself is /openapi.json)
}
_PARAMS = {
    "name": "tumor",
    "ref": "tumor@1",
    "other": "cancer@1",
    "run_id": "0123456789abcdef",
    "alias": "challenger",
    "alert_id": "1",
    "job_id": "1",
    "build_id": "1",
    "index": "docs",
    "version": "1",
    "path": "notes.txt",
}


def _route_request(method: str, path: str, token: str | None) -> tuple[str, dict[str, Any]]:
    """A concrete request for a declared route: its path filled in, a body of the route's kind."""
    url = re.sub(r"{(\w+)(:\w+)?}", lambda m: _PARAMS[m.group(1)], path)
    kwargs: dict[str, Any] = {"headers": {} if token is None else {"Authorization": f"Bearer {token}"}}
    if path in ("/login", "/logout") and method == "POST":
        kwargs["data"] = {"token": token or ""}
    elif path in ("/api/v1/datasets/{name}", "/api/v1/models/{name}/predict/batch"):
        kwargs.update(content=b"a\n1\n", headers={**kwargs["headers"], "content-type": "text/csv"})
    elif path == "/api/v1/models/{name}/versions":
        kwargs.update(content=b"x", headers={**kwargs["headers"], "content-type": "application/octet-stream"})
    elif method in ("POST", "PUT", "DELETE") and not path.endswith(("/run", "/ack", "/resolve")) and method != "DELETE":
        kwargs["json"] = {}
    return url, kwargs


def test_every_route_has_a_decided_role(app: Any) -> None:
    routes = set(leaf_routes(app))
    assert routes == set(ROUTE_ROLES), (
        "Decide the role of every route in ROUTE_ROLES (and the README's role table): "
        f"undecided {sorted(routes - set(ROUTE_ROLES))}, gone {sorted(set(ROUTE_ROLES) - routes)}"
    )


@pytest.mark.parametrize("role", [*ROLES, None])
def test_every_route_answers_exactly_the_roles_it_may(client: Any, tokens: dict[str, str], role: str | None) -> None:
    """Every route x every role: refused roles get 403, allowed ones pass auth; no token is 401 (pages: /login)."""
    token = None if role is None else tokens[role]
    for (method, path), allowed in ROUTE_ROLES.items():
        if method == "MOUNT":
            continue
        url, kwargs = _route_request(method, path, token)
        r = client.request(method, url, follow_redirects=False, **kwargs)
        where = f"{method} {path} as {role}: {r.status_code} {r.text[:200]}"
        if allowed == OPEN:  # (POST /login without a token is a 401 page: "That token is unknown")
            assert r.status_code != 403 and (role is not None or path == "/login" or r.status_code != 401), where
        elif role is None:
            assert r.status_code == 401 or (r.status_code == 303 and r.headers["location"].startswith("/login")), where
        elif role in allowed:
            assert r.status_code not in (401, 403), where
        else:
            assert r.status_code == 403, where


def _calls(cancer: pd.DataFrame, records: Any) -> dict[str, tuple[str, str, dict[str, Any], frozenset[str]]]:
    """kind -> (method, path, request kwargs, roles allowed): valid requests, which allowed roles must complete."""
    csv = cancer.head(20).to_csv(index=False)
    return {
        "read-datasets": ("GET", "/api/v1/datasets", {}, READ),
        "download-dataset": ("GET", "/api/v1/datasets/cancer@1/download", {}, READ),
        "read-runs": ("GET", "/api/v1/runs/search?filter=metrics.accuracy%20%3E%200.5", {}, READ),
        "read-model": ("GET", "/api/v1/models/tumor@champion", {}, READ),
        "download-artifact": ("GET", "/api/v1/models/tumor@1/artifact", {}, READ),
        "read-prediction-log": ("GET", "/api/v1/models/tumor/predictions", {}, READ),
        "read-metrics": ("GET", "/metrics", {}, READ),
        "read-docs": ("GET", "/openapi.json", {}, READ),
        "read-readiness": ("GET", "/readyz", {}, READ),
        "dashboard": ("GET", "/models/tumor", {}, READ),
        "predict": ("POST", "/api/v1/models/tumor/predict", {"json": records(cancer, 1)}, PREDICT),
        "predict-batch": (
            "POST",
            "/api/v1/models/tumor/predict/batch",
            {
                "content": cancer.drop(columns="target").head(5).to_csv(index=False),
                "headers": {"content-type": "text/csv"},
            },
            PREDICT,
        ),
        "write-dataset": (
            "POST",
            "/api/v1/datasets/uploaded",
            {"content": csv, "headers": {"content-type": "text/csv"}},
            WRITE,
        ),
        "write-run": ("POST", "/api/v1/runs", {"json": {"experiment": "remote"}}, WRITE),
        "admin-alias": ("PUT", "/api/v1/models/tumor/aliases/champion", {"json": {"version": 2}}, ADMIN),
        "read-monitor": ("GET", "/api/v1/models/tumor/monitor/series?metric=psi", {}, READ),
        "read-alerts": ("GET", "/api/v1/alerts", {}, READ),
        "admin-monitor": ("PUT", "/api/v1/models/tumor/monitor", {"json": {"window_rows": 500}}, ADMIN),
        "run-monitor": ("POST", "/api/v1/models/tumor/monitor/run", {}, WRITE),
    }


def _send(client: Any, method: str, path: str, kwargs: dict[str, Any], token: str | None) -> int:
    kw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return int(client.request(method, path, headers=headers, follow_redirects=False, **kw).status_code)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_completes_exactly_the_calls_it_may(
    client: Any, tokens: dict[str, str], cancer: pd.DataFrame, records: Any, role: str
) -> None:
    for kind, (method, path, kwargs, allowed) in _calls(cancer, records).items():
        status = _send(client, method, path, kwargs, tokens[role])
        if role in allowed:
            assert status < 400, f"{role} should reach {kind}, got {status}"
        else:
            assert status == 403, f"{role} must be refused {kind} with 403, got {status}"


def test_missing_or_wrong_token_is_401_on_every_kind_of_endpoint(
    client: Any, tokens: dict[str, str], cancer: pd.DataFrame, records: Any
) -> None:
    for kind, (method, path, kwargs, _) in _calls(cancer, records).items():
        if kind == "dashboard":
            continue  # pages send the browser to /login instead
        assert _send(client, method, path, kwargs, None) == 401, kind
        assert _send(client, method, path, kwargs, "keel_deadbeef_wrong") == 401, kind
        assert _send(client, method, path, kwargs, "not-even-a-keel-token") == 401, kind


def test_health_stays_open_but_readiness_and_docs_need_a_token(client: Any, tokens: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    for path in ("/readyz", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": f"Bearer {tokens['reader']}"}).status_code == 200, path
    ready = client.get("/readyz", headers={"Authorization": f"Bearer {tokens['reader']}"}).json()
    assert ready["status"] == "ready" and "schema" in ready


def test_without_tokens_docs_and_readiness_stay_open_to_local_clients(served_ws: keel.Workspace) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(served_ws), base_url="http://127.0.0.1") as local:
        assert local.get("/readyz").json()["status"] == "ready"
        assert "swagger-ui-bundle.js" in local.get("/docs").text
        assert local.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
        assert "/api/v1/models/{name}/predict" in local.get("/openapi.json").json()["paths"]


def test_revoked_token_is_refused(client: Any, served_ws: keel.Workspace, tokens: dict[str, str]) -> None:
    h = {"Authorization": f"Bearer {tokens['reader']}"}
    assert client.get("/api/v1/models", headers=h).status_code == 200
    served_ws.tokens.revoke("t-reader")
    assert client.get("/api/v1/models", headers=h).status_code == 401


def test_without_tokens_local_clients_are_admin_and_remote_clients_refused(
    served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    app = create_app(served_ws)
    with TestClient(app, client=("127.0.0.1", 5000), base_url="http://127.0.0.1") as local:
        assert local.put("/api/v1/models/tumor/aliases/champion", json={"version": 2}).status_code == 200
    with TestClient(app, client=("203.0.113.9", 5000), base_url="http://127.0.0.1") as remote:
        r = remote.get("/api/v1/models")
        assert r.status_code == 403 and "local" in r.json()["error"]["detail"]


def test_tokens_are_stored_hashed(served_ws: keel.Workspace) -> None:
    from sqlalchemy import text

    token, record = served_ws.tokens.create("ci", "writer")
    with served_ws._meta.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_tokens")).mappings().all()
    dumped = repr(rows)
    assert token not in dumped and token.split("_", 2)[2] not in dumped
    assert record.prefix in dumped
    assert served_ws.tokens.authenticate(token).name == "ci"  # type: ignore[union-attr]


def test_binding_a_public_address_needs_tokens(served_ws: keel.Workspace) -> None:
    from keel.server import check_bind

    assert check_bind(served_ws, "127.0.0.1") is False
    with pytest.raises(ConfigError, match="needs API tokens"):
        check_bind(served_ws, "0.0.0.0")
    served_ws.tokens.create("ops", "admin")
    assert check_bind(served_ws, "0.0.0.0") is True


def test_unknown_role_is_a_clear_error(served_ws: keel.Workspace) -> None:
    with pytest.raises(keel.InvalidInputError, match="Unknown role 'root'"):
        served_ws.tokens.create("x", "root")


def test_dataset_names_from_requests_never_reach_the_file_system(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    csv = cancer.head(5).to_csv(index=False)
    for name in ("..%2F..%2Fetc", "a%2Fb", ".hidden"):
        r = client.post(f"/api/v1/datasets/{name}", content=csv, headers={"content-type": "text/csv"})
        assert r.status_code in (400, 404, 405, 415), (name, r.status_code)
    assert [d.name for d in served_ws.datasets.list()] == ["cancer"]


def test_token_checks_answer_from_the_cache_but_still_check_every_request(
    served_ws: keel.Workspace, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    asked: list[str] = []
    authenticate = served_ws.tokens.authenticate
    monkeypatch.setattr(served_ws.tokens, "authenticate", lambda token: asked.append(token) or authenticate(token))
    app = create_app(served_ws, token_cache_s=60.0)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for _ in range(3):
            assert c.get("/api/v1/models", headers={"Authorization": f"Bearer {tokens['reader']}"}).status_code == 200
            assert c.get("/api/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get("/api/v1/models").status_code == 401
            assert (
                c.post(
                    "/api/v1/models/tumor/predict",
                    json={"records": [{}]},
                    headers={"Authorization": f"Bearer {tokens['reader']}"},
                ).status_code
                == 403
            )
    assert asked == [tokens["reader"], "wrong"]  # the store is asked once per token, then the cache answers
