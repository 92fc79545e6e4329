"""The login page: its form stores a token in the HttpOnly `keel_token` cookie; /logout clears it."""

from __future__ import annotations

import logging

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from keel.server.auth import COOKIE, Principal
from keel.server.dashboard.base import page_router, render
from keel.server.errors import HTTPProblem
from keel.server.state import server_state

logger = logging.getLogger(__name__)

__all__ = ["router"]

COOKIE_MAX_AGE_S = 14 * 24 * 3600

router = page_router()


def _safe_next(target: str | None) -> str:
    """Only same-site paths: '//evil.example' or 'https://...' would make /login an open redirect."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _check_token(request: Request, token: str) -> Principal | None:
    """Who `token` belongs to, asked of the app's Authenticator exactly as an API call would be."""
    if not token or len(token) > 512 or not token.isascii():
        return None
    probe = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/login",
            "query_string": b"",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
            "client": request.scope.get("client"),
        }
    )
    try:
        return server_state(request).auth.principal(probe)
    except HTTPProblem:
        return None


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), auth_enabled=server_state(request).auth.auth_enabled())


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: str = Form(default=""), next: str = Form(default="/")) -> Response:
    if not await run_in_threadpool(server_state(request).auth.auth_enabled):
        return RedirectResponse(_safe_next(next), status_code=303)
    token = token.strip()
    who = await run_in_threadpool(_check_token, request, token)
    if who is None:
        return render(
            request,
            "login.html",
            status=401,
            next=_safe_next(next),
            auth_enabled=True,
            error="That token is unknown or revoked.",
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    logger.info("dashboard login by token %s (%s)", who.name, who.role.value)
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
