"""The dashboard's monitoring page says when a monitor began to fail and why, and stops saying
so once a check succeeds (before: a failing monitor showed only its last good check)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import keel

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 2))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": (x[:, 0] + rng.normal(0, 1, n) > 0).astype(int)})


def test_the_monitoring_page_shows_failing_since_with_the_cause_until_a_check_succeeds(ws: keel.Workspace) -> None:
    from keel.server import create_app

    train = frame(1000, 0)
    ws.models.register("bare", LogisticRegression().fit(train[["a", "b"]], train["y"]), X=train[["a", "b"]])
    ws.monitoring.watch("bare", multivariate=False)  # no training data in its lineage, no reference: checks fail
    ws.monitoring.run_due()
    ws.monitoring.run_due()  # not due again yet: one failed check
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as site:
        page = site.get("/models/bare/monitoring")
        assert page.status_code == 200
        text = page.text
        assert 'id="monitor-failing"' in text and "Monitor failing since" in text and "1 failed check," in text
        assert "no training dataset in its lineage" in text
        alert = ws.monitoring.failing("bare")
        assert alert is not None and f"alert #{alert.id}" in text

        ref = ws.datasets.add("bare-ref", frame(1000, 1))
        ws.monitoring.watch("bare", reference=ref.ref)
        ws.monitoring.run("bare")
        assert 'id="monitor-failing"' not in site.get("/models/bare/monitoring").text


def test_a_stored_setting_that_no_longer_validates_does_not_break_the_page(ws: keel.Workspace) -> None:
    from keel.server import create_app

    train = frame(500, 0)
    ws.models.register("bare", LogisticRegression().fit(train[["a", "b"]], train["y"]), X=train[["a", "b"]])
    ws.monitoring.watch("bare", window_rows=250)
    store: Any = ws.monitoring._meta.monitors
    store.save_monitor("bare", {**store.get_monitor("bare")[0], "thresholds": "x"})  # as an older Keel stored it
    ws.monitoring.run_due()
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as site:
        page = site.get("/models/bare/monitoring")
    assert page.status_code == 200 and "newest 250 predictions" in page.text
    assert "thresholds must be an object" in page.text
