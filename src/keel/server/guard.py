"""Pure ASGI guards in front of every route, and the catch-all that keeps the connection open.

`RequestGuard` decides from the headers alone, before a route runs or a body byte is read:

- Host: the name must be one this server answers to (`HostPolicy`): loopback names, the bound
  address, configured names (`KEEL_SERVER_ALLOWED_HOSTS`). A page on a foreign name that
  DNS-rebinds to 127.0.0.1 would otherwise be same-origin with the server: it gets 421.
- Writes (every method but GET, HEAD, OPTIONS) from a browser must come from this server's own
  pages: an `Origin` whose host:port is not the request's Host, or `Sec-Fetch-Site: cross-site`
  or `same-site` (another port of the same machine is same-site), is 403. Clients that send
  neither header (curl, httpx, `keel.Client`) pass; tokens, where they exist, still apply.
- The body of a write has the route's media type (`BodyRule`): JSON routes take
  `application/json`, uploads their table or artifact types, the dashboard's login form its form
  types. Otherwise 415, so a cross-site `text/plain` or form post cannot reach a JSON route.
- The body fits the route's byte limit: a larger `Content-Length` is 413 before the route runs;
  a body without one (chunked) is counted as it streams and stops with 413 once past the limit.

`CatchAll` turns an exception a route lets escape into a logged 500 JSON answer, without
re-raising it: re-raised, uvicorn closes the keep-alive connection and the client's next
request on it fails too.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from keel.server.observability import request_id_var
from keel.server.uploads import TABLE_TYPES

logger = logging.getLogger(__name__)

__all__ = ["BodyRule", "CatchAll", "HostPolicy", "Limits", "RequestGuard", "body_rule"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})

JSON_TYPES = frozenset({b"application/json"})
FORM_TYPES = frozenset({b"application/x-www-form-urlencoded", b"multipart/form-data"})
OCTET_TYPES = frozenset({b"application/octet-stream"})
_TABLE_UPLOAD_TYPES = frozenset(t.encode() for t in TABLE_TYPES) | OCTET_TYPES

# Write routes whose body is not small JSON, by (method, path template). Every other write route
# takes JSON up to `Limits.small_json`; tests/server/test_guard.py lists each write route's rule,
# so a new route fails the tests until its body is decided.
_UPLOADS: Mapping[tuple[str, str], tuple[str, frozenset[bytes]]] = MappingProxyType(
    {
        ("POST", "/api/v1/datasets/{name}"): ("a CSV, TSV or Parquet file", _TABLE_UPLOAD_TYPES),
        ("POST", "/api/v1/models/{name}/predict/batch"): ("a CSV, TSV or Parquet file", _TABLE_UPLOAD_TYPES),
        ("POST", "/api/v1/models/{name}/versions"): ("a model artifact", OCTET_TYPES),
    }
)
_BULK_JSON = frozenset({("POST", "/api/v1/models/{name}/predict")})
_FORMS = frozenset({("POST", "/login"), ("POST", "/logout")})  # the dashboard's own forms


@dataclass(frozen=True)
class Limits:
    """Request body limits in bytes, as create_app takes them."""

    upload: int = 2 << 30  # max_upload_bytes: dataset uploads, batch scoring, model artifacts
    json: int = 16 << 20  # max_json_bytes: /predict
    small_json: int = 1 << 20  # max_small_json_bytes: every other JSON write (runs, feedback, monitor, aliases)


@dataclass(frozen=True)
class BodyRule:
    """What the body of one write route may be."""

    what: str  # for messages: "JSON", "a model artifact", ...
    media_types: frozenset[bytes]
    limit: int
    setting: str  # the create_app parameter that sets the limit, for the 413 message
    bare: bool = False  # a body without Content-Type is accepted (uploads say ?format= instead)

    def media_type_ok(self, media_type: bytes | None, has_body: bool) -> bool:
        if media_type is None:
            return self.bare or not has_body
        return media_type in self.media_types or (self.media_types is JSON_TYPES and media_type.endswith(b"+json"))


def body_rule(method: str, path: str, limits: Limits) -> BodyRule:
    """The rule of the write route `method path` (path as declared: '/api/v1/models/{name}/predict')."""
    key = (method, path)
    if key in _UPLOADS:
        what, types = _UPLOADS[key]
        return BodyRule(what, types, limits.upload, "max_upload_bytes", bare=True)
    if key in _BULK_JSON:
        return BodyRule("JSON", JSON_TYPES, limits.json, "max_json_bytes")
    if key in _FORMS:
        return BodyRule("a form", FORM_TYPES, limits.small_json, "max_small_json_bytes")
    return BodyRule("JSON", JSON_TYPES, limits.small_json, "max_small_json_bytes")


@dataclass(frozen=True)
class HostPolicy:
    """The names a request's Host header may carry (any port).

    - Always: 127.0.0.1, localhost, [::1] (and every loopback address), and the configured names.
    - Bound to a specific non-loopback address: that address too, and the machine's host name.
    - Bound to a wildcard (0.0.0.0, ::): any IP address literal (DNS rebinding needs a name, never
      a literal) and the machine's host name; other names only when configured.
    - Configured '*': any Host (behind a proxy that checks names itself).
    A non-loopback bind needs tokens (check_bind), so this never opens a token-less server.
    """

    names: frozenset[str]
    any_ip: bool = False
    any_host: bool = False

    @classmethod
    def for_bind(cls, bind_host: str | None, allowed: str | Iterable[str] = ()) -> HostPolicy:
        configured = [_normal(n) for n in (allowed.split(",") if isinstance(allowed, str) else allowed)]
        configured = [n for n in configured if n]
        if "*" in configured:
            return cls(frozenset(), any_host=True)
        names = set(LOOPBACK_NAMES) | set(configured)
        any_ip = False
        if bind_host is not None and not _is_loopback(bind_host):
            if bind_host.strip().lower() in _WILDCARD_BINDS:
                any_ip = True
            else:
                names.add(_normal(bind_host))
            names.update(_machine_names())
        return cls(frozenset(names), any_ip=any_ip)

    def allows(self, host: str) -> bool:
        """Whether `host` (a Host header's name, lowercased, without the port) is answered."""
        if self.any_host or host in self.names:
            return True
        try:
            ip = ipaddress.ip_address(host[1:-1] if host.startswith("[") else host)
        except ValueError:
            return False
        return ip.is_loopback or self.any_ip


def _normal(name: str) -> str:
    """A host name as Host headers carry it: lowercase, no trailing dot, IPv6 in brackets."""
    name = name.strip().lower().rstrip(".")
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return name


def _is_loopback(host: str) -> bool:
    host = host.strip().lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _machine_names() -> set[str]:
    names = set()
    for get in (socket.gethostname, socket.getfqdn):
        try:
            names.add(_normal(get()))
        except OSError:  # pragma: no cover - no name resolution at all
            pass
    return {n for n in names if n}


def _host_name(value: bytes) -> str:
    """The name part of a Host header value: 'localhost:8080' -> 'localhost', '[::1]:80' -> '[::1]'."""
    host = value.decode("latin-1").strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.partition(":")[0].rstrip(".")


class BodyTooLarge(Exception):
    """Raised from `receive` when a streamed body passes its limit; RequestGuard answers 413."""


def _problem(
    status: int, detail: str, field: str | None = None, *, close: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ASGI messages of a JSON error, in the body format of keel.server.errors."""
    error: dict[str, Any] = {"type": "HTTPError", "detail": detail}
    if field is not None:
        error["field"] = field
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the unread rest of the body makes the connection unusable
        headers.append((b"connection", b"close"))
    return {"type": "http.response.start", "status": status, "headers": headers}, {
        "type": "http.response.body",
        "body": body,
    }


async def _send_problem(send: Any, status: int, detail: str, field: str | None = None, *, close: bool = False) -> None:
    start, body = _problem(status, detail, field, close=close)
    await send(start)
    await send(body)


class RequestGuard:
    """Host, origin, media type and size checks of every HTTP request (see the module docstring)."""

    def __init__(self, app: Any, *, hosts: HostPolicy, limits: Limits) -> None:
        from starlette.routing import compile_path

        self.app = app
        self.hosts = hosts
        self.limits = limits
        self.default = body_rule("POST", "", limits)
        special = [*_BULK_JSON, *_UPLOADS, *_FORMS]  # /predict first: the route whose latency matters
        self.rules = tuple((method, compile_path(path)[0], body_rule(method, path, limits)) for method, path in special)
        self._hosts_seen: dict[bytes, bool] = {}  # Host header value -> allowed; a few entries in practice

    def host_allowed(self, value: bytes) -> bool:
        verdict = self._hosts_seen.get(value)
        if verdict is None:
            verdict = self.hosts.allows(_host_name(value))
            if len(self._hosts_seen) >= 1024:  # bounded: a client sending random names cannot grow it
                self._hosts_seen.clear()
            self._hosts_seen[value] = verdict
        return verdict

    def rule_for(self, method: str, path: str) -> BodyRule:
        """The body rule of a write to `path` (a concrete path: '/api/v1/models/credit/predict')."""
        for rule_method, regex, rule in self.rules:
            if method == rule_method and regex.match(path):
                return rule
        return self.default

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = fetch_site = ctype = length = chunked = None
        for key, value in scope["headers"]:  # one pass over the headers, nothing else per request
            if key == b"host":
                host = value
            elif key == b"origin":
                origin = value
            elif key == b"sec-fetch-site":
                fetch_site = value
            elif key == b"content-type":
                ctype = value
            elif key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                chunked = value
        if host is not None and not self.host_allowed(host):
            name = host.decode("latin-1")
            await _send_problem(
                send,
                421,
                f"This server does not answer to Host {name!r}: add the name to "
                "KEEL_SERVER_ALLOWED_HOSTS (comma-separated) if it is this server's",
                "host",
            )
            return
        method = scope["method"]
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if origin is not None and origin.partition(b"://")[2].lower() != (host or b"").lower():
            await _send_problem(
                send,
                403,
                f"Cross-site write refused: Origin {origin.decode('latin-1')!r} is not this "
                f"server ({(host or b'').decode('latin-1')!r})",
                "origin",
            )
            return
        if fetch_site is not None and fetch_site.lower() in (b"cross-site", b"same-site"):
            await _send_problem(
                send,
                403,
                f"Cross-site write refused (Sec-Fetch-Site: {fetch_site.decode('latin-1')})",
                "sec-fetch-site",
            )
            return
        rule = self.rule_for(method, scope["path"])
        declared = 0
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_problem(send, 400, "Content-Length is not a number", "content-length")
                return
        media = ctype.partition(b";")[0].strip().lower() if ctype is not None else None
        if not rule.media_type_ok(media, has_body=declared > 0 or chunked is not None):
            got = "no Content-Type" if media is None else f"Content-Type {media.decode('latin-1')!r}"
            wanted = " or ".join(sorted(t.decode() for t in rule.media_types))
            await _send_problem(
                send, 415, f"This endpoint takes {rule.what} ({wanted}); the request has {got}", "content-type"
            )
            return
        if declared > rule.limit:
            await _send_problem(
                send,
                413,
                f"Request body of {declared} bytes exceeds this endpoint's limit of "
                f"{rule.limit} bytes ({rule.setting})",
                "body",
                close=True,
            )
            return
        if length is not None:  # the HTTP server delivers exactly Content-Length bytes: nothing to count
            await self.app(scope, receive, send)
            return
        await self._streamed(scope, receive, send, rule)

    async def _streamed(self, scope: dict[str, Any], receive: Any, send: Any, rule: BodyRule) -> None:
        """Run the route on a body of unknown length, counting it; 413 once it passes the limit."""
        state = {"received": 0, "over": False, "started": False}

        async def counting_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > rule.limit:
                    state["over"] = True
                    raise BodyTooLarge(rule.limit)
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["over"]:  # whatever the route made of the BodyTooLarge (400, 500), the answer is 413
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _send_problem(send, 413, self._too_large(rule), "body", close=True)
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not state["started"]:
                state["started"] = True
                await _send_problem(send, 413, self._too_large(rule), "body", close=True)

    @staticmethod
    def _too_large(rule: BodyRule) -> str:
        return f"Request body exceeds this endpoint's limit of {rule.limit} bytes ({rule.setting})"


class CatchAll:
    """The innermost middleware: an exception a route lets escape becomes a logged 500 JSON answer.

    Not re-raised, so uvicorn keeps the keep-alive connection. An exception after the answer
    started cannot be mended: one before its end is re-raised (the connection must close, the
    client sees a truncated answer), one after its end (a background task) is only logged.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        progress = [False, False]  # started, complete

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                progress[0] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                progress[1] = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BodyTooLarge:
            raise  # RequestGuard's signal: it answers 413
        except Exception:
            rid = request_id_var.get()
            logger.exception("%s %s failed (request id %s)", scope.get("method"), scope.get("path"), rid)
            if progress[1]:
                return
            if progress[0]:
                raise
            await _send_problem(send, 500, f"Internal server error (request id {rid}); the server log has the cause")
