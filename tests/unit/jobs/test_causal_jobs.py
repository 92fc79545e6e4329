"""The causal study jobs (bootstrap, refutation suite, sensitivity sweep): their work goes through the
executor in tasks, they report progress, and each stores its result; on Ray when it is installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel import Settings
from keel.errors import InvalidInputError
from keel.workspace.payloads import STUDY_PAYLOADS, CausalBootstrapPayload, CausalRefutePayload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

EDGES = [("x0", "t"), ("x1", "t"), ("x0", "y"), ("x1", "y"), ("t", "y")]


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "t": t, "y": t + x.sum(axis=1) + rng.normal(size=n)})


def _study(ws: keel.Workspace) -> None:
    ws.datasets.add("obs", frame())
    ws.causal.study("effect", "obs@1", graph=EDGES, treatment="t", outcome="y")


def test_payloads_are_checked_and_round_trip() -> None:
    p = CausalBootstrapPayload("effect@1", estimators=["regression"], n_boot=40, tasks=3, seed=2)
    assert CausalBootstrapPayload.from_dict(p.to_dict()) == p
    assert p.to_dict() == {"study": "effect@1", "estimators": ["regression"], "n_boot": 40, "tasks": 3, "seed": 2}
    assert p.dedup_key == "causal_bootstrap:effect@1"
    assert set(STUDY_PAYLOADS) == {"causal_bootstrap", "causal_refute", "causal_sensitivity"}
    with pytest.raises(InvalidInputError, match="at least 20"):
        CausalBootstrapPayload("effect", n_boot=5)
    with pytest.raises(InvalidInputError, match="'estimator' must be one of"):
        CausalRefutePayload("effect", estimator="magic")
    with pytest.raises(InvalidInputError, match="unknown keys"):
        CausalRefutePayload.from_dict({"study": "effect", "model": "m"})
    with pytest.raises(InvalidInputError, match="needs 'study'"):
        CausalRefutePayload.from_dict({})


def test_jobs_split_into_tasks_report_progress_and_store_their_results(ws: keel.Workspace) -> None:
    _study(ws)
    boot = ws.jobs.run(
        "causal_bootstrap",
        {"study": "effect", "estimators": ["regression", "ipw"], "n_boot": 40, "tasks": 2},
        timeout=300,
    )
    assert boot.status == "succeeded", boot.error
    assert boot.progress == {"done": 4, "total": 4, "stage": "bootstrap ipw"}  # 2 chunks x 2 estimators
    (stored,) = ws.causal.results("effect", kind="bootstrap")
    assert [i["estimator"] for i in stored.payload["intervals"]] == ["regression", "ipw"]
    assert boot.result is not None and boot.result["result"] == stored.id
    for interval in stored.payload["intervals"]:
        assert interval["ci_low"] < 1.0 < interval["ci_high"] and interval["n_boot"] == 40

    refuted = ws.jobs.run("causal_refute", {"study": "effect", "estimator": "regression"}, timeout=300)
    assert refuted.status == "succeeded", refuted.error
    assert refuted.progress == {"done": 4, "total": 4, "stage": "refutation checks"}
    (refutation,) = ws.causal.results("effect", kind="refutation")
    direct = ws.causal.refute("effect", estimator="regression")  # the tasks give what the direct call gives
    assert refutation.payload["verdict"] == direct.verdict == refuted.result["verdict"]  # type: ignore[index]
    assert [c["value"] for c in refutation.payload["checks"]] == pytest.approx(
        [c.value if c.value is not None else None for c in direct.checks]
    )

    swept = ws.jobs.run("causal_sensitivity", {"study": "effect"}, timeout=300)
    assert swept.status == "succeeded" and swept.progress == {"done": 1, "total": 1, "stage": "sensitivity"}
    assert len(ws.causal.results("effect", kind="sensitivity")) == 1

    failed = ws.jobs.run("causal_refute", {"study": "nothing"}, timeout=300)
    assert failed.status == "failed" and "nothing" in (failed.error or "")


@pytest.fixture(scope="module")
def ray_ready() -> Iterator[None]:
    try:
        import ray
    except ImportError:
        print("\nskipping the Ray causal jobs: ray is not installed (pip install 'keelml[ray]')")
        pytest.skip("ray is not installed")
    from keel.jobs import RayExecutor

    started = not ray.is_initialized()
    try:
        RayExecutor(num_cpus=2)  # ray.init on loopback, as KEEL_EXECUTOR=ray does
    except Exception as exc:  # noqa: BLE001 - any reason Ray cannot start here
        pytest.skip(f"Ray did not start: {exc}")
    yield
    if started:
        ray.shutdown()


def test_the_bootstrap_job_runs_its_chunks_as_ray_tasks(ray_ready: Any, tmp_path: Path) -> None:
    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester", executor="ray")) as ws:
        _study(ws)
        payload = {"study": "effect", "estimators": ["regression"], "n_boot": 40, "tasks": 2}
        done = ws.jobs.run("causal_bootstrap", payload, timeout=300)
        assert done.status == "succeeded", done.error
        assert done.result is not None and not done.result["ran_on"].endswith(f":{os.getpid()}")
        assert done.progress == {"done": 2, "total": 2, "stage": "bootstrap regression"}
        (interval,) = ws.causal.results("effect", kind="bootstrap")[0].payload["intervals"]
        assert interval["n_boot"] == 40 and interval["ci_low"] < interval["value"] < interval["ci_high"]


def test_a_retraining_reruns_the_study_its_project_names(ws: keel.Workspace) -> None:
    _study(ws)
    ws.causal.estimate("effect", estimators=("regression",), n_boot=40)
    project = {
        "model": "outcome",
        "data": {"dataset": "obs", "target": "y"},
        "estimator": {"class": "sklearn.linear_model.LinearRegression"},
        "evaluation": {"metrics": ["r2", "rmse"], "primary": "r2"},
        "retraining": {"study": "effect"},
    }
    assert keel.Project.from_dict(project).retraining.study == "effect"
    assert keel.Project.from_dict({**project, "retraining": {}}).retraining.study is None
    with pytest.raises(InvalidInputError, match="retraining.study: expected a non-empty string"):
        keel.Project.from_dict({**project, "retraining": {"study": 3}})
    ws.retraining.train(keel.Project.from_dict(project))
    ws.datasets.add("obs", frame(seed=1))
    done = ws.jobs.run("retrain", {"model": "outcome"}, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.result is not None and done.result["study"] == "effect@2"
    (change,) = ws.causal.results("effect@2", kind="effect_change")
    assert done.result["effect_change"] == change.id and change.payload["dataset"] == "obs@2"

    ws.retraining.train(keel.Project.from_dict({**project, "retraining": {"study": "missing"}}))
    again = ws.jobs.run("retrain", {"model": "outcome"}, timeout=300)
    assert again.status == "succeeded" and again.result is not None
    assert again.result["study"] == "missing" and "missing" in again.result["study_error"]
