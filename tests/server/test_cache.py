"""The server's model cache: when aliases are re-read, and which requests are scored on the event loop."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import keel
from keel.server.cache import INLINE_BUDGET_S, INLINE_MAX_ROWS, ModelCache
from keel.server.observability import Metrics
from keel.server.state import state_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PREDICT = "/api/v1/models/tumor/predict"


def test_alias_moved_by_another_workspace_is_served_by_the_next_request(
    records: Any, served_ws: keel.Workspace, cancer: pd.DataFrame
) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    app = create_app(served_ws)
    state_of(app).cache.alias_cache_s = 3600.0  # no time-based re-read: only the change counter can tell
    rows = records(cancer, 1)
    other = keel.Workspace(served_ws.settings)  # another process, as far as the server's Workspace can tell
    try:
        with TestClient(app, base_url="http://127.0.0.1") as c:
            assert c.post(PREDICT, json=rows).json()["version"] == 1
            assert c.post(PREDICT, json=rows).json()["version"] == 1  # served from the cache
            other.models.set_alias("tumor", "champion", version=2)
            assert c.post(PREDICT, json=rows).json()["version"] == 2
            other.models.set_alias("tumor", "champion", version=1)
            assert c.post(PREDICT, json=rows).json()["version"] == 1
    finally:
        other.close()


def test_fresh_aliases_and_loaded_versions_are_served_without_a_store_query(
    records: Any, served_ws: keel.Workspace, cancer: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    app = create_app(served_ws)
    state_of(app).cache.alias_cache_s = 60.0
    rows = records(cancer, 1)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.post(PREDICT, json=rows).json()["version"] == 1
        assert c.post(f"{PREDICT}?version=2", json=rows).json()["version"] == 2
        asked: list[str] = []
        get = served_ws.models.get
        monkeypatch.setattr(served_ws.models, "get", lambda ref: asked.append(ref) or get(ref))
        for _ in range(3):
            assert c.post(PREDICT, json=rows).json()["version"] == 1
            assert c.post(f"{PREDICT}?version=2", json=rows).json()["version"] == 2
        assert asked == []
        # A move through the served workspace is seen by the very next request, whatever the cache time.
        served_ws.models.set_alias("tumor", "champion", version=2)
        assert c.post(PREDICT, json=rows).json()["version"] == 2
        assert asked == ["tumor@champion"]


def test_small_requests_to_quick_models_are_scored_on_the_event_loop(ws: keel.Workspace) -> None:
    cache = ModelCache(ws, Metrics())
    model = SimpleNamespace(name="m", version=1, flavor="sklearn")
    assert not cache.is_quick(model, 1)  # not measured yet: a worker thread
    cache.observe(model, 1, INLINE_BUDGET_S / 10)
    assert cache.is_quick(model, 1) and cache.is_quick(model, INLINE_MAX_ROWS)
    assert not cache.is_quick(model, INLINE_MAX_ROWS + 1)
    for _ in range(30):  # the model became slow: back to a thread
        cache.observe(model, 1, INLINE_BUDGET_S * 10)
    assert not cache.is_quick(model, 1)
    user_code = SimpleNamespace(name="f", version=1, flavor="callable")  # may wait on I/O: never on the loop
    cache.observe(user_code, 1, 0.0)
    assert not cache.is_quick(user_code, 1)
