"""Every table of the metadata store. Migrations in `migrations/versions` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Timestamp = DateTime(timezone=True)

# -- data -----------------------------------------------------------------------------------
datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(80), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("columns", JSON, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("author", String(128), nullable=False),
    Column("parent_version", Integer, nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    UniqueConstraint("dataset_id", "version"),
    UniqueConstraint("dataset_id", "digest"),
    Index("ix_dataset_versions_digest", "digest"),
)

# -- tracking -------------------------------------------------------------------------------
experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp, nullable=True),
    Column("code_version", String(80), nullable=True),
    Column("environment", JSON, nullable=False),
    Column("author", String(128), nullable=False),
    # Liveness of a running run (0009): the process that runs it refreshes heartbeat_at; owner_* name
    # that process (host, pid, and a token of boot, pid namespace and process start that tells a
    # reused pid apart) or are NULL for a run driven over HTTP, kept alive by its client's writes.
    Column("heartbeat_at", Timestamp, nullable=True),
    Column("owner_host", String(255), nullable=True),
    Column("owner_pid", Integer, nullable=True),
    Column("owner_token", String(128), nullable=True),
    Index("ix_runs_experiment_id_started_at", "experiment_id", "started_at"),
    Index("ix_runs_status", "status"),  # finds the running runs to check without a scan
    Index("ix_runs_started_at", "started_at"),  # the newest runs first, without sorting them all (0015)
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Column("value_num", Float, nullable=True),  # the value as a number, when it is one
    Index("ix_run_params_key_value_num", "key", "value_num"),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_run_tags_key", "key"),
)

metric_points = Table(
    "metric_points",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("timestamp", Float, nullable=False),
    Index("ix_metric_points_run_id_key_step", "run_id", "key", "step"),
)

# The latest value of each metric of each run: what run search filters and orders on.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=False),
    # Run search walks it in order and tests the filter run by run; run_id makes it covering (0015).
    Index("ix_latest_metrics_key_value_run_id", "key", "value", "run_id"),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id", ondelete="RESTRICT"), primary_key=True),
    Index("ix_run_inputs_dataset_version_id", "dataset_version_id"),
)

run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("path", String(512), primary_key=True),
    Column("digest", String(80), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
)

# -- registry (migration 0002) ---------------------------------------------------------------
registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("signature", JSON, nullable=True),
    Column("input_example", JSON, nullable=True),
    Column("metrics", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("author", String(128), nullable=False),
    UniqueConstraint("model_id", "version"),
    Index("ix_model_versions_run_id", "run_id"),
)

model_version_datasets = Table(
    "model_version_datasets",
    metadata,
    Column("model_version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id", ondelete="RESTRICT"), primary_key=True),
    Index("ix_model_version_datasets_dataset_version_id", "dataset_version_id"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(128), primary_key=True),
    Column("model_version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=False),
    Column("alias", String(128), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("at", Timestamp, nullable=False),
    Column("author", String(128), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Index("ix_alias_events_model_id_alias", "model_id", "alias"),
)

# Every blob a metadata row points at: what `keel gc` keeps. Rows are written in the same
# transaction as the row that references the blob.
blob_refs = Table(
    "blob_refs",
    metadata,
    Column("digest", String(80), primary_key=True),
    Column("owner", String(160), primary_key=True),  # e.g. 'dataset_version:12'
    Index("ix_blob_refs_owner", "owner"),
)

# -- access control (migration 0003) -----------------------------------------------------------
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),  # shown in listings; identifies the token
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the whole token
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("last_used_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
)

# -- monitoring (migration 0004) -----------------------------------------------------------------
# Served predictions are kept as Parquet segments (blobs); the store indexes them by model and time.
prediction_segments = Table(
    "prediction_segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("first_at", Timestamp, nullable=False),
    Column("last_at", Timestamp, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("digest", String(80), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_prediction_segments_model_name_last_at", "model_name", "last_at"),
)

prediction_feedback = Table(
    "prediction_feedback",
    metadata,
    Column("prediction_id", String(32), primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("value", JSON, nullable=False),  # the true label or value
    Column("received_at", Timestamp, nullable=False),
    Index("ix_prediction_feedback_model_name_received_at", "model_name", "received_at"),
)

# A dataset version's reference profile for drift checks: bin edges, quantiles, category
# frequencies and per-bin counts, computed once and reused by every check.
reference_profiles = Table(
    "reference_profiles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id", ondelete="CASCADE"), nullable=False),
    Column("model_version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=True),
    Column("profile", JSON, nullable=False),
    Column("sample_digest", String(80), nullable=True),  # a row sample (Parquet blob) for multivariate drift
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("dataset_version_id", "model_version_id"),
)

monitors = Table(
    "monitors",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_name", String(128), nullable=False, unique=True),
    Column("config", JSON, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("last_run_at", Timestamp, nullable=True),
)

monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("reference", String(160), nullable=False),  # dataset version ref
    Column("started_at", Timestamp, nullable=False),
    Column("window_start", Timestamp, nullable=True),
    Column("window_end", Timestamp, nullable=True),
    Column("rows", Integer, nullable=False),
    Column("labelled_rows", Integer, nullable=False),
    Column("summary", JSON, nullable=False),
    Index("ix_monitor_runs_model_name_started_at", "model_name", "started_at"),
)

# One value per (check run, feature, statistic): the time series the dashboard and alert rules read.
monitor_values = Table(
    "monitor_values",
    metadata,
    Column("run_id", Integer, ForeignKey("monitor_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("feature", String(250), primary_key=True),  # '' for model-level values
    Column("metric", String(64), primary_key=True),
    Column("value", Float, nullable=True),
    Index("ix_monitor_values_metric_feature", "metric", "feature"),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("feature", String(250), nullable=True),  # None: any feature (or the model-level value)
    Column("op", String(4), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("window", String(64), nullable=True),  # a label for people: "1000 rows", "1h"
    Column("cooldown_s", Integer, nullable=False),
    Column("enabled", Integer, nullable=False, default=1),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("model_name", "name"),
)

alert_channels = Table(
    "alert_channels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # 'webhook', 'email', 'log'
    Column("config", JSON, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("rule_name", String(128), nullable=False),
    Column("dedup_key", String(400), nullable=False),
    Column("status", String(16), nullable=False),  # 'open', 'acknowledged', 'resolved'
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("count", Integer, nullable=False),
    Column("opened_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Column("last_notified_at", Timestamp, nullable=True),
    Column("acked_at", Timestamp, nullable=True),
    Column("acked_by", String(128), nullable=True),
    Column("resolved_at", Timestamp, nullable=True),
    Column("resolved_by", String(128), nullable=True),
    Index("ix_alerts_model_name_status", "model_name", "status"),
    Index("ix_alerts_dedup_key_status", "dedup_key", "status"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # 'delivered' or 'failed'
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("at", Timestamp, nullable=False),
    Index("ix_alert_deliveries_alert_id", "alert_id"),
)

# Model projects (keel.yaml, canonical form) and every retraining decision with its evidence.
model_projects = Table(
    "model_projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_name", String(128), nullable=False, unique=True),
    Column("spec", JSON, nullable=False),
    Column("source", String(500), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

retrain_decisions = Table(
    "retrain_decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_name", String(128), nullable=False),
    Column("version", Integer, nullable=True),  # the candidate (None when training failed before registering)
    Column("champion_version", Integer, nullable=True),  # the champion it was compared with
    Column("trigger", String(32), nullable=False),  # 'manual', 'alert', 'new_data', 'schedule', 'approval', 'rollback'
    Column(
        "outcome", String(32), nullable=False
    ),  # 'promoted', 'awaiting_approval', 'rejected', 'failed', 'approved', 'rolled_back'
    Column("evidence", JSON, nullable=False),  # metrics side by side, gate checks, data versions, trigger detail
    Column("run_id", String(32), nullable=True),
    Column("author", String(128), nullable=False),
    Column("at", Timestamp, nullable=False),
    Index("ix_retrain_decisions_model_name_at", "model_name", "at"),
)

# Jobs (retraining, batch scoring, searches): their state lives here, so a restarted worker or
# server resumes the queue; a running job whose heartbeat stopped is queued again.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("dedup_key", String(250), nullable=True),  # at most one queued or running job per key
    Column("status", String(16), nullable=False),  # 'queued', 'running', 'succeeded', 'failed'
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("worker", String(128), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("started_at", Timestamp, nullable=True),
    Column("heartbeat_at", Timestamp, nullable=True),
    Column("finished_at", Timestamp, nullable=True),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("author", String(128), nullable=False),
    Column("progress", JSON, nullable=True),  # {done, total, stage} while a job reports it (0011)
    Index("ix_jobs_status_created_at", "status", "created_at"),
    Index("ix_jobs_dedup_key_status", "dedup_key", "status"),
)

# Global importance of a model version (mean absolute attribution on a sample), kept with it.
model_importance = Table(
    "model_importance",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("importance", JSON, nullable=False),  # {feature: mean |attribution|}, largest first
    Column("method", String(128), nullable=False),
    Column("space", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

# -- causal studies ---------------------------------------------------------------------------
# A study version: the question and graph as JSON (`spec`), with lineage to the dataset version it
# reads by name, number and digest (the digest survives a dataset re-added under another number).
causal_studies = Table(
    "causal_studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("dataset_name", String(128), nullable=False),
    Column("dataset_version", Integer, nullable=False),
    Column("dataset_digest", String(80), nullable=False),
    Column("treatment", String(256), nullable=False),
    Column("outcome", String(256), nullable=False),
    Column("spec", JSON, nullable=False),  # edges, latent, covariates, identification
    Column("description", Text, nullable=False, default=""),
    Column("author", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("name", "version"),
)

# One estimate of a study version. The numbers are nullable: SQLite stores NaN as NULL, and an
# estimator may give a NaN standard error (read back as NaN).
causal_estimates = Table(
    "causal_estimates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("causal_studies.id", ondelete="CASCADE"), nullable=False),
    Column("estimator", String(64), nullable=False),
    Column("estimand", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("stderr", Float, nullable=True),
    Column("ci_low", Float, nullable=True),
    Column("ci_high", Float, nullable=True),
    Column("interval_method", String(128), nullable=False),
    Column("n", Integer, nullable=False),
    Column("details", JSON, nullable=False),  # overlap, notes, trimming, covariates, seed
    Column("created_at", Timestamp, nullable=False),
    Index("ix_causal_estimates_study_id", "study_id"),
)
