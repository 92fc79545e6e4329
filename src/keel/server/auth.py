"""Who may do what: bearer tokens with roles, or open access for local clients when no token exists.

- No active token and a loopback bind: every local client acts as admin; remote clients get 403.
- Once any token exists (or `require_auth`), every request needs `Authorization: Bearer <token>`
  (the dashboard keeps it in an HttpOnly cookie): no token or an unknown one is 401, a role
  without the endpoint's permission is 403 (`Role.allows`: reader and predictor are separate,
  writer holds both, admin everything).
Host, origin, media type and body size are checked before this, in keel.server.guard.
Token look-ups are cached for `cache_s` seconds, so revoking takes effect within that time.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from keel.entities import ApiToken, Role
from keel.server.errors import HTTPProblem
from keel.server.state import server_state

COOKIE = "keel_token"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    token_prefix: str | None = None


LOCAL_ADMIN = Principal("local", Role.ADMIN)
_STALE = object()  # a cache answer that is too old to use


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
        return bool(self._auth_enabled(query=True))

    def _auth_enabled(self, *, query: bool) -> bool | None:
        """Whether tokens are needed; None when the cached answer is stale and `query` is False."""
        if self.require_auth:
            return True
        at, value = self._any
        now = time.monotonic()
        if now - at > self.cache_s:
            if not query:
                return None
            value = self._tokens.any_active()
            self._any = (now, value)
        return value

    def _lookup(self, token: str, *, query: bool = True) -> ApiToken | None | object:
        """The token's record (None: unknown or revoked); _STALE when not cached and `query` is False."""
        key = self._tokens.digest(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] <= self.cache_s:
                return hit[1]
        if not query:
            return _STALE
        record = self._tokens.authenticate(token)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, record)
        return record

    def principal(self, request: Request) -> Principal:
        """The caller, asking the token store when the caches are stale (blocking: call it in a thread)."""
        who = self._principal(request, query=True)
        assert who is not None
        return who

    def cached_principal(self, request: Request) -> Principal | None:
        """principal() from the caches alone (no I/O, safe on the event loop); None when the store must be asked."""
        return self._principal(request, query=False)

    def _principal(self, request: Request, *, query: bool) -> Principal | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        enabled = self._auth_enabled(query=query)
        if enabled is None:
            return None
        if not enabled:
            if is_loopback(request.client.host if request.client else None):
                return LOCAL_ADMIN
            raise HTTPProblem(403, "This server has no API tokens and only answers local clients")
        if not token:
            raise HTTPProblem(
                401, "Missing API token: send 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
            )
        record = self._lookup(token, query=query)
        if record is _STALE:
            return None
        if record is None:
            raise HTTPProblem(401, "Invalid or revoked API token", headers={"WWW-Authenticate": "Bearer"})
        assert isinstance(record, ApiToken)
        return Principal(record.name, record.role, record.prefix)


def need(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller, who must hold at least `role`.

    Checked on every request; answered on the event loop while the token caches are fresh, and in
    a worker thread when the token store must be asked (a thread hop costs more than the check).
    """

    async def dependency(request: Request) -> Principal:
        auth = server_state(request).auth
        who = auth.cached_principal(request)
        if who is None:
            who = await run_in_threadpool(auth.principal, request)
        if not who.role.allows(role):
            raise HTTPProblem(403, f"This needs the '{role.value}' role; token '{who.name}' has '{who.role.value}'")
        request.state.principal = who
        return who

    dependency.__name__ = f"need_{role.value}"
    return dependency
