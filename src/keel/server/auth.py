"""Who may do what: bearer tokens with roles, or open access for local clients when no token exists.

- No active token and a loopback bind: every local client acts as admin; remote clients get 403.
- Once any token exists (or `require_auth`), every request needs `Authorization: Bearer <token>`
  (the dashboard keeps it in an HttpOnly cookie): no token or an unknown one is 401, a role too
  low for the endpoint is 403.
Token look-ups are cached for `cache_s` seconds, so revoking takes effect within that time.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from keel.access import hash_token
from keel.entities import ApiToken, Role
from keel.server.errors import HTTPProblem

COOKIE = "keel_token"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    token_prefix: str | None = None


LOCAL_ADMIN = Principal("local", Role.ADMIN)


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    def __init__(self, ws: object, *, require_auth: bool = False, cache_s: float = 2.0) -> None:
        self._tokens = ws.tokens  # type: ignore[attr-defined]
        self.require_auth = require_auth
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, ApiToken | None]] = {}
        self._any: tuple[float, bool] = (0.0, False)

    def auth_enabled(self) -> bool:
        if self.require_auth:
            return True
        at, value = self._any
        now = time.monotonic()
        if now - at > self.cache_s:
            value = self._tokens.any_active()
            self._any = (now, value)
        return value

    def _lookup(self, token: str) -> ApiToken | None:
        key = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] <= self.cache_s:
                return hit[1]
        record = self._tokens.authenticate(token)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, record)
        return record

    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if not self.auth_enabled():
            if is_loopback(request.client.host if request.client else None):
                return LOCAL_ADMIN
            raise HTTPProblem(403, "This server has no API tokens and only answers local clients")
        if not token:
            raise HTTPProblem(401, "Missing API token: send 'Authorization: Bearer <token>'",
                              headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        record = self._lookup(token)
        if record is None:
            raise HTTPProblem(401, "Invalid or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        return Principal(record.name, record.role, record.prefix)


def need(role: Role) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller, who must hold at least `role`."""

    def dependency(request: Request) -> Principal:
        auth: Authenticator = request.app.state.auth
        who = auth.principal(request)
        if not who.role.allows(role):
            raise HTTPProblem(403, f"This needs the '{role.value}' role; token '{who.name}' has '{who.role.value}'")
        request.state.principal = who
        return who

    dependency.__name__ = f"need_{role.value}"
    return dependency
