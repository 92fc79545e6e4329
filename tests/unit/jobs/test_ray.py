"""Jobs on a real local Ray instance (started once per test session, on loopback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from retraining.test_retraining import cancer, spec  # tests/unit is on sys.path (rootdir import mode)

import keel
from keel import Settings

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::sklearn.exceptions.ConvergenceWarning"
)


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        print("\nskipping the Ray tests: ray is not installed (pip install 'keelml[ray]')")
        pytest.skip("ray is not installed")
    from keel.jobs import RayExecutor

    try:
        RayExecutor(num_cpus=2)  # ray.init on loopback, as KEEL_EXECUTOR=ray does
    except Exception as exc:  # noqa: BLE001 - any reason Ray cannot start here
        print(f"\nskipping the Ray tests: Ray did not start: {exc}")
        pytest.skip(f"Ray did not start: {exc}")
    yield ray
    ray.shutdown()


def test_a_retrain_job_runs_as_a_ray_task_in_another_process(ray_instance: Any, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "ws", author="tester", executor="ray")
    with keel.Workspace(settings) as ws:
        ws.datasets.add("cancer", cancer())
        ws.retraining.train(spec())
        job, _ = ws.jobs.enqueue("retrain", {"model": "tumor", "trigger": "manual"})
        assert ws.jobs.executor.name == "ray"
        assert ws.jobs.dispatch() == [job.id]
        ws.jobs.wait(timeout=300)
        done = ws.jobs.get(job.id)
        assert done.status == "succeeded", done.error
        assert (
            done.result is not None
            and done.result["version"] == 2
            and done.result["outcome"] in ("promoted", "rejected")
        )
        assert not done.result["ran_on"].endswith(f":{os.getpid()}")  # a Ray worker process, not this one
        assert ws.models.get("tumor@challenger").version == 2  # written to the same store by the Ray worker


def test_a_failing_job_on_ray_is_recorded_as_failed(ray_instance: Any, tmp_path: Path) -> None:
    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester", executor="ray")) as ws:
        job, _ = ws.jobs.enqueue("retrain", {"model": "ghost"})
        ws.jobs.dispatch()
        ws.jobs.wait(timeout=300)
        failed = ws.jobs.get(job.id)
        assert failed.status == "failed" and "has no project" in (failed.error or "")


def test_batch_scoring_splits_into_ray_tasks(ray_instance: Any, tmp_path: Path) -> None:
    import numpy as np

    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester", executor="ray")) as ws:
        ws.datasets.add("cancer", cancer())
        ws.retraining.train(spec())
        frame = cancer().drop(columns="target")
        ws.datasets.add("applications", frame)
        job = ws.jobs.run(
            "batch_score", {"model": "tumor@champion", "dataset": "applications", "chunk_rows": 150}, timeout=300
        )
        assert job.status == "succeeded", job.error
        assert job.result is not None and job.result["chunks"] == 4 and job.result["rows"] == 569
        scored = ws.datasets.load(job.result["dataset"])
        np.testing.assert_allclose(scored["proba_1"], ws.models.load("tumor@1").predict_proba(frame)[:, 1])


def test_tuning_runs_its_trials_on_ray_tune(ray_instance: Any, tmp_path: Path) -> None:
    tuning = {"params": {"C": {"low": 0.0005, "high": 1.0, "log": True}}, "trials": 3}
    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester", executor="ray")) as ws:
        ws.datasets.add("cancer", cancer())
        ws.retraining.train(spec(tuning=tuning))
        job = ws.jobs.run("tune", {"model": "tumor"}, timeout=600)
        assert job.status == "succeeded", job.error
        assert job.result is not None and job.result["trials"] == 3
        [decision] = [d for d in ws.retraining.decisions("tumor") if d.trigger == "tune"]
        t = decision.evidence["tuning"]
        assert t["engine"] == "ray tune" and all(tr["score"] is not None and tr["score"] > 0.5 for tr in t["trials"])
        assert t["score"] == max(tr["score"] for tr in t["trials"])


def test_batch_explanations_split_into_ray_tasks(ray_instance: Any, tmp_path: Path) -> None:
    pytest.importorskip("shap")
    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester", executor="ray")) as ws:
        ws.datasets.add("cancer", cancer())
        ws.retraining.train(spec())
        ws.datasets.add("applications", cancer().drop(columns="target").head(90))
        job = ws.jobs.run(
            "batch_explain", {"model": "tumor@champion", "dataset": "applications", "chunk_rows": 30}, timeout=300
        )
        assert job.status == "succeeded", job.error
        assert job.result is not None and (job.result["rows"], job.result["chunks"]) == (90, 3)


def test_policy_seeds_train_as_ray_tasks(ray_instance: Any, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester", executor="ray")) as ws:
        ws.datasets.add("sales", pd.DataFrame({"units": np.random.default_rng(0).poisson(10, size=120)}))
        ws.rl.twin("shop", "sales@1", demand_column="units")
        ws.rl.baselines("shop", periods=200, copies=32)
        result = ws.rl.train("shop", steps=512, seeds=2, n_envs=1, eval_periods=100, eval_copies=32)
        assert len(result.payload["seed_costs"]) == 2  # both seeds came back from Ray workers
        curves = ws.runs.get(result.payload["run"]).metrics
        assert "cost/seed0" in curves and "cost/seed1" in curves


@pytest.mark.postgres
def test_server_mode_a_ray_task_works_on_postgres_and_s3(
    ray_instance: Any, postgres_url: str, s3_bucket: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The deployment of docs/deployment.md: PostgreSQL metadata, S3 artifacts, jobs on Ray. The
    Ray worker opens the same workspace from the settings alone and writes the model to S3."""
    artifacts, options = s3_bucket
    settings = Settings(
        home=tmp_path / "ws",
        author="tester",
        executor="ray",
        store_url=postgres_url,
        artifacts_url=artifacts,
        artifacts_options=options,
    )
    with keel.Workspace(settings) as ws:
        ws.datasets.add("cancer", cancer())
        ws.retraining.train(spec())
        job, _ = ws.jobs.enqueue("retrain", {"model": "tumor", "trigger": "manual"})
        assert ws.jobs.dispatch() == [job.id]
        ws.jobs.wait(timeout=300)
        done = ws.jobs.get(job.id)
        assert done.status == "succeeded", done.error
        assert not done.result["ran_on"].endswith(f":{os.getpid()}")  # type: ignore[index]
        challenger = ws.models.get("tumor@challenger")
        assert challenger.version == 2
        loaded = ws.models.load("tumor@2")  # its artifact was written to S3 by the Ray worker
        assert len(loaded.predict(cancer().drop(columns=["target"]).head(3))) == 3
