"""Map keel's errors to HTTP answers, in one table. Core errors know nothing of HTTP."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from keel import errors as e

logger = logging.getLogger(__name__)

STATUS: dict[type[e.KeelError], int] = {
    e.NotFoundError: 404,
    e.ConflictError: 409,
    e.SignatureError: 422,
    e.InvalidInputError: 400,
    e.UnsafeLoadError: 403,
    e.CorruptArtifactError: 500,
    e.StoreUnavailableError: 503,
    e.SchemaVersionError: 503,
    e.MissingDependencyError: 501,
    e.UserCodeError: 500,
    e.ConfigError: 500,
}


class HTTPProblem(Exception):
    """An error the server itself raises (auth, limits), with its status and optional headers."""

    def __init__(self, status: int, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers


def status_for(exc: e.KeelError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def _body(detail: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "detail": detail, **{k: v for k, v in extra.items() if v is not None}}}


def install(app: FastAPI) -> None:
    @app.exception_handler(e.KeelError)
    async def keel_error(request: Request, exc: e.KeelError) -> JSONResponse:
        status = status_for(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, e.SignatureError):
            extra = {"missing": list(exc.missing) or None, "extra": list(exc.extra) or None,
                     "mistyped": [{"field": c, "expected": w, "got": g} for c, w, g in exc.mistyped] or None}  # fmt: skip
        if status >= 500:
            logger.error("request %s failed: %s", request.url.path, exc)
        return JSONResponse(_body(str(exc), type(exc).__name__, **extra), status_code=status)

    @app.exception_handler(HTTPProblem)
    async def problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse(_body(exc.detail, "HTTPError", field=exc.field), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        msg = f"{field}: {first.get('msg')}" if field else str(first.get("msg", "invalid request"))
        return JSONResponse(_body(msg, "ValidationError", field=field), status_code=422)
