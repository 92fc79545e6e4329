"""`ws.migrate` and `keel migrate`: an embedded workspace copied into PostgreSQL + S3, verified."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import keel
from keel import Settings
from keel.cli._app import app
from keel.errors import ConflictError, CorruptArtifactError, NotFoundError

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _embedded(ws: keel.Workspace) -> tuple[str, pd.DataFrame]:
    """A dataset, a run with metrics, a registered model with an alias, logged predictions."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = (X["a"] + 0.5 * X["b"] > 0).astype(int)
    data = ws.datasets.add("credit", X.assign(y=y))
    with ws.runs.start("credit", params={"C": 1.0}, inputs=[data]) as run:
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        model = LogisticRegression().fit(X, y)
        run.log_metric("auc", 0.93)
    ws.models.register("risk", model, run=run, X=X, trained_on=data)
    ws.models.set_alias("risk", "champion", version=1, reason="first")
    frame = pd.DataFrame({"__at": [T0 + timedelta(seconds=i) for i in range(4)], "a": [0.1, 0.2, 0.3, 0.4]})
    ws.predictions.write("risk", 1, frame.assign(__prediction=[0, 1, 0, 1]))
    return run.id, X


def _target(postgres_url: str, bucket: tuple[str, dict[str, Any]], home: Path) -> keel.Workspace:
    url, options = bucket
    return keel.Workspace(
        Settings(home=home, store_url=postgres_url, artifacts_url=url, artifacts_options=options, author="tester")
    )


def test_migrate_copies_every_row_and_blob_and_the_model_predicts_the_same(
    ws: keel.Workspace, postgres_url: str, s3_bucket: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    run_id, X = _embedded(ws)
    url, options = s3_bucket
    dry = ws.migrate(postgres_url, artifacts=url, artifacts_options=options, dry_run=True)
    assert dry.dry_run and dry.blobs == dry.verified > 0 and all(t.target == 0 for t in dry.tables)
    report = ws.migrate(postgres_url, artifacts=url, artifacts_options=options)
    counts = {t.table: (t.source, t.target) for t in report.tables}
    assert all(s == t for s, t in counts.values())
    assert counts["runs"] == (1, 1) and counts["model_versions"] == (1, 1) and counts["model_aliases"] == (1, 1)
    assert counts["metric_points"][0] == 6 and counts["dataset_versions"] == (1, 1)
    assert report.blobs == report.verified == dry.blobs and report.referenced <= report.blobs
    assert report.rows == dry.rows and report.target_store == postgres_url  # no password to mask here

    target = _target(postgres_url, s3_bucket, tmp_path / "server")
    try:
        assert target.datasets.get("credit@1").digest == ws.datasets.get("credit@1").digest
        assert target.datasets.load("credit@1").equals(ws.datasets.load("credit@1"))
        assert target.runs.get(run_id).metrics == ws.runs.get(run_id).metrics == {"loss": 0.2, "auc": 0.93}
        assert target.models.get("risk@champion").version == 1
        np.testing.assert_array_equal(
            target.models.load("risk@champion").predict_proba(X), ws.models.load("risk@champion").predict_proba(X)
        )
        assert target.predictions.count("risk") == 4
        assert target.predictions.window("risk")["a"].tolist() == [0.1, 0.2, 0.3, 0.4]
        # sequences moved past the copied ids: new rows get fresh ids
        target.models.register("risk", LogisticRegression(C=0.5).fit(X, X["a"] > 0), X=X)
        assert target.models.get("risk@latest").version == 2
        assert target.datasets.add("other", X).version == 1
    finally:
        target.close()


def test_non_empty_target_is_refused_and_left_unchanged(
    ws: keel.Workspace, postgres_url: str, s3_bucket: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    _embedded(ws)
    other = _target(postgres_url, s3_bucket, tmp_path / "server")
    other.datasets.add("theirs", pd.DataFrame({"x": [1, 2]}))
    other.close()
    url, options = s3_bucket
    with pytest.raises(ConflictError, match=r"not empty: table '\w+' has rows"):
        ws.migrate(postgres_url, artifacts=url, artifacts_options=options)
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT count(*) FROM dataset_versions").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_corrupted_source_blob_is_refused_naming_its_digest_and_no_rows_are_written(
    ws: keel.Workspace, postgres_url: str, tmp_path: Path
) -> None:
    _embedded(ws)
    digest = ws.datasets.get("credit@1").digest
    blob = Path(ws.artifacts_url, "sha256", digest[7:9], digest[9:])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=digest):
        ws.migrate(postgres_url, artifacts=str(tmp_path / "target-artifacts"))
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT count(*) FROM datasets").fetchone() == (0,)


def test_cli_migrates_and_reports_bad_input_in_one_line(
    settings: Settings, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with keel.Workspace(settings) as w:
        w.datasets.add("credit", pd.DataFrame({"x": [1, 2, 3]}))
    monkeypatch.setenv("KEEL_HOME", str(settings.home))
    runner = CliRunner()
    bad = runner.invoke(app, ["migrate", "--to", "not a url"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().startswith("error:") and len(bad.output.strip().splitlines()) == 1
    bad_options = runner.invoke(app, ["migrate", "--to", postgres_url, "--artifacts-options", "[1]"])
    assert bad_options.exit_code == 1 and "JSON object" in bad_options.output
    ok = runner.invoke(app, ["migrate", "--to", postgres_url, "--artifacts", str(tmp_path / "art")])
    assert ok.exit_code == 0, ok.output
    assert "datasets" in ok.output and "digests verified" in ok.output
    again = runner.invoke(app, ["migrate", "--to", postgres_url, "--json"])
    assert again.exit_code == 1 and "not empty" in again.output


def test_a_referenced_blob_missing_from_the_source_is_named_before_anything_is_copied(
    ws: keel.Workspace, tmp_path: Path
) -> None:
    _embedded(ws)
    digest = ws.datasets.get("credit@1").digest
    Path(ws.artifacts_url, "sha256", digest[7:9], digest[9:]).unlink()
    target_store, target_artifacts = f"sqlite:///{tmp_path / 'target.db'}", tmp_path / "target-artifacts"
    with pytest.raises(NotFoundError, match=digest):
        ws.migrate(target_store, artifacts=str(target_artifacts))
    assert not list(target_artifacts.glob("sha256/*/*"))  # no blob copied either


def test_a_copy_failing_halfway_leaves_no_rows_in_the_target(
    ws: keel.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.storage import migrate as copier

    _embedded(ws)
    real = copier._batches

    def failing(conn: Any, table: Any) -> Any:
        if table.name == "model_versions":  # after datasets, runs and their metrics went in
            raise OSError("disk full")
        return real(conn, table)

    monkeypatch.setattr(copier, "_batches", failing)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    with pytest.raises(OSError, match="disk full"):
        ws.migrate(target, artifacts=str(tmp_path / "target-artifacts"))
    monkeypatch.undo()
    report = ws.migrate(target, artifacts=str(tmp_path / "target-artifacts"))  # the same target: still empty
    assert {t.table: t.target for t in report.tables}["model_versions"] == 1
