"""Every executor in keel.jobs.executors keeps the Executor contract.

`submit(fn, *args)` returns a concurrent.futures.Future whose result is fn(*args), or whose
exception is what fn raised; `shutdown()` returns once the work submitted before it is done (or
left running elsewhere); `make_executor` builds the executor a Settings names; and through a
Workspace, a job that succeeds stores its result and a job that fails stores its error.
A new executor adds one entry to EXECUTORS below; until it does, test_every_executor_has_a_case fails.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import keel
from keel import Settings
from keel.jobs import executors as executors_module
from keel.jobs.executors import LocalExecutor, RayExecutor, make_executor

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

# Lambdas, so that cloudpickle sends them by value: a Ray worker cannot import this test module.
SUBTRACT: Callable[[float, float], float] = lambda a, b: a - b  # noqa: E731
SQRT: Callable[[float], float] = lambda x: math.sqrt(x)  # noqa: E731
NAP: Callable[[float], str] = lambda s: time.sleep(s) or "rested"  # noqa: E731


def _executor_classes() -> list[type]:
    """The executors the module defines: classes with a name, submit and shutdown (not the Protocol)."""
    return [
        cls
        for _, cls in inspect.getmembers(executors_module, inspect.isclass)
        if cls.__module__ == executors_module.__name__
        and cls is not executors_module.Executor
        and isinstance(getattr(cls, "name", None), str)
        and callable(getattr(cls, "submit", None))
    ]


@pytest.fixture(scope="module")
def ray_ready() -> Iterator[None]:
    try:
        import ray
    except ImportError:
        print("\nskipping the Ray executor contract: ray is not installed (pip install 'keelml[ray]')")
        pytest.skip("ray is not installed")
    started = not ray.is_initialized()
    try:
        RayExecutor(num_cpus=2)  # ray.init on loopback, as KEEL_EXECUTOR=ray does
    except Exception as exc:  # noqa: BLE001 - any reason Ray cannot start here
        print(f"\nskipping the Ray executor contract: Ray did not start: {exc}")
        pytest.skip(f"Ray did not start: {exc}")
    yield
    if started:
        ray.shutdown()


EXECUTORS: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "local": lambda request: LocalExecutor(workers=2),
    "ray": lambda request: (request.getfixturevalue("ray_ready"), RayExecutor())[1],
}


@pytest.fixture(params=sorted(EXECUTORS))
def executor_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def executor(executor_name: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    made = EXECUTORS[executor_name](request)
    yield made
    made.shutdown()


def test_every_executor_has_a_case() -> None:
    names = {cls.name for cls in _executor_classes()}
    assert names >= {"local", "ray"}, names  # the enumeration itself finds the executors
    missing = sorted(names - set(EXECUTORS))
    assert not missing, f"executors without a contract case: {missing}; add each to EXECUTORS in {__file__}"


def test_submit_returns_a_future_of_the_result(executor: Any, executor_name: str) -> None:
    assert executor.name == executor_name
    future = executor.submit(SUBTRACT, 7.0, 2.5)  # arguments arrive in order
    assert isinstance(future, Future)
    assert future.result(timeout=120) == 4.5


def test_a_failure_is_the_future_s_exception(executor: Any) -> None:
    future = executor.submit(SQRT, -1.0)
    with pytest.raises(ValueError, match="math domain error"):
        future.result(timeout=120)
    assert isinstance(future.exception(), ValueError)
    assert executor.submit(SQRT, 9.0).result(timeout=120) == 3.0  # one failure leaves the executor usable


def test_many_submissions_each_get_their_own_result(executor: Any) -> None:
    futures = [executor.submit(SUBTRACT, float(i), 1.0) for i in range(8)]
    assert [f.result(timeout=120) for f in futures] == [float(i) - 1.0 for i in range(8)]


def test_work_submitted_before_shutdown_completes(executor: Any) -> None:
    futures = [executor.submit(NAP, 0.2) for _ in range(3)]
    assert executor.shutdown() is None
    assert [f.result(timeout=120) for f in futures] == ["rested"] * 3


def test_make_executor_builds_the_executor_the_settings_name(executor: Any, executor_name: str, tmp_path: Path) -> None:
    made = make_executor(Settings(home=tmp_path / "ws", executor=executor_name))
    try:
        assert type(made) is type(executor) and made.name == executor_name
    finally:
        made.shutdown()


def test_jobs_record_their_result_or_their_error(executor: Any, executor_name: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = (X["a"] + X["b"] > 0).astype(int)
    with keel.Workspace(Settings(home=tmp_path / "ws", author="tester", executor=executor_name)) as ws:
        ws.datasets.add("points", X)
        ws.models.register("m", LogisticRegression().fit(X, y), X=X)
        assert ws.jobs.executor.name == executor_name
        done = ws.jobs.run("batch_score", {"model": "m@1", "dataset": "points@1", "output": "scored"}, timeout=300)
        assert done.status == "succeeded", done.error
        assert done.result is not None and done.error is None
        assert len(ws.datasets.load("scored@latest")) == 60
        failed = ws.jobs.run("batch_score", {"model": "no-such-model@1", "dataset": "points@1"}, timeout=300)
        assert failed.status == "failed" and failed.result is None
        assert failed.error is not None and "no-such-model" in failed.error
