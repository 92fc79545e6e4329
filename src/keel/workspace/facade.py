"""Workspace: the one facade of the Python API. Everything hangs off a Workspace you create."""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from keel.access import Tokens
from keel.data import Datasets
from keel.entities import DatasetVersion, GcReport, Job
from keel.errors import InvalidInputError
from keel.jobs import Jobs, make_executor
from keel.monitoring.alerts import Alerts
from keel.monitoring.monitor import Monitoring
from keel.monitoring.predlog import PredictionLog, PredictionLogger
from keel.registry import LoadedModel, Models
from keel.retraining.retrainer import Retraining
from keel.settings import Settings
from keel.storage import BlobStore, MetadataStore, mask_url
from keel.studies import Studies
from keel.tracking import Runs
from keel.workspace.causal import Causal
from keel.workspace.edge import Edge
from keel.workspace.edge_loop import EdgeFollower
from keel.workspace.explain import BACKGROUND_ROWS, Explained, Explainer
from keel.workspace.genai import GenAI
from keel.workspace.genai_monitor import TextMonitor
from keel.workspace.handlers import HANDLERS, run_job
from keel.workspace.lm_loop import LMLoop, ProjectTrainers
from keel.workspace.payloads import PAYLOADS
from keel.workspace.rl import RL
from keel.workspace.rl_loop import PolicyLoop

if TYPE_CHECKING:
    from keel.explain import LimeExplanation
    from keel.workspace.migrate import MigrationReport

logger = logging.getLogger(__name__)

