"""What one server app holds: the workspace and the long-lived helpers its routes share.

`create_app` builds one `ServerState` and stores it as `app.state.keel`; routes, the dashboard,
the scheduler's gauges and the demo read it through `server_state(request)` or `state_of(app)`,
so every shared object has one typed name instead of an untyped `app.state` attribute each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:  # annotations only: these modules need no state, and a runtime import would go in circles
    from starlette.applications import Starlette

    from keel.server.auth import Authenticator
    from keel.server.cache import ModelCache, ShadowTable
    from keel.server.observability import Metrics
    from keel.server.scheduler import MonitorGauges, MonitorScheduler
    from keel.server.warmup import Warmup
    from keel.workspace.facade import PredictionLogger, Workspace

__all__ = ["ServerState", "server_state", "state_of"]

KEY = "keel"  # the attribute of `app.state` that holds the ServerState


@dataclass(frozen=True)
class ServerState:
    """The shared objects of one app; the caches in it are mutable, the set of objects is not.
    (Explanation contexts are cached by the Workspace, `ws.explainer`, shared with the Python API.)

    `predlog` is the buffered prediction writer of `ws.predictions.logger()`. `monitor_scheduler`
    is None unless `create_app` got `monitor_tick_s`; `warmup` None unless it got `warm=True`.
    """

    ws: Workspace
    metrics: Metrics
    auth: Authenticator
    cache: ModelCache
    shadows: ShadowTable
    monitor_gauges: MonitorGauges
    predlog: PredictionLogger
    max_upload_bytes: int
    max_json_bytes: int
    monitor_scheduler: MonitorScheduler | None = None
    warmup: Warmup | None = None  # `keel serve`: /readyz says ready once the champions are loaded and warm

    def install(self, app: Starlette) -> None:
        setattr(app.state, KEY, self)


def state_of(app: Starlette) -> ServerState:
    """The ServerState of an app built by keel.server.app.create_app."""
    state = getattr(app.state, KEY, None)
    if not isinstance(state, ServerState):
        raise RuntimeError(f"app.state.{KEY} holds no ServerState: build the app with keel.server.app.create_app(ws)")
    return state


def server_state(request: Request) -> ServerState:
    """The ServerState of the app serving `request`."""
    return state_of(request.app)
