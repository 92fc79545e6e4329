"""The request guard: Host names (DNS rebinding), cross-site writes, media types, body limits before
reading, and the catch-all that keeps a keep-alive connection open after a 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from liveserver import live_server
from routetools import leaf_routes

import keel
from keel.server.guard import HostPolicy, Limits, body_rule
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EVIL = "http://evil.example"


def _client(app: Any, base_url: str = "http://127.0.0.1") -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=base_url)


def _open_app(ws: keel.Workspace, **kwargs: Any) -> Any:
    from keel.server import create_app

    return create_app(ws, token_cache_s=0.0, **kwargs)


# -- Host: DNS rebinding -----------------------------------------------------------------------------
def test_a_foreign_host_is_refused_before_anything_runs(served_ws: keel.Workspace, cancer: pd.DataFrame) -> None:
    csv = cancer.head(5).to_csv(index=False)
    with _client(_open_app(served_ws), base_url="http://rebind.evil.example:8080") as c:
        r = c.get("/api/v1/models")
        assert r.status_code == 421 and "rebind.evil.example" in r.json()["error"]["detail"]
        assert r.json()["error"]["field"] == "host"
        assert c.post("/api/v1/datasets/x", content=csv, headers={"content-type": "text/csv"}).status_code == 421
        assert c.get("/").status_code == 421  # the dashboard too
    assert [d.name for d in served_ws.datasets.list()] == ["cancer"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:9", "[::1]:8080", "127.0.0.2"])
def test_loopback_names_are_answered_on_any_port(served_ws: keel.Workspace, host: str) -> None:
    with _client(_open_app(served_ws)) as c:
        assert c.get("/api/v1/models", headers={"host": host}).status_code == 200


def test_configured_names_are_answered(served_ws: keel.Workspace, settings: keel.Settings) -> None:
    with _client(_open_app(served_ws, allowed_hosts="keel.lan, Models.Example.")) as c:
        assert c.get("/api/v1/models", headers={"host": "keel.lan:8080"}).status_code == 200
        assert c.get("/api/v1/models", headers={"host": "models.example"}).status_code == 200
        assert c.get("/api/v1/models", headers={"host": "other.example"}).status_code == 421
    # The default comes from the server_allowed_hosts setting (KEEL_SERVER_ALLOWED_HOSTS).
    ws = keel.Workspace(settings=settings.with_changes(home=served_ws.settings.home, server_allowed_hosts="keel.lan"))
    with _client(_open_app(ws)) as c:
        assert c.get("/api/v1/models", headers={"host": "keel.lan"}).status_code == 200
        assert c.get("/api/v1/models", headers={"host": "evil.example"}).status_code == 421
    with _client(_open_app(served_ws, allowed_hosts="*")) as c:
        assert c.get("/api/v1/models", headers={"host": "anything.example"}).status_code == 200


def test_host_policy_of_each_kind_of_bind() -> None:
    import socket

    loopback = HostPolicy.for_bind("127.0.0.1")
    assert loopback.allows("localhost") and loopback.allows("[::1]") and loopback.allows("127.0.0.1")
    assert not loopback.allows("rebind.evil.example") and not loopback.allows("192.168.1.5")
    assert not loopback.allows(socket.gethostname().lower())  # a loopback server answers loopback names only
    assert HostPolicy.for_bind(None).names == loopback.names  # create_app without a bind: loopback
    specific = HostPolicy.for_bind("192.168.1.5")
    assert specific.allows("192.168.1.5") and specific.allows(socket.gethostname().lower())
    assert not specific.allows("192.168.1.6") and not specific.allows("rebind.evil.example")
    v6 = HostPolicy.for_bind("fd00::5")
    assert v6.allows("[fd00::5]")
    wildcard = HostPolicy.for_bind("0.0.0.0", "keel.corp.example")
    assert wildcard.allows("10.1.2.3") and wildcard.allows("[fe80::1]") and wildcard.allows("keel.corp.example")
    assert not wildcard.allows("rebind.evil.example")  # a DNS rebinding attack always carries a name
    assert HostPolicy.for_bind("0.0.0.0", "*").allows("rebind.evil.example")


def test_token_mode_also_refuses_foreign_hosts_and_cross_site_writes(client: Any, tokens: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.get("/api/v1/models", headers={**admin, "host": "rebind.evil.example"}).status_code == 421
    r = client.put("/api/v1/models/tumor/aliases/champion", json={"version": 2}, headers={**admin, "origin": EVIL})
    assert r.status_code == 403 and "Cross-site" in r.json()["error"]["detail"]
    assert client.put("/api/v1/models/tumor/aliases/champion", json={"version": 2}, headers=admin).status_code == 200


# -- cross-site writes -------------------------------------------------------------------------------
def test_the_reported_cross_site_upload_is_refused_and_stores_nothing(
    served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    csv = cancer.head(5).to_csv(index=False)
    with _client(_open_app(served_ws)) as c:
        r = c.post("/api/v1/datasets/x?format=csv", content=csv, headers={"content-type": "text/plain", "origin": EVIL})
        assert r.status_code == 403 and r.json()["error"]["field"] == "origin"
        # Without the Origin header (an old browser, a form from a file:// page) text/plain is still refused.
        r = c.post("/api/v1/datasets/x?format=csv", content=csv, headers={"content-type": "text/plain"})
        assert r.status_code == 415 and "text/plain" in r.json()["error"]["detail"]
    assert [d.name for d in served_ws.datasets.list()] == ["cancer"]


def test_body_less_writes_from_another_site_are_refused(served_ws: keel.Workspace) -> None:
    served_ws.monitoring.watch("tumor", window_rows=10, reference="cancer@1")
    with _client(_open_app(served_ws)) as c:
        for headers in (
            {"origin": EVIL},
            {"origin": "null"},
            {"origin": "http://127.0.0.1:3000"},
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},
        ):
            assert c.post("/api/v1/models/tumor/monitor/run", headers=headers).status_code == 403, headers
            assert c.post("/api/v1/alerts/1/ack", headers=headers).status_code == 403, headers
            assert c.delete("/api/v1/models/tumor/aliases/champion", headers=headers).status_code == 403, headers
    assert served_ws.monitoring.runs("tumor") == []
    assert served_ws.models.get("tumor@champion").version == 1


def test_same_origin_writes_and_plain_clients_pass(
    served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    body = {"records": records(cancer, 1)}
    with _client(_open_app(served_ws)) as c:
        same = {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}
        assert c.post("/api/v1/models/tumor/predict", json=body, headers=same).status_code == 200
        assert c.post("/api/v1/models/tumor/predict", json=body, headers={"sec-fetch-site": "none"}).status_code == 200
        assert c.post("/api/v1/models/tumor/predict", json=body).status_code == 200  # curl, httpx, keel.Client
        # GETs are never refused for their origin: pages may link to the API.
        assert c.get("/api/v1/models", headers={"origin": EVIL, "sec-fetch-site": "cross-site"}).status_code == 200
        # The same server on another port is another origin.
        assert (
            c.post("/api/v1/models/tumor/predict", json=body, headers={"origin": "http://127.0.0.1:8081"}).status_code
            == 403
        )


def test_the_dashboard_login_form_and_alias_fetch_keep_working(
    served_ws: keel.Workspace, tokens: dict[str, str]
) -> None:
    with _client(_open_app(served_ws)) as c:
        browser = {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}
        r = c.post(
            "/login", data={"token": tokens["admin"], "next": "/models"}, headers=browser, follow_redirects=False
        )
        assert r.status_code == 303 and r.headers["location"] == "/models" and "keel_token" in r.cookies
        r = c.put("/api/v1/models/tumor/aliases/champion", json={"version": 2, "reason": "ui"}, headers=browser)
        assert r.status_code == 200
        assert c.post("/logout", headers=browser, follow_redirects=False).status_code == 303
        # Another site cannot log the browser in with its own token (login CSRF).
        r = c.post("/login", data={"token": tokens["admin"]}, headers={"origin": EVIL}, follow_redirects=False)
        assert r.status_code == 403


# -- media types -------------------------------------------------------------------------------------
def test_a_text_plain_prediction_is_refused_and_never_logged(
    served_ws: keel.Workspace, cancer: pd.DataFrame, records: Any
) -> None:
    import json

    app = _open_app(served_ws)
    with _client(app) as c:
        r = c.post(
            "/api/v1/models/tumor/predict",
            content=json.dumps(records(cancer, 3)),
            headers={"content-type": "text/plain"},
        )
        assert r.status_code == 415 and "application/json" in r.json()["error"]["detail"]
        r = c.post("/api/v1/models/tumor/predict", data={"records": "x"})  # a form
        assert r.status_code == 415
        state_of(app).predlog.flush()
        assert len(served_ws.predictions.window("tumor", last_rows=100)) == 0


@pytest.mark.parametrize(
    ("method", "path", "ctype", "status"),
    [
        ("POST", "/api/v1/runs", "text/plain", 415),
        ("POST", "/api/v1/runs", "application/x-www-form-urlencoded", 415),
        ("POST", "/api/v1/runs", None, 415),  # a body needs its type
        ("POST", "/api/v1/runs", "application/json; charset=utf-8", 201),
        ("PUT", "/api/v1/models/tumor/monitor", "multipart/form-data; boundary=x", 415),
        ("POST", "/api/v1/models/tumor/feedback", "text/plain", 415),
        ("POST", "/api/v1/models/tumor/versions", "text/plain", 415),
        ("POST", "/api/v1/models/tumor/predict/batch", "application/x-www-form-urlencoded", 415),
    ],
)
def test_each_write_needs_its_media_type(client: Any, method: str, path: str, ctype: str | None, status: int) -> None:
    body = b'{"experiment": "e"}' if path == "/api/v1/runs" else b"{}"
    headers = {} if ctype is None else {"content-type": ctype}
    r = client.request(method, path, content=body, headers=headers)
    assert r.status_code == status, r.text
    if status == 415:
        assert r.json()["error"]["field"] == "content-type"


def test_uploads_take_their_declared_types_or_none_with_a_format(
    client: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    csv = cancer.head(5).to_csv(index=False)
    assert client.post("/api/v1/datasets/a?format=csv", content=csv).status_code == 201  # keel.Client sends no type
    assert (
        client.post("/api/v1/datasets/b", content=csv, headers={"content-type": "text/csv; charset=utf-8"}).status_code
        == 201
    )
    assert (
        client.post(
            "/api/v1/datasets/c?format=csv", content=csv, headers={"content-type": "application/octet-stream"}
        ).status_code
        == 201
    )
    assert {"a", "b", "c"} <= {d.name for d in served_ws.datasets.list()}


# -- body limits -------------------------------------------------------------------------------------
def _scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    raw = [(b"host", b"127.0.0.1:8080"), *((k.lower().encode(), v.encode()) for k, v in headers.items())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


def _call(app: Any, scope: dict[str, Any], chunks: Iterator[bytes]) -> tuple[int, dict[str, Any], int]:
    """Run one request through the ASGI app: (status, JSON body, chunks the app read)."""
    import json

    read = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], json.loads(body), read


def _endless(chunks: int = 128, chunk_bytes: int = 64 << 10) -> Iterator[bytes]:
    """An 8 MiB body (past every limit of these tests) in 64 KiB chunks, counted as they are read."""
    chunk = b"[" + b" " * (chunk_bytes - 1)
    for _ in range(chunks):
        yield chunk


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/api/v1/models/tumor/predict", 2 << 20),
        ("/api/v1/models/tumor/feedback", 1 << 20),
        ("/api/v1/runs/abc/metrics", 1 << 20),
        ("/api/v1/runs/abc/params", 1 << 20),
    ],
)
def test_a_streamed_body_stops_with_413_just_past_the_limit(served_ws: keel.Workspace, path: str, limit: int) -> None:
    app = _open_app(served_ws, max_json_bytes=2 << 20, max_small_json_bytes=1 << 20)
    status, body, read = _call(
        app, _scope("POST", path, {"content-type": "application/json", "transfer-encoding": "chunked"}), _endless()
    )
    assert status == 413 and str(limit) in body["error"]["detail"], body
    assert read == limit // (64 << 10) + 1  # it stopped at the first chunk past the limit


def test_a_declared_length_past_the_limit_is_413_before_the_body_is_read(served_ws: keel.Workspace) -> None:
    app = _open_app(served_ws)
    for path, ctype, limit in [
        ("/api/v1/models/tumor/predict", "application/json", 16 << 20),
        ("/api/v1/models/tumor/monitor", "application/json", 1 << 20),
        ("/api/v1/datasets/big", "text/csv", 2 << 30),
    ]:
        method = "PUT" if path.endswith("/monitor") else "POST"
        scope = _scope(method, path, {"content-type": ctype, "content-length": str(limit + 1)})
        status, body, read = _call(app, scope, _endless())
        assert (status, read) == (413, 0), (path, body)
        assert str(limit) in body["error"]["detail"]


def test_an_upload_streamed_past_its_limit_stores_nothing(served_ws: keel.Workspace, tmp_path: Path) -> None:
    import tempfile

    app = _open_app(served_ws, max_upload_bytes=1 << 20)
    before = set(Path(tempfile.gettempdir()).glob("keel-upload-*"))
    scope = _scope("POST", "/api/v1/datasets/big", {"content-type": "text/csv", "transfer-encoding": "chunked"})
    status, body, read = _call(app, scope, _endless())
    assert status == 413 and str(1 << 20) in body["error"]["detail"] and read == 17
    assert [d.name for d in served_ws.datasets.list()] == ["cancer"]
    assert set(Path(tempfile.gettempdir()).glob("keel-upload-*")) == before  # the spooled part was deleted


def test_every_write_route_has_a_decided_body_rule(app: Any) -> None:
    expected = {
        ("POST", "/api/v1/datasets/{name}"): ("upload", "max_upload_bytes"),
        ("POST", "/api/v1/models/{name}/versions"): ("upload", "max_upload_bytes"),
        ("POST", "/api/v1/models/{name}/predict/batch"): ("upload", "max_upload_bytes"),
        ("POST", "/api/v1/models/{name}/predict"): ("json", "max_json_bytes"),
        ("POST", "/login"): ("form", "max_small_json_bytes"),
        ("POST", "/logout"): ("form", "max_small_json_bytes"),
        **{
            key: ("json", "max_small_json_bytes")
            for key in [
                ("POST", "/api/v1/runs"),
                ("POST", "/api/v1/runs/{run_id}/params"),
                ("POST", "/api/v1/runs/{run_id}/tags"),
                ("POST", "/api/v1/runs/{run_id}/metrics"),
                ("POST", "/api/v1/runs/{run_id}/inputs"),
                ("POST", "/api/v1/runs/{run_id}/end"),
                ("PUT", "/api/v1/models/{name}/aliases/{alias}"),
                ("DELETE", "/api/v1/models/{name}/aliases/{alias}"),
                ("POST", "/api/v1/models/{name}/feedback"),
                ("PUT", "/api/v1/models/{name}/monitor"),
                ("POST", "/api/v1/models/{name}/monitor/run"),
                ("POST", "/api/v1/alerts/{alert_id}/ack"),
                ("POST", "/api/v1/alerts/{alert_id}/resolve"),
                ("POST", "/api/v1/causal/studies"),
                ("POST", "/api/v1/causal/studies/{name}/estimate"),
                ("POST", "/api/v1/causal/studies/{name}/whatif"),
                ("POST", "/api/v1/causal/studies/{name}/refute"),
                ("POST", "/api/v1/causal/studies/{name}/rerun"),
                ("POST", "/api/v1/causal/studies/{name}/policy"),
                ("POST", "/api/v1/causal/studies/{name}/cate"),
                ("POST", "/api/v1/edge/builds"),
                ("POST", "/api/v1/rl/twins"),
                ("POST", "/api/v1/rl/twins/{name}/baselines"),
                ("POST", "/api/v1/rl/twins/{name}/train"),
                ("POST", "/api/v1/genai/indexes"),
                ("POST", "/api/v1/genai/models"),
                ("POST", "/api/v1/genai/tune"),
                ("POST", "/api/v1/genai/{index}/ask"),
                ("POST", "/api/v1/models/{name}/generate"),
            ]
        },
    }
    kinds = {
        "application/json": "json",
        "application/octet-stream": "upload",
        "application/x-www-form-urlencoded": "form",
    }
    writes = {(m, p) for m, p in leaf_routes(app) if m not in ("GET", "HEAD", "OPTIONS", "MOUNT")}
    assert writes == set(expected), "decide the body rule (keel.server.guard) of: " + repr(writes ^ set(expected))
    for (method, path), (kind, setting) in expected.items():
        rule = body_rule(method, path, Limits())
        assert rule.setting == setting and kind == next(
            v for k, v in kinds.items() if k.encode() in rule.media_types
        ), path


# -- a 500 keeps the connection ----------------------------------------------------------------------
@pytest.fixture
def live(app: Any) -> Iterator[str]:
    """The app under a real uvicorn server on 127.0.0.1 (a free port), in a thread."""
    with live_server(app, lifespan="off", start_timeout=20) as server:
        yield server.url


def test_a_500_answers_json_and_keeps_the_keep_alive_connection(
    app: Any, live: str, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx
    from starlette.background import BackgroundTask
    from starlette.responses import Response

    def boom() -> None:
        raise RuntimeError("a bug in a route")

    def late() -> Response:  # fails after the answer was sent: only the log can tell
        return Response("ok", background=BackgroundTask(boom))

    app.add_api_route("/boom", boom)
    app.add_api_route("/late", late)

    def local_port(r: httpx.Response) -> int:
        return int(r.extensions["network_stream"].get_extra_info("client_addr")[1])

    with caplog.at_level(logging.ERROR, logger="keel.server.guard"), httpx.Client(base_url=live, timeout=10) as http:
        first = http.get("/healthz")
        failed = http.get("/boom")
        assert failed.status_code == 500 and failed.json()["error"]["type"] == "HTTPError"
        assert failed.headers.get("connection", "").lower() != "close"
        assert failed.headers["x-request-id"] in failed.json()["error"]["detail"]
        after = http.get("/api/v1/models")
        assert after.status_code == 200
        assert local_port(first) == local_port(failed) == local_port(after)  # one connection throughout
        assert http.get("/late").text == "ok"
        assert http.get("/healthz").status_code == 200 and local_port(http.get("/healthz")) == local_port(first)
    assert (
        sum("a bug in a route" in r.getMessage() or "a bug in a route" in str(r.exc_info) for r in caplog.records) >= 2
    )


def test_serve_hands_the_bound_address_and_allowed_names_to_the_app(
    served_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.server.run as run

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_create_app(ws: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(run, "create_app", fake_create_app)
    served_ws.tokens.create("ops", "admin")
    with pytest.raises(Stop):
        run.serve(served_ws, host="0.0.0.0", port=0, allowed_hosts="keel.lan")
    assert seen["bind_host"] == "0.0.0.0" and seen["allowed_hosts"] == "keel.lan" and seen["require_auth"] is True
