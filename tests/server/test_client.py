"""keel.Client runs the same script as a local Workspace, against a real server on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import keel
from keel.errors import AccessDeniedError, NotFoundError, SignatureError


@pytest.fixture
def server(ws: keel.Workspace) -> Iterator[str]:
    import uvicorn

    from keel.server import create_app

    config = uvicorn.Config(create_app(ws, token_cache_s=0.0), host="127.0.0.1", port=0, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def journey(ws: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """A training script: the same lines for a Workspace and a Client."""
    v = ws.datasets.add("cancer", frame, description="breast cancer subset")
    loaded = ws.datasets.load("cancer@latest")
    X, y = loaded.drop(columns="target"), loaded["target"]
    with ws.runs.start("tumor", params={"C": 0.5}, inputs=[v]) as run:
        est = LogisticRegression(C=0.5, max_iter=5000).fit(X, y)
        for step in range(50):
            run.log_metric("loss", 1.0 / (step + 1))
        run.log_metric("accuracy", est.score(X, y))
    mv = ws.models.register("tumor", est, run=run, X=X)
    ws.models.set_alias("tumor", "champion", version=mv.version, reason="first")
    model = ws.models.load("tumor@champion")
    found = ws.runs.search("metrics.accuracy > 0.5 and params.C = 0.5", order_by="metrics.accuracy desc")
    return {
        "dataset": v.ref,
        "digest": v.digest,
        "rows": len(loaded),
        "model": mv.ref,
        "datasets": mv.datasets,
        "proba": model.predict_proba(X.head(5)),
        "found": [r.id for r in found],
        "run": run.id,
        "history": len(ws.runs.metric_history(run.id, "loss")),
        "lineage": ws.models.lineage("tumor@champion").datasets,
        "aliases": [(e.alias, e.to_version) for e in ws.models.alias_history("tumor")],
    }


@pytest.fixture
def frame() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame
    out = data[["mean radius", "mean texture", "worst area", "target"]].copy()
    out.columns = ["radius", "texture", "area", "target"]
    return out


def test_the_same_script_runs_locally_and_against_the_server(server: str, frame: pd.DataFrame, tmp_path: Any) -> None:
    local = journey(keel.Workspace(home=str(tmp_path / "local")), frame)
    with keel.Client(server) as client:
        remote = journey(client, frame)
    for key in ("dataset", "digest", "rows", "model", "datasets", "history", "lineage", "aliases"):
        assert remote[key] == local[key], key
    np.testing.assert_allclose(remote["proba"], local["proba"], rtol=1e-10)
    assert remote["found"] == [remote["run"]]


def test_client_predicts_server_side_and_maps_errors(server: str, ws: keel.Workspace, frame: pd.DataFrame) -> None:
    with keel.Client(server) as client:
        journey(client, frame)
        out = client.models.predict("tumor", frame.drop(columns="target").head(2))
        assert out["version"] == 1 and len(out["predictions"]) == 2
        with pytest.raises(SignatureError) as info:
            client.models.predict("tumor", [{"radius": 1.0}])
        assert set(info.value.missing) == {"texture", "area"}
        with pytest.raises(NotFoundError, match="tumr"):
            client.models.get("tumr@champion")


def test_client_with_a_reader_token_cannot_write(server: str, ws: keel.Workspace, frame: pd.DataFrame) -> None:
    token, _ = ws.tokens.create("viewer", "reader")
    with keel.Client(server, token=token) as client:
        assert client.datasets.list() == []
        with pytest.raises(AccessDeniedError, match="403"):
            client.datasets.add("cancer", frame)
    with keel.Client(server) as anonymous, pytest.raises(AccessDeniedError, match="401"):
        anonymous.datasets.list()


def test_client_reports_an_unreachable_server() -> None:
    with keel.Client("http://127.0.0.1:9", timeout_s=2) as client, pytest.raises(keel.StoreUnavailableError):
        client.models.list()
