"""Runs: what one records (params, metric series, tags, inputs, artifacts, status, times, code,
environment), buffered metric writes, and the guarantees at end() and at interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import event

import keel
from keel import Settings
from keel.entities import DatasetVersion, RunStatus
from keel.errors import ConflictError, CorruptArtifactError, InvalidInputError, NotFoundError


@pytest.fixture
def credit(ws: keel.Workspace) -> DatasetVersion:
    return ws.datasets.add("credit", pd.DataFrame({"income": [1.0, 2.0, 3.0], "default": [0, 1, 0]}))


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# -- what a run records ---------------------------------------------------------------------------
def test_run_records_params_tags_metric_series_and_times(ws: keel.Workspace) -> None:
    with ws.runs.start(
        "credit", name="baseline", params={"max_depth": 6, "solver": "lbfgs", "lr": 0.1}, tags={"team": "risk"}
    ) as run:
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            run.log_metric("loss", loss, step=step)
        run.log_metrics({"auc": 0.81, "f1": 0.7})
        run.set_tag("stage", "tuned")
    got = ws.runs.get(run.id)
    assert got.name == "baseline" and got.experiment == "credit" and got.author == "tester"
    assert got.params == {"max_depth": "6", "solver": "lbfgs", "lr": "0.1"}
    assert got.tags == {"team": "risk", "stage": "tuned"}
    assert got.metrics == {"loss": 0.3, "auc": 0.81, "f1": 0.7}  # the latest value of each series
    assert [(p.step, p.value) for p in ws.runs.metric_history(run.id, "loss")] == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert got.status is RunStatus.FINISHED
    assert got.ended_at is not None and got.started_at <= got.ended_at
    assert got.started_at.tzinfo is not None and got.duration_s is not None and got.duration_s >= 0


def test_metric_steps_default_to_the_series_next_step(ws: keel.Workspace) -> None:
    with ws.runs.start() as run:
        run.log_metric("loss", 1.0)
        run.log_metric("loss", 0.5, step=10)
        run.log_metric("loss", 0.4)
        run.log_metric("acc", 0.1)
    assert [p.step for p in ws.runs.metric_history(run.id, "loss")] == [0, 10, 11]
    assert [p.step for p in ws.runs.metric_history(run.id, "acc")] == [0]


def test_latest_metric_is_the_highest_step_not_the_last_logged(ws: keel.Workspace) -> None:
    with ws.runs.start() as run:
        run.log_metric("loss", 0.2, step=5)
        run.flush()
        run.log_metric("loss", 0.9, step=1)  # a late point for an earlier step
    assert ws.runs.get(run.id).metrics["loss"] == 0.2


def test_param_is_immutable_but_the_same_value_may_be_logged_again(ws: keel.Workspace) -> None:
    with ws.runs.start(params={"max_depth": 6}) as run:
        run.log_param("max_depth", 6)
        run.log_param("max_depth", 6.0)  # the same number
        with pytest.raises(ConflictError, match=r"max_depth.*'6'.*immutable"):
            run.log_param("max_depth", 7)
        run.set_tag("stage", "a")
        run.set_tag("stage", "b")  # tags, unlike params, can change
    got = ws.runs.get(run.id)
    assert got.params == {"max_depth": "6"} and got.tags == {"stage": "b"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "high", None])
def test_log_metric_refuses_values_that_are_not_finite_numbers(ws: keel.Workspace, value: object) -> None:
    with ws.runs.start() as run:
        with pytest.raises(InvalidInputError, match="loss"):
            run.log_metric("loss", value)  # type: ignore[arg-type]
    assert ws.runs.metric_history(run.id) == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda run: run.log_metric("", 1.0), "metric key"),
        (lambda run: run.log_metric("k" * 251, 1.0), "at most 250"),
        (lambda run: run.log_metric("loss", 1.0, step=1.5), "integer"),
        (lambda run: run.log_metric("loss", 1.0, step="one"), "integer"),
        (lambda run: run.log_param("p" * 251, 1), "param key"),
        (lambda run: run.set_tag("", "x"), "tag key"),
        (lambda run: run.log_bytes(b"x", "../escape.txt"), "relative path"),
        (lambda run: run.log_bytes(b"x", "a" * 513), "relative path"),
        (lambda run: run.log_bytes("text", "notes.txt"), "bytes"),
        (lambda run: run.end("done"), "Unknown run status 'done'"),
    ],
)
def test_bad_logging_input_is_refused_before_it_reaches_the_store(ws: keel.Workspace, call: object, match: str) -> None:
    with ws.runs.start() as run:
        with pytest.raises(InvalidInputError, match=match):
            call(run)  # type: ignore[operator]


def test_start_refuses_bad_input_without_leaving_a_run_behind(ws: keel.Workspace) -> None:
    with pytest.raises(InvalidInputError, match="param key"):
        ws.runs.start("credit", params={"": 1})
    with pytest.raises(InvalidInputError, match="run name"):
        ws.runs.start("credit", name="n" * 257)
    with pytest.raises(NotFoundError, match="nope"):
        ws.runs.start("credit", inputs=["nope@1"])
    assert ws.runs.list() == []


def test_logging_to_an_ended_run_is_refused(ws: keel.Workspace) -> None:
    run = ws.runs.start()
    first = run.end()
    assert run.end() == first  # ending twice is a no-op
    with pytest.raises(InvalidInputError, match="has ended"):
        run.log_metric("loss", 1.0)


# -- status -------------------------------------------------------------------------------------
def test_exception_in_the_with_block_marks_the_run_failed_and_keeps_its_points(ws: keel.Workspace) -> None:
    with pytest.raises(RuntimeError), ws.runs.start() as run:
        run.log_metric("loss", 0.5)
        raise RuntimeError("diverged")
    got = ws.runs.get(run.id)
    assert got.status is RunStatus.FAILED and got.ended_at is not None
    assert got.metrics == {"loss": 0.5}


def test_keyboard_interrupt_in_the_with_block_marks_the_run_killed(ws: keel.Workspace) -> None:
    with pytest.raises(KeyboardInterrupt), ws.runs.start() as run:
        raise KeyboardInterrupt
    assert ws.runs.get(run.id).status is RunStatus.KILLED


def test_running_run_has_no_end_time(ws: keel.Workspace) -> None:
    run = ws.runs.start()
    got = ws.runs.get(run.id)
    assert got.status is RunStatus.RUNNING and got.ended_at is None and got.duration_s is None
    run.end(RunStatus.KILLED)
    assert ws.runs.get(run.id).status is RunStatus.KILLED


# -- lineage, artifacts, code and environment ---------------------------------------------------
def test_run_records_the_dataset_versions_it_read(ws: keel.Workspace, credit: DatasetVersion) -> None:
    v2 = ws.datasets.add("credit", pd.DataFrame({"income": [5.0], "default": [1]}))
    with ws.runs.start(inputs=["credit@1"]) as run:
        assert run.log_input(v2) == v2
        run.log_input("credit@1")  # logging the same input twice records it once
    assert ws.runs.get(run.id).inputs == ("credit@1", "credit@2")
    other = ws.runs.start(inputs="credit@2").end()
    assert [r.id for r in ws.runs.reading("credit@2")] == [other.id, run.id]
    assert [r.id for r in ws.runs.reading(credit)] == [run.id]
    assert ws.consumers("credit@1")["runs"] == [run.id]


def test_artifacts_are_stored_read_back_and_verified(ws: keel.Workspace, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text("<h1>auc 0.91</h1>")
    with ws.runs.start() as run:
        digest = run.log_artifact(report)
        run.log_bytes(b"\x00\x01binary", "plots/roc.bin")
    got = ws.runs.get(run.id)
    assert [(a.path, a.size_bytes) for a in got.artifacts] == [("plots/roc.bin", 8), ("report.html", 17)]
    assert got.artifacts[1].digest == digest
    assert ws.runs.artifact(run.id, "report.html") == b"<h1>auc 0.91</h1>"
    assert ws.runs.artifact(run.id, "plots/roc.bin") == b"\x00\x01binary"
    with pytest.raises(NotFoundError, match="no artifact 'roc.bin'.*plots/roc.bin"):
        ws.runs.artifact(run.id, "roc.bin")
    # Bytes changed behind keel's back are reported, not returned.
    blob = next(p for p in (tmp_path / "ws").rglob("*") if p.is_file() and p.name == digest.removeprefix("sha256:")[2:])
    blob.write_bytes(b"<h1>auc 0.99</h1>")
    with pytest.raises(CorruptArtifactError):
        ws.runs.artifact(run.id, "report.html")


def test_replacing_an_artifact_lets_gc_remove_the_old_bytes(ws: keel.Workspace) -> None:
    with ws.runs.start() as run:
        old = run.log_bytes(b"first draft", "notes.txt")
        new = run.log_bytes(b"final", "notes.txt")
    report = ws.gc(grace_s=0)
    assert old in report.deleted and new not in report.deleted
    assert ws.runs.artifact(run.id, "notes.txt") == b"final"


def _committed(repo: Path, files: dict[str, str]) -> tuple[Path, str]:
    """A new git repository at `repo` with `files` committed; (repo, HEAD's commit)."""
    _git(repo.parent, "init", "-q", repo.name)
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    return repo, _git(repo, "rev-parse", "HEAD")


def test_code_version_is_the_git_commit_of_code_dir(
    ws: keel.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.tracking import _git as git_capture

    monkeypatch.setattr(git_capture.CodeVersions, "rescan_s", 0.0)  # every run looks at the tracked files
    repo, head = _committed(tmp_path / "project", {"train.py": "print('v1')\n"})
    assert ws.runs.start(code_dir=repo).end().code_version == head
    (repo / "train.py").write_text("print('v2')\n")  # an uncommitted change to a tracked file
    assert ws.runs.start(code_dir=repo).end().code_version == f"{head}-dirty"
    _git(repo, "commit", "-q", "-am", "v2")  # a new commit in the same process is seen
    assert ws.runs.start(code_dir=repo).end().code_version == _git(repo, "rev-parse", "HEAD") != head


def test_git_is_asked_again_only_when_the_repository_or_a_tracked_file_changed(
    ws: keel.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.tracking import _git as git_capture

    repo, head = _committed(tmp_path / "project", {"src/train.py": "print('v1')\n"})
    monkeypatch.setattr(git_capture.CodeVersions, "rescan_s", 0.0)
    asked: list[Path] = []
    real = git_capture._git_commit
    monkeypatch.setattr(git_capture, "_git_commit", lambda cwd: asked.append(cwd) or real(cwd))
    versions = [ws.runs.start(code_dir=repo / "src").end().code_version for _ in range(3)]
    assert versions == [head] * 3 and len(asked) == 1  # nothing moved: one git process for three runs
    (repo / "src" / "train.py").write_text("print('v2, longer')\n")
    assert ws.runs.start(code_dir=repo / "src").end().code_version == f"{head}-dirty" and len(asked) == 2
    (repo / "notes.md").write_text("untracked\n")  # untracked files do not count, as in git status -uno
    assert ws.runs.start(code_dir=repo / "src").end().code_version == f"{head}-dirty" and len(asked) == 2
    _git(repo, "checkout", "-q", "--", "src/train.py")
    assert ws.runs.start(code_dir=repo / "src").end().code_version == head and len(asked) == 3
    _git(repo, "add", "notes.md")  # the index moved
    assert ws.runs.start(code_dir=repo / "src").end().code_version == f"{head}-dirty" and len(asked) == 4
    _git(repo, "commit", "-q", "-m", "notes")
    head = _git(repo, "rev-parse", "HEAD")
    # Tracked files are looked at again once rescan_s passed; HEAD and the index on every run.
    monkeypatch.setattr(git_capture.CodeVersions, "rescan_s", 3600.0)
    assert ws.runs.start(code_dir=repo / "src").end().code_version == head and len(asked) == 5
    (repo / "src" / "train.py").write_text("print('v3 within the hour')\n")
    assert ws.runs.start(code_dir=repo / "src").end().code_version == head and len(asked) == 5
    monkeypatch.setattr(git_capture.CodeVersions, "rescan_s", 0.0)
    assert ws.runs.start(code_dir=repo / "src").end().code_version == f"{head}-dirty" and len(asked) == 6


def test_a_repository_with_too_many_files_to_watch_asks_git_once_per_run(
    ws: keel.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.tracking import _git as git_capture

    repo, head = _committed(tmp_path / "big", {"a.py": "a = 1\n"})
    monkeypatch.setattr(git_capture.CodeVersions, "max_files", 0)
    listed, asked = [], []
    real_tracked, real_commit = git_capture.CodeVersions._tracked, git_capture._git_commit
    monkeypatch.setattr(
        git_capture.CodeVersions, "_tracked", lambda self, folder: listed.append(folder) or real_tracked(self, folder)
    )
    monkeypatch.setattr(git_capture, "_git_commit", lambda cwd: asked.append(cwd) or real_commit(cwd))
    assert [ws.runs.start(code_dir=repo).end().code_version for _ in range(3)] == [head] * 3
    assert len(asked) == 3 and len(listed) == 1  # git status each run; the files are listed once


def test_code_version_is_none_outside_a_git_repository(ws: keel.Workspace, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert ws.runs.start(code_dir=plain).end().code_version is None
    with pytest.raises(InvalidInputError, match="not a folder"):
        ws.runs.start(code_dir=tmp_path / "missing")


def test_environment_records_python_and_key_package_versions(ws: keel.Workspace) -> None:
    import sklearn

    env = ws.runs.start().end().environment
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["scikit-learn"] == sklearn.__version__
    assert {"numpy", "pandas", "keelml"} <= set(env)


# -- buffered metric writes ---------------------------------------------------------------------
def test_logging_100k_points_takes_a_few_dozen_statements_and_loses_none(ws: keel.Workspace) -> None:
    statements: list[str] = []
    run = ws.runs.start()
    event.listen(ws._meta.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for step in range(100_000):
        run.log_metric("loss", 1.0 / (step + 1))
    run.end()
    assert len(statements) <= 50, f"{len(statements)} statements for 100,000 points"
    history = ws.runs.metric_history(run.id, "loss")
    assert len(history) == 100_000
    assert history[-1].step == 99_999 and history[-1].value == 1.0 / 100_000


_SCRIPT = """
import sys
import keel
from keel import Settings

ws = keel.Workspace(Settings(home=sys.argv[1], author="script"))

def train():
    run = ws.runs.start("exit", params={"n": 12345})  # no end(), no `with`; the run is then unreferenced
    for step in range(12345):
        run.log_metric("loss", 1.0 / (step + 1))
    return run.id

print(train())
if sys.argv[2] == "crash":
    raise RuntimeError("the script failed")
"""


@pytest.mark.parametrize(("ending", "status"), [("normal", RunStatus.FINISHED), ("crash", RunStatus.FAILED)])
def test_points_buffered_when_the_process_exits_without_end_are_written(
    tmp_path: Path, ending: str, status: RunStatus
) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    home = tmp_path / "ws"
    done = subprocess.run([sys.executable, str(script), str(home), ending], capture_output=True, text=True, timeout=120)
    assert done.returncode == (0 if ending == "normal" else 1), done.stderr
    run_id = done.stdout.strip()
    with keel.Workspace(Settings(home=home)) as ws:
        assert len(ws.runs.metric_history(run_id, "loss")) == 12345  # 2 full batches + a partial one
        got = ws.runs.get(run_id)
        assert got.status is status and got.ended_at is not None and got.params == {"n": "12345"}


def test_registering_from_an_active_run_sees_its_buffered_metrics(ws: keel.Workspace) -> None:
    from sklearn.dummy import DummyClassifier

    with ws.runs.start() as run:
        run.log_metric("auc", 0.9)  # still in the buffer
        mv = ws.models.register("m", DummyClassifier().fit([[0], [1]], [0, 1]), run=run)
    assert mv.metrics == {"auc": 0.9}


def test_get_accepts_a_unique_id_prefix_and_names_unknown_ids(ws: keel.Workspace) -> None:
    run = ws.runs.start()
    assert ws.runs.get(run.id[:8]).id == run.id
    with pytest.raises(NotFoundError, match="'0000000000'"):
        ws.runs.get("0000000000")


def test_list_gives_newest_runs_first_and_filters_by_experiment(ws: keel.Workspace) -> None:
    a = ws.runs.start("a").end()
    b = ws.runs.start("b").end()
    c = ws.runs.start("a").end()
    assert [r.id for r in ws.runs.list()] == [c.id, b.id, a.id]
    assert [r.id for r in ws.runs.list(experiment="a", limit=1)] == [c.id]
    assert ws.runs.experiments() == [("a", 2), ("b", 1)]


# -- by run id: runs driven from elsewhere (the HTTP API) -----------------------------------------
def test_a_detached_run_is_logged_to_and_ended_by_id(ws: keel.Workspace, credit: DatasetVersion) -> None:
    active = ws.runs.start("remote")
    active.log_metric("loss", 0.9)  # buffered; detach() writes it
    active.detach()
    with pytest.raises(InvalidInputError, match="detached"):
        active.log_metric("loss", 0.1)
    ws.runs.log_params(active.id, {"lr": 0.1})
    ws.runs.set_tags(active.id, {"via": "api"})
    assert [v.ref for v in ws.runs.log_inputs(active.id, ["credit@1"])] == ["credit@1"]
    # A step of None continues the stored series; an explicit step is kept.
    assert (
        ws.runs.log_metric_points(
            active.id, [("loss", 0.5, None, None), ("loss", 0.4, None, 12.5), ("auc", 0.7, 3, None)]
        )
        == 3
    )
    assert ws.runs.get(active.id).status is RunStatus.RUNNING
    ended = ws.runs.end(active.id, "killed")
    assert ended.status is RunStatus.KILLED and ended.params == {"lr": "0.1"} and ended.tags == {"via": "api"}
    assert ended.inputs == ("credit@1",) and ended.metrics == {"loss": 0.4, "auc": 0.7}
    assert [(p.step, p.value) for p in ws.runs.metric_history(active.id, "loss")] == [(0, 0.9), (1, 0.5), (2, 0.4)]
    assert ws.runs.metric_history(active.id, "loss")[2].timestamp == 12.5
    # Ending again keeps the first status; an ended run takes no more params or points.
    assert ws.runs.end(active.id, "finished").status is RunStatus.KILLED
    with pytest.raises(InvalidInputError, match=r"has ended \(killed\)"):
        ws.runs.log_metric_points(active.id, [("loss", 0.1, None, None)])
    with pytest.raises(InvalidInputError, match="must be finite"):
        ws.runs.log_metric_points(ws.runs.start().id, [("loss", float("nan"), 0, None)])


# -- metric timestamps: seconds since the epoch, 1970-01-01 to 9999-12-31 ------------------------
@pytest.mark.parametrize(
    ("timestamp", "match"),
    [
        (1e300, "between 0 .1970-01-01. and 253402300800"),
        (-1e300, "between 0"),
        (-1.0, "between 0"),
        (253402300800.0, "between 0"),  # 10000-01-01: one past the range
        (1.7e12, "looks like milliseconds"),  # a time in milliseconds, as MLflow takes them
        (float("inf"), "must be finite"),
        (float("nan"), "must be finite"),
        ("noon", "seconds since the epoch"),
    ],
)
def test_a_metric_timestamp_outside_the_calendar_is_refused_naming_key_and_value(
    ws: keel.Workspace, timestamp: object, match: str
) -> None:
    with ws.runs.start() as run:
        run.log_metric("loss", 0.5, step=0)
        run.flush()
        with pytest.raises(InvalidInputError, match=match) as info:
            run.log_metric("loss", 0.1, step=1, timestamp=timestamp)  # type: ignore[arg-type]
        assert "'loss'" in str(info.value)
    run_id = ws.runs.start().id
    with pytest.raises(InvalidInputError, match=match) as info:
        ws.runs.log_metric_points(run_id, [("auc", 0.7, 0, 12.0), ("auc", 0.8, 1, timestamp)])  # type: ignore[list-item]
    assert "'auc'" in str(info.value)
    assert [p.step for p in ws.runs.metric_history(run.id)] == [0]  # nothing of a refused call is stored
    assert ws.runs.metric_history(run_id) == []


@pytest.mark.parametrize("timestamp", [0.0, 1.5, 1_767_225_600.25, 253402300799.999])
def test_metric_timestamps_inside_the_range_are_kept(ws: keel.Workspace, timestamp: float) -> None:
    run = ws.runs.start()
    ws.runs.log_metric_points(run.id, [("auc", 0.7, 0, timestamp)])
    run.log_metric("loss", 0.5, timestamp=timestamp)
    run.end()
    assert {p.timestamp for p in ws.runs.metric_history(run.id)} == {timestamp}


def test_steps_outside_64_bits_are_refused_by_name(ws: keel.Workspace) -> None:
    with ws.runs.start("steps") as run:
        with pytest.raises(keel.InvalidInputError, match="step of metric 'loss'"):
            run.log_metric("loss", 1.0, step=2**63)
        run.log_metric("loss", 1.0, step=2**63 - 2)  # the largest: its next step still fits
        run.log_metric("loss", 2.0, step=-5)
        with pytest.raises(keel.InvalidInputError, match="step of metric 'acc'"):
            ws.runs.log_metric_points(run.id, [("acc", 0.5, 2**64, None)])
    assert [p.step for p in ws.runs.metric_history(run.id, "loss")] == [-5, 2**63 - 2]
