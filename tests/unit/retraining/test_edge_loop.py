"""Edge builds that follow the champion: a project's `edge:` targets are built for each challenger and
weighed by the gate (a build that does not fit fails the promotion), or follow a promotion as a job that
alerts; builds are verified on the version's held-out rows; the timeline shows them."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_digits

import keel
from keel.workspace.handlers import run_job

HOST = {"target": "c", "quantize": "float32", "mcu": "host"}
M0 = {"target": "c", "quantize": "float32", "mcu": "cortex-m0"}  # 32 KB of flash


def digits() -> pd.DataFrame:
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:600], columns=[f"p{i}" for i in range(64)])
    frame["digit"] = y[:600]
    return frame


def project(trees: int = 5, depth: int | None = 6, **edge: Any) -> keel.Project:
    return keel.Project.from_dict(
        {
            "model": "digits",
            "data": {"dataset": "digits", "target": "digit", "split": {"test_fraction": 0.25, "seed": 0}},
            "estimator": {
                "class": "sklearn.ensemble.RandomForestClassifier",
                "params": {"n_estimators": trees, "max_depth": depth, "random_state": 0},
                "preprocess": "none",
            },
            "evaluation": {"metrics": ["accuracy"], "primary": "accuracy"},
            "gate": {"min_improvement": -1.0},  # the edge check decides these tests, not the metric
            "edge": {"qemu": False, **edge},
        }
    )


@pytest.fixture
def dws(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("digits", digits())
    return ws


def test_gate_mode_builds_the_challenger_on_its_holdout_and_the_timeline_shows_it(dws: keel.Workspace) -> None:
    d = dws.retraining.train(project(targets=[HOST]))
    assert d.outcome == "promoted"
    (verdict,) = d.evidence["edge"]["builds"]
    assert d.evidence["edge"]["mode"] == "gate" and verdict["passed"] and verdict["target"] == "c/float32/host"
    build = dws.edge.get(verdict["build"])
    assert build.model == "digits@1" and build.report["class_agreement"] == 1.0
    # verified on the 150 rows the cycle held out, with their labels; calibrated on the training data
    assert build.report["n_rows"] == d.evidence["data"]["holdout_rows"] == 150
    assert build.report["rows_source"] == "the held-out rows passed to the build (150 rows)"
    assert build.report["accuracy_python"] == pytest.approx(d.evidence["metrics"]["challenger"]["accuracy"])
    assert dws.edge.by_version("digits") == {1: [build]}


def test_a_later_build_of_a_trained_version_is_verified_on_the_holdout_the_cycle_kept(dws: keel.Workspace) -> None:
    dws.retraining.train(project(targets=[HOST]))
    again = dws.edge.build("digits@champion", mcu="host", qemu=False)
    assert again.report["rows_source"] == "the holdout of digits@1 the retraining scored digits@1 on (150 rows)"
    assert again.report["n_rows"] == 150 and again.report["accuracy_python"] is not None


def test_a_build_that_no_longer_fits_fails_the_gate_and_the_champion_stays(dws: keel.Workspace) -> None:
    assert dws.retraining.train(project(targets=[M0])).outcome == "promoted"
    d = dws.retraining.train(project(trees=150, depth=None, targets=[M0]))
    assert d.outcome == "rejected" and dws.models.get("digits@champion").version == 1
    (verdict,) = d.evidence["edge"]["builds"]
    assert not verdict["passed"] and verdict["build"] is None
    assert "max_flash_bytes=32768" in verdict["reasons"][0]
    assert any(
        r.startswith("check edge c/float32/cortex-m0 failed: the build could not be made")
        for r in d.evidence["gate"]["reasons"]
    )
    assert "check edge c/float32/cortex-m0 failed" in d.summary()


def test_a_lossless_grid_passes_and_a_target_the_model_cannot_take_fails_the_gate(dws: keel.Workspace) -> None:
    d = dws.retraining.train(project(targets=[{**HOST, "quantize": "int16"}], min_agreement=1.0))
    verdict = d.evidence["edge"]["builds"][0]
    # digits' pixels are integers: int16 thresholds are lossless here, so it keeps full agreement
    assert verdict["passed"] and d.outcome == "promoted"
    strict = dws.retraining.train(project(trees=6, targets=[{**HOST, "quantize": "int8"}]))
    # trees take no int8 build: the builder refuses it by name, and that fails the gate
    assert strict.outcome == "rejected" and "int8" in strict.evidence["edge"]["builds"][0]["reasons"][0]


def test_alert_mode_promotes_then_builds_as_a_job_that_alerts(dws: keel.Workspace) -> None:
    d = dws.retraining.train(project(trees=150, depth=None, targets=[M0, HOST], on_failure="alert"))
    assert d.outcome == "promoted" and d.evidence["edge"]["mode"] == "alert"
    job = dws.jobs.get(d.evidence["edge"]["job"])
    assert (job.kind, job.status, job.payload) == ("edge_follow", "queued", {"model": "digits@1"})
    run_job(dws.jobs.factory, job.id)
    result = dws.jobs.get(job.id).result
    assert result["failed"] == ["c/float32/cortex-m0"] and [b["passed"] for b in result["builds"]] == [False, True]
    (alert,) = dws.monitoring.alerts.list(model="digits", status="active")
    assert alert.rule == "edge-build-failed" and alert.feature == "c/float32/cortex-m0"
    assert alert.title.startswith("digits@1: edge build c/float32/cortex-m0 failed: the build could not be made")
    assert [b.mcu for b in dws.edge.by_version("digits")[1]] == ["host"]  # the one that could be made


def test_an_edge_build_job_runs_one_build(dws: keel.Workspace) -> None:
    dws.retraining.train(project(targets=[HOST]))
    job = dws.jobs.run("edge_build", {"model": "digits@1", "mcu": "host", "qemu": False, "quantize": "int16"})
    assert job.status == "succeeded" and job.result["class_agreement"] == 1.0
    assert dws.edge.get(job.result["build"]).quantize == "int16"
    bad = dws.jobs.run("edge_build", {"model": "digits@1", "target": "wasm"})
    assert bad.status == "failed" and "'target' must be one of" in (bad.error or "")
