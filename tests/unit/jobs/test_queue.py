"""The job queue in the store (SQLite and PostgreSQL): one claim per job, recovery of jobs whose
worker died, nothing run twice once finished; and jobs run end to end on the local executor."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from retraining.test_retraining import cancer, spec  # tests/unit is on sys.path (rootdir import mode)
from sqlalchemy import update

import keel
from keel.errors import InvalidInputError
from keel.jobs.queue import STALE_AFTER_S
from keel.storage import schema
from keel.storage._common import now

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def test_dedup_keeps_one_active_job_per_key(any_ws: keel.Workspace) -> None:
    a, created_a = any_ws.jobs.enqueue("retrain", {"model": "m"}, dedup_key="retrain:m")
    b, created_b = any_ws.jobs.enqueue("retrain", {"model": "m"}, dedup_key="retrain:m")
    assert created_a and not created_b and a.id == b.id
    any_ws._meta.jobs.finish(a.id, result={})
    c, created_c = any_ws.jobs.enqueue("retrain", {"model": "m"}, dedup_key="retrain:m")
    assert created_c and c.id != a.id  # a finished job no longer blocks its key
    with pytest.raises(InvalidInputError, match="Unknown job kind 'train'"):
        any_ws.jobs.enqueue("train", {})


def test_concurrent_claims_give_each_job_to_exactly_one_worker(any_ws: keel.Workspace) -> None:
    ids = [any_ws.jobs.enqueue("retrain", {"model": f"m{i}"})[0].id for i in range(20)]
    claimed: list[list[int]] = []

    def claim(worker: str) -> None:
        got: list[int] = []
        while batch := any_ws._meta.jobs.claim(worker, limit=3):
            got += [j.id for j in batch]
        claimed.append(got)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for got in claimed for i in got]
    assert sorted(every) == ids  # each job once, none lost
    assert {j.status for j in any_ws.jobs.list(limit=50)} == {"running"}


def test_a_job_whose_worker_died_is_queued_again_then_failed_after_its_attempts(any_ws: keel.Workspace) -> None:
    job, _ = any_ws.jobs.enqueue("retrain", {"model": "m"}, max_attempts=2)
    store = any_ws._meta.jobs

    def die() -> None:  # the worker stops heartbeating
        with store.begin() as conn:
            conn.execute(update(schema.jobs).values(heartbeat_at=now() - timedelta(seconds=STALE_AFTER_S + 5)))

    [claimed] = store.claim("w1")
    assert claimed.attempts == 1
    die()
    assert store.requeue_stale(STALE_AFTER_S) == ([job.id], [])
    [again] = store.claim("w2")
    assert (again.attempts, again.worker) == (2, "w2")
    die()
    assert store.requeue_stale(STALE_AFTER_S) == ([], [job.id])
    failed = store.get(job.id)
    assert failed.status == "failed" and "stopped answering" in (failed.error or "")
    done, _ = any_ws.jobs.enqueue("retrain", {"model": "n"})
    store.claim("w3")
    store.finish(done.id, result={"ok": 1})
    die()
    assert (
        store.requeue_stale(STALE_AFTER_S) == ([], []) and store.get(done.id).status == "succeeded"
    )  # never run twice


def test_a_retrain_job_runs_on_the_local_executor_and_records_its_result(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec())
    job, _ = ws.jobs.enqueue("retrain", {"model": "tumor", "trigger": "manual"})
    assert ws.jobs.dispatch(slots=2) == [job.id]
    ws.jobs.wait(timeout=120)
    done = ws.jobs.get(job.id)
    assert done.status == "succeeded" and done.attempts == 1 and done.worker == ws.jobs.worker
    assert done.result is not None and done.result["version"] == 2
    assert ws.retraining.decisions("tumor")[0].id == done.result["decision"]
    assert ws.jobs.dispatch() == []  # nothing left to run


def test_a_failing_job_is_recorded_as_failed(ws: keel.Workspace) -> None:
    job, _ = ws.jobs.enqueue("retrain", {"model": "ghost"})
    ws.jobs.dispatch()
    ws.jobs.wait(timeout=60)
    failed = ws.jobs.get(job.id)
    assert failed.status == "failed" and "has no project" in (failed.error or "")


def test_the_scheduler_tick_queues_due_retraining_once_and_starts_it(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec(retraining={"triggers": ["new_data"], "debounce_s": 0}))
    ws.datasets.add("cancer", cancer().iloc[:500])
    first: dict[str, Any] = ws.tick()
    assert len(first["queued"]) == 1 and first["started"] == first["queued"]
    second = ws.tick()  # still running, or done: either way not queued twice
    assert second["queued"] == [] or ws.jobs.get(first["queued"][0]).status != "queued"
    ws.jobs.wait(timeout=120)
    [decision] = [d for d in ws.retraining.decisions("tumor") if d.trigger == "new_data"]
    assert decision.evidence["data"]["dataset"] == "cancer@2"
    assert ws.tick()["queued"] == []  # trained on the newest version now


def test_batch_scoring_job_writes_scores_as_a_dataset_version_with_lineage(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec())
    frame = cancer().drop(columns="target")
    ws.datasets.add("applications", frame)
    job = ws.jobs.run("batch_score", {"model": "tumor@champion", "dataset": "applications", "chunk_rows": 100})
    assert job.status == "succeeded", job.error
    assert job.result is not None and (job.result["rows"], job.result["chunks"], job.result["model"]) == (
        569,
        6,
        "tumor@1",
    )
    scored = ws.datasets.load(job.result["dataset"])
    expected = ws.models.load("tumor@1").predict_proba(frame)[:, 1]
    assert list(scored.columns[-3:]) == ["prediction", "proba_0", "proba_1"]
    np.testing.assert_allclose(scored["proba_1"], expected)
    info = ws.datasets.get(job.result["dataset"])
    assert (
        info.ref == "applications-scored@1"
        and info.tags["model"] == "tumor@1"
        and info.tags["source"] == "applications@1"
    )
    failed = ws.jobs.run("batch_score", {"model": "tumor@champion", "dataset": "missing"})
    assert failed.status == "failed" and "missing" in (failed.error or "")


def test_a_retraining_whose_worker_crashed_on_its_last_attempt_fails_and_alerts(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec())
    job, _ = ws.jobs.enqueue("retrain", {"model": "tumor", "trigger": "alert"}, max_attempts=1)
    ws._meta.jobs.claim("a-worker-that-dies")
    with ws._meta.jobs.begin() as conn:
        conn.execute(update(schema.jobs).values(heartbeat_at=now() - timedelta(seconds=STALE_AFTER_S + 5)))
    assert ws.jobs.dispatch() == []
    assert ws.jobs.get(job.id).status == "failed"
    decision = ws.retraining.decisions("tumor")[0]
    assert (decision.outcome, decision.trigger) == ("failed", "alert") and "crashed" in decision.evidence["error"]
    assert ws.models.get("tumor@champion").version == 1
    assert [a.rule for a in ws.monitoring.alerts.list(model="tumor")] == ["retraining-failed"]


def test_batch_explanation_job_stores_additive_attributions(ws: keel.Workspace) -> None:
    pytest.importorskip("shap")
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec())
    ws.datasets.add("applications", cancer().drop(columns="target").head(120))
    job = ws.jobs.run("batch_explain", {"model": "tumor@champion", "dataset": "applications", "chunk_rows": 50})
    assert job.status == "succeeded", job.error
    assert job.result is not None and (job.result["rows"], job.result["chunks"]) == (120, 3)
    explained = ws.datasets.load(job.result["dataset"])
    attr = explained[[c for c in explained.columns if c.startswith("attr_")]]
    np.testing.assert_allclose(attr.sum(axis=1) + explained["base_value"], explained["output"], atol=1e-6)
    assert explained["reasons"].str.contains("pushed toward").all()


def test_run_or_queue_queues_once_per_retrain_key_and_knows_only_the_workspace_kinds(ws: keel.Workspace) -> None:
    from keel.workspace.handlers import HANDLERS
    from keel.workspace.payloads import retrain_key

    job, created = ws.jobs.run_or_queue("tune", {"model": "m"}, background=True, dedup_key=retrain_key("m"))
    again, created_again = ws.jobs.run_or_queue("retrain", {"model": "m"}, background=True, dedup_key=retrain_key("m"))
    assert created and not created_again and again.id == job.id and job.status == "queued"
    assert retrain_key("m") == "retrain:m"  # the key tick() and the CLI share: one active retraining per model
    with pytest.raises(InvalidInputError, match="Unknown job kind 'nope'; known: " + ", ".join(sorted(HANDLERS))):
        ws.jobs.run_or_queue("nope", {}, background=True)