# LoadedModel and PredictionLogger are named here for the edges' annotations: keel.cli and
# keel.server may import this package but not the record packages that define them.
__all__ = ["LoadedModel", "PredictionLogger", "Workspace"]


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
        settings = _settings(settings, home=home, store=store, artifacts=artifacts, artifacts_options=artifacts_options)
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
        self.predictions = _prediction_log(self._meta, self._blobs, self.datasets, settings)
        self.monitoring = Monitoring(  # drift, quality and performance checks, and their alerts
            self._meta,
            self._blobs,
            datasets=self.datasets,
            models=self.models,
            predictions=self.predictions,
            alerts=Alerts(self._meta, author=author),
            text_check=TextMonitor(self),  # language models: prompt drift, output length, perplexity
        )
        self.retraining = Retraining(  # model projects, retraining cycles, the gate, the decisions
            self._meta,
            datasets=self.datasets,
            runs=self.runs,
            models=self.models,
            monitoring=self.monitoring,
            author=author,
            edge=EdgeFollower(self),  # the project's edge targets, built for each new champion
            # policy projects: the twin refitted, the policy trained and judged; lm projects: the corpus's
            # newest version trained on, both models judged on its held-out split
            policies=ProjectTrainers(PolicyLoop(self), LMLoop(self)),
        )
        self.jobs = Jobs(  # background jobs: state in the store, run by the configured executor
            self._meta,
            author=author,
            factory=functools.partial(Workspace, settings),
            kinds=HANDLERS,
            runner=run_job,
            executor_factory=functools.partial(make_executor, settings),
            on_lost=self._job_lost,
        )
        # causal studies: versioned questions over dataset versions, their estimates, what-if
        self.causal = Causal(
            Studies(self._meta, author=author), self.datasets, models=self.models, alerts=self.monitoring.alerts
        )
        # explanations, with the one per-version cache the API, the server and batch jobs share
        self.explainer = Explainer(self, self._meta.importance)
        # edge builds: model versions compiled to C or ONNX, verified, recorded with the registry
        self.edge = Edge(self, self._meta, self._blobs, author=author)
        # digital twins fitted on dataset versions, their classic baselines, optimum and policies
        self.rl = RL(self, self._meta, author=author)
        # retrieval indexes over corpus versions (and, next, language models trained on them)
        self.genai = GenAI(self, self._meta, self._blobs, author=author)

    def explain(
        self,
        model: str,
        rows: Any,
        *,
        method: str = "auto",
        target: Any = None,
        top: int = 3,
        background_rows: int = BACKGROUND_ROWS,
    ) -> Explained:
        """Attributions (SHAP), predictions and reason codes for `rows` (records or a DataFrame) of
        a model version: exact TreeSHAP for tree ensembles, exact linear SHAP, else a permutation
        explainer over a sample of the version's training data. Returns keel.workspace.explain.Explained.

        >>> ws.explain("credit-risk@champion", applications.head(3)).reasons[0][0]["text"]  # doctest: +SKIP
        'Income of 45 (typical 120) pushed toward bad (+0.612 log-odds)'
        """
        return self.explainer.explain(
            model, rows, method=method, target=target, top=top, background_rows=background_rows
        )

    def explain_lime(
        self,
        model: str,
        row: Any,
        *,
        target: Any = None,
        top: int = 5,
        seed: int = 0,
        seeds: int = 5,
        text_column: str | None = None,
    ) -> LimeExplanation:
        """LIME for one row, reproducible with `seed`, with a stability score over `seeds` runs:
        tabular over the training sample, or over the words of `text_column` for a text classifier."""
        return self.explainer.lime(model, row, target=target, top=top, seed=seed, seeds=seeds, text_column=text_column)

    def importance(self, model: str) -> dict[str, Any]:
        """A model version's global importance (mean absolute attribution on a training sample):
        {"importance": {feature: value}, "method", "space", "rows", "created_at"}. Stored with the
        version when it is registered with its training input X and explained exactly (trees,
        linear models); otherwise computed on the first request and stored."""
        return self.explainer.importance(model)

    def tick(self, *, at: datetime | None = None, slots: int = 2) -> dict[str, Any]:
        """One tick of the background loop (`keel worker`, `keel serve`): due monitors, due
        retraining queued as jobs, shadow challengers judged, queued jobs started here, up to
        `slots` at once. `at` (default: now) is the time the schedules are read at."""
        from keel.workspace.tick import tick

        return tick(self, slots=slots, at=at)

    def _job_lost(self, job: Job) -> None:
        """A retraining whose worker crashed on its last attempt: a failed decision and its alert."""
        if job.kind not in ("retrain", "tune"):
            return
        try:
            payload = PAYLOADS[job.kind].from_dict(job.payload)
        except InvalidInputError:  # a malformed payload names no model to record the crash against
            return
        trigger = getattr(payload, "trigger", None) or job.kind
        self.retraining.record_crash(payload.model, trigger=trigger, error=f"job {job.id}: {job.error}")

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

    def migrate(
        self,
        to_store_url: str,
        *,
        artifacts: str | None = None,
        artifacts_options: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> MigrationReport:
        """Copy this workspace into an empty store (server mode: PostgreSQL) and artifact location
        (S3): every blob verified on the target, then every table's rows in one transaction, row
        counts compared. Returns keel.workspace.migrate.MigrationReport; see that module."""
        from keel.workspace.migrate import migrate

        return migrate(self, to_store_url, artifacts=artifacts, artifacts_options=artifacts_options, dry_run=dry_run)

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


def _settings(
    settings: Settings | None,
    *,
    home: str | None,
    store: str | None,
    artifacts: str | None,
    artifacts_options: dict[str, Any] | None,
) -> Settings:
    """`settings` (default: read from the environment) with the arguments given to Workspace() in place."""
    if settings is None:
        return Settings.from_env(
            home=home, store_url=store, artifacts_url=artifacts, artifacts_options=artifacts_options
        )
    changes = {
        k: v
        for k, v in {
            "home": home,
            "store_url": store,
            "artifacts_url": artifacts,
            "artifacts_options": artifacts_options,
        }.items()
        if v is not None
    }
    return settings.with_changes(**changes) if changes else settings


def _prediction_log(meta: MetadataStore, blobs: BlobStore, datasets: Datasets, settings: Settings) -> PredictionLog:
    """The served predictions and their feedback, buffered as `settings` says."""
    return PredictionLog(
        meta,
        blobs,
        datasets=datasets,
        retention_days=settings.predlog_retention_days,
        buffer_rows=settings.predlog_buffer_rows,
        flush_s=settings.predlog_flush_s,
        wal_dir=settings.home.absolute() / "predlog",  # answered rows, until written: replayed after a crash
        wal=settings.predlog_wal != "off",
        wal_wait_for_sync=settings.predlog_wal == "sync",
        wal_sync_ms=settings.predlog_wal_sync_ms,
    )


def _measure_importance(model: Any, X: Any) -> dict[str, Any] | None:
    """Global importance at registration (keel.explain is imported on first use: it is heavy)."""
    from keel.workspace.explain import measure_importance

    return measure_importance(model, X)
