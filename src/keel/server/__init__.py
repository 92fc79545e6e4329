"""The HTTP server: REST API, predictions, dashboard, /metrics, health. Thin: it calls Workspace.

The only package that imports FastAPI. May import: keel.workspace (the facade: the object it is
given, and its use cases), keel.entities, keel.errors, keel.settings, keel.refs, keel._optional;
never the record packages, keel.jobs or compute (an import-linter contract checks it).
"""

from __future__ import annotations

from keel.server.app import check_bind, create_app
from keel.server.run import serve

__all__ = ["create_app", "check_bind", "serve"]
