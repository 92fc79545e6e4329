"""Ready means warm: under `keel serve` (create_app(warm=True)) /readyz answers 503 until every
champion is loaded and has scored, and the warm-up leaves no trace in the metrics or the log."""

from __future__ import annotations

import threading
import time
from typing import Any

import pandas as pd
import pytest

import keel
from keel.server import create_app
from keel.server.state import state_of
from keel.server.warmup import Warmup

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _wait(app: Any) -> None:
    warmup = state_of(app).warmup
    assert warmup is not None and warmup.done.wait(timeout=60), "the warm-up never finished"


def test_readyz_says_warming_until_the_champions_are_loaded_and_warm(
    served_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    hold = threading.Event()
    champions = Warmup._champions
    monkeypatch.setattr(Warmup, "_champions", lambda self: hold.wait(30) and champions(self))
    announced: list[float] = []
    app = create_app(served_ws, warm=True, on_warm=lambda: announced.append(time.monotonic()))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        warming = c.get("/readyz")
        assert warming.status_code == 503 and warming.json()["status"] == "warming"
        assert c.get("/healthz").status_code == 200  # alive all along
        assert announced == [] and len(state_of(app).cache) == 0
        hold.set()
        _wait(app)
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["champions"] == ["tumor@1"] and ready["failed"] == {}
        assert state_of(app).cache.keys() == [("tumor", 1)]
        assert len(announced) == 1  # keel serve prints its address only now
        # its small requests were timed while warming: the first real one is placed (event loop or
        # worker thread) on that figure, not sent to a thread for want of one
        assert ("tumor", 1) in state_of(app).cache._score_s


def test_the_warm_up_requests_are_not_counted_logged_or_predicted(
    served_ws: keel.Workspace, records: Any, cancer: pd.DataFrame
) -> None:
    from fastapi.testclient import TestClient

    app = create_app(served_ws, warm=True)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        _wait(app)
        metrics = c.get("/metrics").text
        assert 'status="404"' not in metrics and 'status="422"' not in metrics
        assert state_of(app).predlog.wal is not None  # the write-ahead file is open before the first request
        response = c.post("/api/v1/models/tumor/predict", json=records(cancer, 2))
        assert response.status_code == 200
    assert served_ws.predictions.count("tumor") == 2  # the real request's rows, nothing from the warm-up
    assert list((served_ws.settings.home.absolute() / "predlog").glob("*.wal")) == []  # all written, files gone


def test_a_champion_that_fails_to_load_is_listed_and_the_server_is_ready_for_the_others(
    served_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    def broken(ref: Any, **_: Any) -> Any:
        raise keel.errors.InvalidModelError("the artifact is damaged")

    monkeypatch.setattr(served_ws.models, "load", broken)
    app = create_app(served_ws, warm=True)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        _wait(app)
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["champions"] == []
        assert "damaged" in ready.json()["failed"]["tumor@champion"]


def test_a_quick_model_is_scored_on_the_event_loop_from_the_first_request(ws: keel.Workspace) -> None:
    """The warm-up times scoring with records, as the route sends them: timed on a DataFrame (ten
    times slower for LightGBM) a quick model looked slow and its first requests took a thread hop."""
    import numpy as np
    from fastapi.testclient import TestClient

    lightgbm = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 5)), columns=[f"f{i}" for i in range(5)])
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1).fit(X, X["f0"] > 0)
    ws.models.register("quick", model, X=X)
    ws.models.set_alias("quick", "champion", version=1)
    app = create_app(ws, warm=True)
    with TestClient(app, base_url="http://127.0.0.1"):
        _wait(app)
        cache = state_of(app).cache
        assert cache.is_quick(cache.get("quick", 1), 1)
