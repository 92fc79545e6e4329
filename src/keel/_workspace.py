"""Workspace: the one facade of the Python API. Everything hangs off a Workspace you create."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import functools

from keel.access import Tokens
from keel.data import Datasets
from keel.entities import DatasetVersion, GcReport, Job
from keel.jobs import Jobs, make_executor
from keel.monitoring.alerts import Alerts
from keel.monitoring.monitor import Monitoring
from keel.monitoring.predlog import PredictionLog
from keel.registry import Models
from keel.retraining.retrainer import Retraining
from keel.settings import Settings
from keel.storage import BlobStore, MetadataStore, mask_url
from keel.tracking import Runs

logger = logging.getLogger(__name__)

__all__ = ["Workspace"]


class Workspace:
    """A Keel workspace: versioned datasets, tracked runs and registered models.

    `Workspace()` reads `KEEL_*` settings from the environment (default: `./.keel/`, SQLite
    plus a local artifact folder); `Workspace(store=..., artifacts=...)` overrides the stores.

    >>> ws = keel.Workspace(home="/tmp/demo")                        # doctest: +SKIP
    >>> v = ws.datasets.add("credit", frame)                         # doctest: +SKIP
    >>> with ws.runs.start("credit", inputs=[v]) as run: ...         # doctest: +SKIP
    >>> ws.models.register("credit-risk", est, run=run, X=X)         # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        home: str | None = None,
        store: str | None = None,
        artifacts: str | None = None,
        artifacts_options: dict[str, Any] | None = None,
    ) -> None:
        if settings is None:
            settings = Settings.from_env(home=home, store_url=store, artifacts_url=artifacts, artifacts_options=artifacts_options)
        else:
            changes = {k: v for k, v in {"home": home, "store_url": store, "artifacts_url": artifacts,
                                          "artifacts_options": artifacts_options}.items() if v is not None}  # fmt: skip
            settings = settings.with_changes(**changes) if changes else settings
        self.settings = settings
        self._blobs = BlobStore(settings.resolved_artifacts_url, settings.artifacts_options)
        self._meta = MetadataStore(settings.resolved_store_url, sqlite_synchronous=settings.sqlite_synchronous)
        author = settings.resolved_author
        self.datasets = Datasets(self._meta, self._blobs, author=author, max_columns=settings.dataset_max_columns)
        self.runs = Runs(
            self._meta,
            self._blobs,
            author=author,
            buffer_points=settings.metric_buffer_points,
            datasets_get=self.datasets.get,
            dataset_id=self.datasets.version_id,
            heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
            remote_timeout_s=settings.run_remote_timeout_s,
        )
        self.runs.check_lost()  # runs left running by a process that died are marked killed
        self.models = Models(
            self._meta,
            self._blobs,
            author=author,
            datasets_get=self.datasets.get,
            dataset_id=self.datasets.version_id,
            runs_get=self.runs.get,
            measure=_measure_importance,
        )
        self.tokens = Tokens(self._meta, author=author)
        self.predictions = PredictionLog(  # served predictions and their feedback
            self._meta,
            self._blobs,
            datasets=self.datasets,
            retention_days=settings.predlog_retention_days,
            buffer_rows=settings.predlog_buffer_rows,
            flush_s=settings.predlog_flush_s,
            wal_dir=settings.home.absolute() / "predlog",  # answered rows, until written: replayed after a crash
            wal=settings.predlog_wal != "off",
            wal_wait_for_sync=settings.predlog_wal == "sync",
            wal_sync_ms=settings.predlog_wal_sync_ms,
        )
        self.monitoring = Monitoring(  # drift, quality and performance checks, and their alerts
            self._meta,
            self._blobs,
            datasets=self.datasets,
            models=self.models,
            predictions=self.predictions,
            alerts=Alerts(self._meta, author=author),
        )
        self.retraining = Retraining(  # model projects, retraining cycles, the gate, the decisions
            self._meta, datasets=self.datasets, runs=self.runs, models=self.models, monitoring=self.monitoring, author=author,
        )
        self.jobs = Jobs(  # background jobs: state in the store, run by the configured executor
            self._meta, author=author, factory=functools.partial(Workspace, settings),
            executor_factory=functools.partial(make_executor, settings), on_lost=self._job_lost,
        )  # fmt: skip

    def explain(self, model: str, rows: Any, *, method: str = "auto", target: Any = None, top: int = 3,
                background_rows: int = 200) -> Any:  # fmt: skip
        """Attributions (SHAP), predictions and reason codes for `rows` (records or a DataFrame) of
        a model version: exact TreeSHAP for tree ensembles, exact linear SHAP, else a permutation
        explainer over a sample of the version's training data. Returns keel._explainer.Explained.

        >>> ws.explain("credit-risk@champion", applications.head(3)).reasons[0][0]["text"]  # doctest: +SKIP
        'Income of 45 (typical 120) pushed toward bad (+0.612 log-odds)'
        """
        from keel._explainer import explain

        return explain(self, model, rows, method=method, target=target, top=top, background_rows=background_rows)

    def explain_lime(self, model: str, row: Any, *, target: Any = None, top: int = 5, seed: int = 0, seeds: int = 5,
                     text_column: str | None = None) -> Any:  # fmt: skip
        """LIME for one row, reproducible with `seed`, with a stability score over `seeds` runs:
        tabular over the training sample, or over the words of `text_column` for a text classifier."""
        from keel._explainer import explain_lime

        return explain_lime(self, model, row, target=target, top=top, seed=seed, seeds=seeds, text_column=text_column)

    def importance(self, model: str) -> dict[str, Any]:
        """A model version's global importance (mean absolute attribution on a training sample):
        {"importance": {feature: value}, "method", "space", "rows", "created_at"}. Stored with the
        version when it is registered with its training input X and explained exactly (trees,
        linear models); otherwise computed on the first request and stored."""
        from keel._explainer import importance

        return importance(self, model)

    def _job_lost(self, job: Job) -> None:
        """A retraining whose worker crashed on its last attempt: a failed decision and its alert."""
        if job.kind in ("retrain", "tune") and "model" in job.payload:
            self.retraining.record_crash(job.payload["model"], trigger=job.payload.get("trigger", job.kind),
                                         error=f"job {job.id}: {job.error}")  # fmt: skip

    @property
    def store_url(self) -> str:
        return mask_url(self.settings.resolved_store_url)

    @property
    def artifacts_url(self) -> str:
        return self.settings.resolved_artifacts_url

    @property
    def schema_revision(self) -> str | None:
        return self._meta.revision

    def consumers(self, dataset: str | DatasetVersion) -> dict[str, list[str]]:
        """What was made from a dataset version: {'runs': [...ids], 'models': [...refs]}."""
        version = self.datasets.get(dataset)
        models = [m.ref for m in self.models.trained_on(version)]
        runs = [r.id for r in self.runs.reading(version)]
        return {"runs": runs, "models": models}

    def gc(self, *, dry_run: bool = False, grace_s: int | None = None) -> GcReport:
        """Delete artifacts no metadata points at (left by failed or interrupted writes).

        Blobs younger than `grace_s` (default: settings.gc_grace_s) are kept: their metadata
        may be about to commit.
        """
        grace = self.settings.gc_grace_s if grace_s is None else grace_s
        cutoff = datetime.now(UTC) - timedelta(seconds=grace)
        referenced = self._meta.referenced_digests()
        deleted, kept_young, freed = [], 0, 0
        for blob in self._blobs.iter_blobs():
            if blob.digest in referenced:
                continue
            if blob.modified_at is not None and blob.modified_at > cutoff:
                kept_young += 1
                continue
            if not dry_run:
                self._blobs.delete(blob.digest)
            deleted.append(blob.digest)
            freed += blob.size_bytes
        if not dry_run:
            self._blobs.clean_tmp(cutoff)
            if deleted:
                logger.info("gc deleted %d unreferenced artifacts (%d bytes)", len(deleted), freed)
        return GcReport(len(referenced), tuple(deleted), kept_young, freed, dry_run)

    def close(self) -> None:
        self.jobs.close()
        self.runs.close()
        self._meta.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace(store={self.store_url!r}, artifacts={self.artifacts_url!r})"


def _measure_importance(model: Any, X: Any) -> dict[str, Any] | None:
    """Global importance at registration (keel._explainer, imported on first use: it is heavy)."""
    from keel._explainer import measure_importance

    return measure_importance(model, X)
