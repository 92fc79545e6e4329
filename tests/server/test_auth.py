"""Every role against every kind of endpoint; no token, a wrong token, remote clients."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import keel
from keel.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROLES = ["reader", "predictor", "writer", "admin"]


def _calls(cancer: pd.DataFrame, records: Any) -> dict[str, tuple[str, str, dict[str, Any], str]]:
    """kind -> (method, path, request kwargs, lowest role allowed)."""
    csv = cancer.head(20).to_csv(index=False)
    return {
        "read-datasets": ("GET", "/api/v1/datasets", {}, "reader"),
        "read-runs": ("GET", "/api/v1/runs/search?filter=metrics.accuracy%20%3E%200.5", {}, "reader"),
        "read-model": ("GET", "/api/v1/models/tumor@champion", {}, "reader"),
        "read-metrics": ("GET", "/metrics", {}, "reader"),
        "predict": ("POST", "/api/v1/models/tumor/predict", {"json": records(cancer, 1)}, "predictor"),
        "predict-batch": ("POST", "/api/v1/models/tumor/predict/batch",
                          {"content": cancer.drop(columns="target").head(5).to_csv(index=False),
                           "headers": {"content-type": "text/csv"}}, "predictor"),  # fmt: skip
        "write-dataset": ("POST", "/api/v1/datasets/uploaded", {"content": csv, "headers": {"content-type": "text/csv"}}, "writer"),
        "write-run": ("POST", "/api/v1/runs", {"json": {"experiment": "remote"}}, "writer"),
        "admin-alias": ("PUT", "/api/v1/models/tumor/aliases/champion", {"json": {"version": 2}}, "admin"),
        "read-monitor": ("GET", "/api/v1/models/tumor/monitor/series?metric=psi", {}, "reader"),
        "read-alerts": ("GET", "/api/v1/alerts", {}, "reader"),
        "run-monitor": ("POST", "/api/v1/models/tumor/monitor/run", {}, "writer"),
        "admin-monitor": ("PUT", "/api/v1/models/tumor/monitor", {"json": {"window_rows": 500}}, "admin"),
    }


def _send(client: Any, method: str, path: str, kwargs: dict[str, Any], token: str | None) -> int:
    kw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return int(client.request(method, path, headers=headers, **kw).status_code)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_the_endpoints_it_may(client: Any, tokens: dict[str, str], cancer: pd.DataFrame, records: Any, role: str) -> None:
    for kind, (method, path, kwargs, lowest) in _calls(cancer, records).items():
        status = _send(client, method, path, kwargs, tokens[role])
        if ROLES.index(role) >= ROLES.index(lowest):
            assert status < 400, f"{role} should reach {kind}, got {status}"
        else:
            assert status == 403, f"{role} must be refused {kind} with 403, got {status}"


def test_missing_or_wrong_token_is_401_on_every_kind_of_endpoint(client: Any, tokens: dict[str, str], cancer: pd.DataFrame, records: Any) -> None:
    for kind, (method, path, kwargs, _) in _calls(cancer, records).items():
        assert _send(client, method, path, kwargs, None) == 401, kind
        assert _send(client, method, path, kwargs, "keel_deadbeef_wrong") == 401, kind
        assert _send(client, method, path, kwargs, "not-even-a-keel-token") == 401, kind


def test_health_endpoints_stay_open_for_probes(client: Any, tokens: dict[str, str]) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["status"] == "ready"


def test_revoked_token_is_refused(client: Any, served_ws: keel.Workspace, tokens: dict[str, str]) -> None:
    h = {"Authorization": f"Bearer {tokens['reader']}"}
    assert client.get("/api/v1/models", headers=h).status_code == 200
    served_ws.tokens.revoke("t-reader")
    assert client.get("/api/v1/models", headers=h).status_code == 401


def test_without_tokens_local_clients_are_admin_and_remote_clients_refused(served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    app = create_app(served_ws)
    with TestClient(app, client=("127.0.0.1", 5000)) as local:
        assert local.put("/api/v1/models/tumor/aliases/champion", json={"version": 2}).status_code == 200
    with TestClient(app, client=("203.0.113.9", 5000)) as remote:
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


def test_dataset_names_from_requests_never_reach_the_file_system(client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame) -> None:
    csv = cancer.head(5).to_csv(index=False)
    for name in ("..%2F..%2Fetc", "a%2Fb", ".hidden"):
        r = client.post(f"/api/v1/datasets/{name}", content=csv, headers={"content-type": "text/csv"})
        assert r.status_code in (400, 404, 405), (name, r.status_code)
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
    with TestClient(app) as c:
        for _ in range(3):
            assert c.get("/api/v1/models", headers={"Authorization": f"Bearer {tokens['reader']}"}).status_code == 200
            assert c.get("/api/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get("/api/v1/models").status_code == 401
            assert c.post("/api/v1/models/tumor/predict", json={"records": [{}]},
                          headers={"Authorization": f"Bearer {tokens['reader']}"}).status_code == 403  # fmt: skip
    assert asked == [tokens["reader"], "wrong"]  # the store is asked once per token, then the cache answers
