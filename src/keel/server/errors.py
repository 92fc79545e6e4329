"""Map keel's errors to HTTP answers, in one table. Core errors know nothing of HTTP."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel import errors as e
from keel.server.schemas import ErrorBody

logger = logging.getLogger(__name__)

STATUS: dict[type[e.KeelError], int] = {
    e.NotFoundError: 404,
    e.ConflictError: 409,
    e.SignatureError: 422,
    e.InvalidModelError: 422,
    e.InvalidInputError: 400,
    e.UnsafeLoadError: 403,
    e.CorruptArtifactError: 500,
    e.StoreUnavailableError: 503,
    e.SchemaVersionError: 503,
    e.MissingDependencyError: 501,
    e.UserCodeError: 500,
    e.ConfigError: 500,
}


# The answers every API route may give besides its success, declared in the OpenAPI schema so that
# clients (and schemathesis' status-code check) know them; each carries ErrorBody.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in [
        (400, "Bad input: the detail says what is wrong and how to fix it"),
        (401, "No token, or an unknown, expired or revoked one"),
        (403, "The token's role may not do this, or the request was refused (cross-site, unsafe artifact)"),
        (404, "No such dataset, run, model, version, alias or alert"),
        (409, "Conflicts with what is stored (e.g. a param logged again with another value)"),
        (413, "The body is larger than this route accepts"),
        (415, "The body's content type is not one this route accepts"),
        (422, "The request does not validate; 'field' names the part at fault"),
        (503, "The store is unavailable or its schema needs an upgrade"),
    ]
}


class HTTPProblem(Exception):
    """An error the server itself raises (auth, limits), with its status and optional headers."""

    def __init__(
        self, status: int, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers


def status_for(exc: e.KeelError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _body(detail: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "detail": detail, **{k: v for k, v in extra.items() if v is not None}}}


def install(app: FastAPI) -> None:
    """Answer every error with ErrorBody, and declare ERROR_RESPONSES on each route added after this."""
    # Routes take their router's default responses when they are added, so install() comes
    # before the routers are included (tests/server/test_validation.py checks every operation).
    app.router.responses = {**ERROR_RESPONSES, **app.router.responses}

    @app.exception_handler(e.KeelError)
    async def keel_error(request: Request, exc: e.KeelError) -> JSONResponse:
        status = status_for(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, e.SignatureError):
            extra = {
                "missing": list(exc.missing) or None,
                "extra": list(exc.extra) or None,
                "mistyped": [{"field": c, "expected": w, "got": g} for c, w, g in exc.mistyped] or None,
            }
        if status >= 500:
            logger.error("request %s failed: %s", request.url.path, exc)
        return JSONResponse(_body(str(exc), type(exc).__name__, **extra), status_code=status)

    @app.exception_handler(HTTPProblem)
    async def problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse(
            _body(exc.detail, "HTTPError", field=exc.field), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own answers (no such route, method not allowed, an unparsable body) in the
        # same shape as every other error, instead of {"detail": ...}.
        return JSONResponse(_body(str(exc.detail), "HTTPError"), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        # A validator's ValueError reads "Value error, <our message>": keep only our message.
        text = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        msg = f"{field}: {text}" if field else text
        return JSONResponse(_body(msg, "ValidationError", field=field), status_code=422)
