"""keel.Client runs the same script as a local Workspace, against a real server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from liveserver import live_server  # tests/ is on sys.path (pyproject: pythonpath)
from sklearn.linear_model import LogisticRegression

import keel
from keel.errors import AccessDeniedError, NotFoundError, SignatureError


@pytest.fixture
def server(ws: keel.Workspace) -> Iterator[str]:
    from keel.server import create_app

    with live_server(create_app(ws, token_cache_s=0.0), log_level="error") as live:
        yield live.url


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


# Bad input the local API refuses at the call; each case here the client once handled otherwise:
# a timestamp in milliseconds went through to fail at the batch flush, a non-numeric value for a
# bad key named the value instead of the key, and a param key that is not a string was sent as text.
_BAD_INPUT = [
    ("log_metric", ("loss", 0.5), {"timestamp": 1.7e12}),
    ("log_metric", ("", "high"), {}),
    ("log_metric", ("loss", float("nan")), {}),
    ("log_metric", ("loss", 0.5), {"step": 1.5}),
    ("log_params", ({5: "x"},), {}),
    ("set_tags", ({"": "x"},), {}),
]


@pytest.mark.parametrize(("method", "args", "kwargs"), _BAD_INPUT, ids=lambda v: repr(v)[:40])
def test_the_client_refuses_bad_run_input_as_the_local_api_does(
    server: str, ws: keel.Workspace, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    from keel.errors import InvalidInputError

    with ws.runs.start("checks") as local, pytest.raises(InvalidInputError) as expected:
        getattr(local, method)(*args, **kwargs)
    with keel.Client(server) as client, client.runs.start("checks") as remote:
        with pytest.raises(InvalidInputError) as got:
            getattr(remote, method)(*args, **kwargs)
    assert str(got.value) == str(expected.value)


def test_the_client_takes_the_steps_the_local_api_takes(server: str, ws: keel.Workspace) -> None:
    with keel.Client(server) as client, client.runs.start("steps") as run:
        run.log_metric("loss", 0.5, step=np.int64(3))  # a numpy integer, as a training loop's counter often is
        run.log_metric("loss", 0.25, step=4.0)
    assert [(p.step, p.value) for p in ws.runs.metric_history(run.id, "loss")] == [(3, 0.5), (4, 0.25)]
