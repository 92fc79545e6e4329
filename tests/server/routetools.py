"""Every route of an app as (method, path), for the tests that must cover each route."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import Mount, Route


def leaf_routes(app: Any) -> list[tuple[str, str]]:
    """(method, declared path) of every route; ('MOUNT', path) for mounted apps (static files).

    Works on FastAPI versions that copy an included router's routes into the app and on those that
    keep the router nested (`_IncludedRouter`, with the router in `original_router`).
    """
    return sorted(set(_walk(app.routes, "")))


def _walk(routes: Iterable[Any], prefix: str) -> Iterator[tuple[str, str]]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":  # Starlette adds HEAD to every GET route
                    yield method, prefix + route.path
        elif isinstance(route, Mount):
            yield "MOUNT", prefix + route.path
