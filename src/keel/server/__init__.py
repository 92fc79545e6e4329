"""The HTTP server: REST API, predictions, dashboard, /metrics, health. Thin: it calls Workspace.

The only package that imports FastAPI. May import: keel._workspace (via the object it is given),
keel.entities, keel.errors, keel.settings, keel.access.
"""

from __future__ import annotations

from keel.server.app import check_bind, create_app
from keel.server.run import serve

__all__ = ["create_app", "check_bind", "serve"]
