"""`keel train keel.yaml`, `keel retrain`, `keel models timeline | approve | rollback`, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import assert_one_line_error, keel_cli, keel_json
from sklearn.datasets import load_breast_cancer

import keel
from keel import Settings

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PROJECT = """\
model: tumor
data:
  dataset: cancer
  target: target
  split: {{test_fraction: 0.3, seed: 0}}
estimator:
  class: {cls}
  params: {params}
evaluation:
  metrics: [roc_auc, accuracy]
  primary: roc_auc
gate:
  approval: {approval}
"""


def write(
    path: Path,
    cls: str = "sklearn.linear_model.LogisticRegression",
    params: str = "{max_iter: 3000, C: 0.001}",
    approval: str = "false",
) -> Path:
    path.write_text(PROJECT.format(cls=cls, params=params, approval=approval))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    with keel.Workspace(Settings(home=path, author="tester")) as ws:
        ws.datasets.add("cancer", frame)
    return path


def test_train_retrain_approve_timeline_and_rollback(home: Path, tmp_path: Path) -> None:
    project = write(tmp_path / "keel.yaml")
    code, out, err = keel_cli(home, "train", str(project))
    assert code == 0, err
    assert "tumor@1 promoted (manual)" in out and "cancer@1: 398 rows to train, 171 held out" in out
    assert "no champion to beat" in out

    boosted = write(
        tmp_path / "boosted.yaml", "sklearn.ensemble.HistGradientBoostingClassifier", "{max_iter: 60}", "true"
    )
    held = keel_json(home, "train", str(boosted))
    assert held["outcome"] == "awaiting_approval" and held["version"] == 2
    assert held["evidence"]["metrics"]["challenger"]["roc_auc"] > held["evidence"]["metrics"]["champion"]["roc_auc"]
    code, out, _ = keel_cli(home, "models", "approve", "tumor", "2", "--reason", "reviewed")
    assert code == 0 and "tumor@2 approved (approval)" in out

    retrained = keel_json(home, "retrain", "tumor")  # the stored project: boosted, with approval
    assert retrained["outcome"] in ("awaiting_approval", "rejected") and retrained["version"] == 3

    code, out, _ = keel_cli(home, "models", "timeline", "tumor")
    assert code == 0 and "approved" in out and "promoted" in out
    assert [d["trigger"] for d in keel_json(home, "models", "timeline", "tumor")] == [
        "manual",
        "approval",
        "manual",
        "manual",
    ]

    code, out, _ = keel_cli(home, "models", "rollback", "tumor", "--reason", "pager")
    assert code == 0 and "tumor@1 rolled back (rollback)" in out
    assert keel_json(home, "models", "show", "tumor@champion")["version"] == 1


def test_mistakes_are_one_line_errors_naming_the_location(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "keel.yaml"
    bad.write_text(PROJECT.format(cls="sklearn.linear_model.LogisticRegression", params="{C: 1}", approval="maybe"))
    assert_one_line_error(
        keel_cli(home, "train", str(bad)), code=1, contains="keel.yaml: gate.approval: expected true or false"
    )
    assert_one_line_error(keel_cli(home, "train", str(tmp_path / "nope.yaml")), code=1, contains="no such project file")
    assert_one_line_error(keel_cli(home, "retrain", "tumor"), code=1, contains="has no project")
    failing = write(tmp_path / "f.yaml", params="{nope: 1}")
    code, out, err = keel_cli(home, "train", str(failing))
    assert code == 1 and "training failed, the champion is unchanged" in err and "nope" in err
    assert "Traceback" not in out + err
    assert [d["outcome"] for d in keel_json(home, "models", "timeline", "tumor")] == ["failed"]


def test_background_retraining_runs_in_keel_worker(home: Path, tmp_path: Path) -> None:
    assert keel_cli(home, "train", str(write(tmp_path / "keel.yaml")))[0] == 0
    queued = keel_json(home, "retrain", "tumor", "--background")
    assert queued["status"] == "queued" and queued["kind"] == "retrain"
    again = keel_json(home, "retrain", "tumor", "--background")
    assert again["id"] == queued["id"]  # one active job per model
    code, out, err = keel_cli(home, "worker", "--once")
    assert code == 0, err
    assert f"job {queued['id']} retrain succeeded" in out
    [job] = keel_json(home, "jobs", "list")
    assert job["status"] == "succeeded" and job["result"]["version"] == 2
    assert keel_json(home, "jobs", "show", str(job["id"]))["attempts"] == 1
    assert [d["trigger"] for d in keel_json(home, "models", "timeline", "tumor")] == ["manual", "manual"]
    assert_one_line_error(keel_cli(home, "retrain", "nope", "--background"), code=1, contains="has no project")
    assert_one_line_error(keel_cli(home, "jobs", "show", "999"), code=1, contains="No job 999")


def test_models_score_runs_a_batch_job_and_names_mistakes(home: Path, tmp_path: Path) -> None:
    assert keel_cli(home, "train", str(write(tmp_path / "keel.yaml")))[0] == 0
    code, out, err = keel_cli(
        home, "models", "score", "tumor@champion", "cancer", "--output", "scores", "--chunk-rows", "200"
    )
    assert code == 0, err
    assert "Scored 569 rows with tumor@1 in 3 chunks -> scores@1" in out
    queued = keel_json(home, "models", "score", "tumor@champion", "cancer", "--background")
    assert queued["status"] == "queued" and queued["kind"] == "batch_score"
    assert_one_line_error(keel_cli(home, "models", "score", "tumor@nope", "cancer"), code=1, contains="nope")
    assert_one_line_error(keel_cli(home, "models", "score", "tumor@champion", "missing"), code=1, contains="missing")


def test_tune_searches_then_gates(home: Path, tmp_path: Path) -> None:
    project = write(tmp_path / "keel.yaml")
    project.write_text(
        project.read_text() + "tuning:\n  params: {C: {low: 0.0005, high: 1.0, log: true}}\n  trials: 3\n"
    )
    assert keel_cli(home, "train", str(project))[0] == 0
    code, out, err = keel_cli(home, "tune", "tumor")
    assert code == 0, err
    assert "3 trials (random search): best roc_auc" in out and "(tune)" in out
    assert_one_line_error(keel_cli(home, "tune", "nope"), code=1, contains="has no project")
