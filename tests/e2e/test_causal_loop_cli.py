"""`keel causal` refute/sensitivity/bootstrap as jobs (--queue), rerun on a new dataset version,
results, and show with the latest refutation verdict and the model a study explains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

EDGES = "x0->t,x1->t,x0->y,x1->y,t->y"


def frame(seed: int = 0, effect: float = 1.0, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "t": t, "y": effect * t + x.sum(axis=1) + rng.normal(size=n)})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    path = tmp_path / "obs.csv"
    frame().to_csv(path, index=False)
    assert keel_cli(home, "init")[0] == 0
    assert keel_json(home, "data", "add", "obs", str(path))["ref"] == "obs@1"
    made = keel_json(home, "causal", "study", "effect", "obs@1", "--edges", EDGES, "-t", "t", "-y", "y")
    assert made["ref"] == "effect@1" and made["model"] is None
    return home


def test_refute_is_shown_and_queued_jobs_wait_for_the_worker(home: Path) -> None:
    code, out, _ = keel_cli(home, "causal", "show", "effect")
    assert code == 0 and "Not refuted yet" in out
    verdict = keel_json(home, "causal", "refute", "effect", "--estimator", "regression")["verdict"]
    code, out, _ = keel_cli(home, "causal", "show", "effect")
    assert code == 0 and "refutation (regression" in out and verdict in out
    assert keel_json(home, "causal", "show", "effect")["refutation"]["payload"]["verdict"] == verdict

    job = keel_json(home, "causal", "refute", "effect", "--queue")
    assert job["kind"] == "causal_refute" and job["status"] == "queued"
    assert keel_json(home, "causal", "refute", "effect", "--queue")["id"] == job["id"]  # one at a time
    queued = keel_json(home, "causal", "sensitivity", "effect", "--queue")
    assert queued["kind"] == "causal_sensitivity" and queued["status"] == "queued"
    code, out, _ = keel_cli(home, "causal", "sensitivity", "nothing", "--queue")
    assert code != 0


def test_sensitivity_and_bootstrap_run_as_jobs_here(home: Path) -> None:
    stored = keel_json(home, "causal", "sensitivity", "effect")
    assert stored["kind"] == "sensitivity" and 0 < stored["payload"]["robustness_value"] < 1
    code, out, _ = keel_cli(home, "causal", "sensitivity", "effect")
    assert code == 0 and "robustness value" in out
    result = keel_json(home, "causal", "bootstrap", "effect", "--estimators", "regression", "--n-boot", "40")
    (interval,) = result["intervals"]
    assert interval["n_boot"] == 40 and interval["ci_low"] < interval["value"] < interval["ci_high"]
    kinds = [r["kind"] for r in keel_json(home, "causal", "results", "effect")]
    assert kinds == ["sensitivity", "sensitivity", "bootstrap"]
    jobs = keel_json(home, "jobs", "list")
    boot = next(j for j in jobs if j["kind"] == "causal_bootstrap")
    assert boot["status"] == "succeeded" and boot["progress"]["done"] == boot["progress"]["total"] == 4


def test_rerun_reports_the_change_of_the_effect(home: Path, tmp_path: Path) -> None:
    assert_one_line_error(keel_cli(home, "causal", "rerun", "effect"), code=1, contains="no estimates")
    keel_json(home, "causal", "estimate", "effect", "--estimators", "regression,aipw")
    path = tmp_path / "obs2.csv"
    frame(seed=1, effect=4.0).to_csv(path, index=False)
    keel_json(home, "data", "add", "obs", str(path))
    code, out, err = keel_cli(home, "causal", "rerun", "effect")
    assert code == 0, err
    assert "effect@1 (obs@1) -> effect@2 (obs@2)" in out and "yes" in out and "|z| > 1.96" in out
    shown = keel_json(home, "causal", "results", "effect@2", "--kind", "effect_change")
    assert shown[0]["payload"]["drifted"] is True

    compared = keel_json(home, "causal", "compare", "effect@1", "effect@2")
    assert compared["previous_study"] == "effect@1" and compared["study"] == "effect@2" and compared["drifted"]
    assert compared["edges"] == {"added": [], "removed": []} and compared["same_question"] is True
    rows = {r["estimator"]: r for r in compared["estimators"]}
    assert rows["regression"]["new"] - rows["regression"]["previous"] == pytest.approx(3.0, abs=0.6)
    code, out, _ = keel_cli(home, "causal", "compare", "effect@1", "effect@2")
    assert code == 0 and "effect@1 (obs@1) -> effect@2 (obs@2)" in out and "regression" in out
    assert_one_line_error(keel_cli(home, "causal", "compare", "effect@1", "effect@9"), code=1, contains="effect")
