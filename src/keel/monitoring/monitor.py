"""Monitors: compare a window of live traffic with a reference, store the results, raise alerts.

A check reads the newest window of the prediction log (by count or by time), bins it against the
reference profile stored with the reference dataset version (computed once, on first use), and
records one value per (feature, statistic) as a time series. Alert rules then read those values.
"""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from keel.entities import Alert, DatasetVersion, ModelVersion, MonitorRun
from keel.errors import InvalidInputError, NotFoundError
from keel.monitoring.alert_rules import FAILING_RULE
from keel.monitoring.check import CheckValues, compute_check, model_outputs, reference_performance
from keel.monitoring.check import cause as _cause
from keel.monitoring.health import Health, health_of
from keel.monitoring.monitor_config import MonitorConfig, known_settings
from keel.monitoring.profiles import ModelReference, ReferenceProfile
from keel.monitoring.summarycheck import SummaryPlans, check_features

if TYPE_CHECKING:
    from keel.data import Datasets
    from keel.monitoring.alerts import Alerts
    from keel.monitoring.predlog import PredictionLog
    from keel.registry import Models
    from keel.storage import BlobStore, MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["MonitorResult", "Monitoring", "TextCheck"]

SAMPLE_ROWS = 5000  # rows of the reference kept for multivariate drift


@dataclass(frozen=True)
class MonitorResult:
    run: MonitorRun
    values: list[tuple[str, str, float | None]]
    drifted_features: tuple[str, ...]
    alerts: list[Any]

    def value(self, metric: str, feature: str = "") -> float | None:
        for f, m, v in self.values:
            if f == feature and m == metric:
                return v
        return None


class TextCheck(Protocol):
    """The check of a language model's window (prompts and generated texts), given by the workspace
    (keel.workspace.genai_monitor): it needs the corpus, the embedder and the model, which live above
    this package. Returns the values like `compute_check`; summary["text"] goes into alert evidence."""

    def __call__(self, info: ModelVersion, window: pd.DataFrame, config: MonitorConfig) -> CheckValues: ...


class Monitoring:
    """Monitors of one workspace: `ws.monitoring`."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        *,
        datasets: Datasets,
        models: Models,
        predictions: PredictionLog,
        alerts: Alerts,
        text_check: TextCheck | None = None,
    ) -> None:
        self._meta = meta
        self._text_check = text_check  # language models' checks (None: an lm's monitor fails, saying why)
        self._blobs = blobs
        self._datasets = datasets
        self._models = models
        self.predictions = predictions
        self.alerts = alerts
        # This process's memory of failing checks (the store's memory is the monitor-failing
        # alert): when each model last failed, so that it is tried again on its schedule, not at
        # every tick; and the cause last logged with its traceback, so that it is logged once.
        self._failed_at: dict[str, datetime] = {}
        self._logged_cause: dict[str, str] = {}
        # Segments are summarized as they are logged, against the profiles a check of their
        # version uses (keel.monitoring.windowsummary).
        self._plans = SummaryPlans(meta, datasets, models, self._reference_version, _guess_target)
        predictions.summary_plan = self._plans.for_log

    # -- configuration -------------------------------------------------------------------------
    def watch(self, model: str, /, **settings: Any) -> MonitorConfig:
        """Create or update the monitor of `model`; installs the default alert rules once.

        Settings are MonitorConfig's fields; an unknown or invalid one raises InvalidInputError
        naming it, and nothing is stored.
        """
        self._models.versions(model)  # NotFoundError for an unknown model
        current = self._meta.monitors.get_monitor(model)
        base = dict(current[0]) if current else {}
        known_settings(settings)  # a mistyped name is named as such, before it meets the stored settings
        base.update(settings)
        config = MonitorConfig.from_dict(base)
        if config.reference is not None:
            self._datasets.get(config.reference)
        self._meta.monitors.save_monitor(model, asdict(config))
        info = self._version(model, config)
        self.alerts.ensure_default_rules(model, output_kind=_output_kind(info))
        return config

    def config(self, model: str, *, strict: bool = True) -> MonitorConfig:
        """The monitor's settings (defaults for a model never watched). Settings stored by an older
        Keel that no longer validate raise InvalidInputError, or with `strict=False` are replaced
        by their defaults (for showing them; the model's checks fail and say why)."""
        found = self._meta.monitors.get_monitor(model)
        if found is None:
            return MonitorConfig()
        return MonitorConfig.from_dict(found[0]) if strict else MonitorConfig.salvaged(found[0])

    def monitors(self) -> list[tuple[str, MonitorConfig, datetime | None]]:
        """Every watched model: (name, settings as `config(strict=False)` gives them, last check)."""
        return [(name, MonitorConfig.salvaged(cfg), last) for name, cfg, last in self._meta.monitors.monitors()]

    def failing(self, model: str) -> Alert | None:
        """The active 'monitor-failing' alert of `model` (opened when its checks began to fail,
        with the latest cause in its evidence), or None while its checks succeed."""
        return self.alerts.failing(model)

    def feedback(self, model: str, items: Any) -> int:
        """Record true labels (or values) for logged predictions: {prediction_id: label} or pairs."""
        return self.predictions.feedback(model, items)

    # -- reference profiles --------------------------------------------------------------------
    def reference_profile(self, dataset: str | DatasetVersion) -> dict[str, Any]:
        """The drift profile of a dataset version as stored (JSON, `ReferenceProfile.to_dict()`):
        computed on first use, then read from the store."""
        profile, _ = self._reference(self._datasets.get(dataset))
        return profile.to_dict()

    def _reference(self, version: DatasetVersion) -> tuple[ReferenceProfile, str | None]:
        from keel.monitoring.stats import build_profile

        ds_id = self._datasets.version_id(version)
        stored = self._meta.monitors.get_reference(ds_id)
        if stored is not None:
            return ReferenceProfile.from_dict(stored[0]), stored[1]
        if version.kind != "table":
            raise InvalidInputError(f"{version.ref} is a folder of files; monitors need a table as reference")
        frame = self._datasets.load(version)
        profile = build_profile(frame)
        sample = frame.sample(n=min(SAMPLE_ROWS, len(frame)), random_state=0)
        buf = io.BytesIO()
        sample.to_parquet(buf)
        digest = self._blobs.put_bytes(buf.getvalue())
        self._meta.monitors.save_reference(ds_id, None, profile.to_dict(), digest)
        logger.info("reference profile of %s computed (%d columns)", version.ref, len(profile.columns))
        return profile, digest

    def _sample(self, digest: str | None) -> pd.DataFrame | None:
        if digest is None:
            return None
        return pd.read_parquet(io.BytesIO(self._blobs.get_bytes(digest)))

    def _model_reference(self, info: ModelVersion, reference: DatasetVersion, target: str | None) -> ModelReference:
        """Output profile and reference performance of a model version on its reference data (once)."""
        from keel.monitoring.stats import build_profile

        ds_id = self._datasets.version_id(reference)
        mv_id = self._meta.models.version_id(info.name, info.version)
        stored = self._meta.monitors.get_reference(ds_id, mv_id)
        if stored is not None:
            return ModelReference.from_dict(stored[0])
        frame = self._datasets.load(reference)
        if len(frame) > 50_000:
            frame = frame.sample(n=50_000, random_state=0)
        model = self._models.load(info)
        features = list(info.signature.column_names) if info.signature else [c for c in frame.columns if c != target]
        X = frame[features]
        outputs = model_outputs(model, X)
        performance = (
            reference_performance(model, frame[target], X) if target is not None and target in frame.columns else {}
        )
        profile = ModelReference(outputs=build_profile(outputs), performance=performance)
        self._meta.monitors.save_reference(ds_id, mv_id, profile.to_dict(), None)
        return profile

    # -- checks --------------------------------------------------------------------------------
    def run(self, model: str, *, at: datetime | None = None) -> MonitorResult:
        """Check the newest window of `model`'s traffic now; store the values; raise alerts.

        A model never watched is checked with the default settings; either way the default alert
        rules it lacks are installed first (a disabled one stays disabled). A feature whose values
        cannot be binned is skipped and named in the run's summary (`unreadable`, `skipped`); the
        others are checked. A check that fails raises (or updates) the model's one
        'monitor-failing' alert and raises; the next check that succeeds resolves that alert.
        """
        self._models.versions(model)  # NotFoundError for an unknown model: nothing is failing
        at = at or datetime.now(UTC)
        try:
            result = self._check(model, at)
        except Exception as exc:
            self._failed(model, exc, at)
            raise
        self._succeeded(model, result.run.id)
        return result

    def _failed(self, model: str, exc: BaseException, at: datetime) -> None:
        self._failed_at[model] = at
        try:
            self.alerts.monitor_failing(model, _cause(exc), traceback=traceback.format_exception(exc)[-3:])
        except Exception:  # alerting must not hide the failure it reports
            logger.exception("raising the monitor-failing alert of %s failed", model)

    def _succeeded(self, model: str, run_id: int) -> None:
        self._failed_at.pop(model, None)
        self._logged_cause.pop(model, None)
        try:
            for alert in self.alerts.monitor_recovered(model, run_id=run_id):
                logger.info("monitor of %s works again (check #%d): alert #%d resolved", model, run_id, alert.id)
        except Exception:  # the check's results are stored; a stale alert is the lesser harm
            logger.exception("resolving the monitor-failing alert of %s failed", model)

    def _check(self, model: str, at: datetime) -> MonitorResult:
        """Load the window and the references, compute the statistics (keel.monitoring.check),
        store them as one run, and evaluate the alert rules on them."""
        config = self.config(model)
        info = self._version(model, config)
        self.alerts.ensure_default_rules(model, output_kind=_output_kind(info))
        if info.flavor == "lm":
            return self._check_text(model, info, config, at)
        reference = self._reference_version(info, config)
        ref_profile, sample_digest = self._reference(reference)
        target = config.target or _guess_target(reference, info)
        features = check_features(info, ref_profile, target)
        if not config.multivariate:  # the classifier needs rows; everything else merges summaries
            summarized = self._check_summarized(model, info, config, at, reference, ref_profile, features)
            if summarized is not None:
                return self._store(model, info, reference.ref, summarized, at)

        window = self._window(model, info, config, at)
        found = compute_check(
            window,
            features,
            ref_profile,
            config,
            model=model,
            info=info,
            reference=reference.ref,
            model_reference=lambda: self._model_reference(info, reference, target),
            reference_sample=lambda: self._sample(sample_digest),
        )
        return self._store(model, info, reference.ref, found, at)

    def _check_summarized(
        self,
        model: str,
        info: ModelVersion,
        config: MonitorConfig,
        at: datetime,
        reference: DatasetVersion,
        ref_profile: ReferenceProfile,
        features: list[str],
    ) -> CheckValues | None:
        """The check from the window's segment summaries merged (the same values as from its
        rows), or None where the rows must be read: the version's output profile is not stored
        yet (its first check computes it), or the window cannot be summarized."""
        from keel.monitoring.summarycheck import check_from_summary

        stored = self._plans.stored_outputs(info, reference)
        if stored is None:
            return None
        plan = self._plans.plan(info, reference, ref_profile, features, stored)
        if config.window_s is not None:
            since = at - timedelta(seconds=config.window_s)
            part = self.predictions.window_summary(model, plan, since=since, until=at, version=info.version)
        else:
            part = self.predictions.window_summary(
                model, plan, last_rows=config.window_rows, until=at, version=info.version
            )
        if part is None:
            return None
        logger.debug("check of %s: %d segment summaries, %d segments read", model, part.summarized, part.read)
        return check_from_summary(
            part.summary,
            part.labelled,
            features,
            ref_profile,
            config,
            model=model,
            info=info,
            reference=reference.ref,
            model_reference=lambda: stored,
            window_start=part.start,
            window_end=part.end,
        )

    def _window(self, model: str, info: ModelVersion, config: MonitorConfig, at: datetime) -> pd.DataFrame:
        # Only the traffic this version answered: after a promotion the new champion is judged on
        # its own requests against its own training data, not on what its predecessor served.
        if config.window_s is not None:
            return self.predictions.window(
                model, since=at - timedelta(seconds=config.window_s), until=at, version=info.version
            )
        return self.predictions.window(model, last_rows=config.window_rows, until=at, version=info.version)

    def _check_text(self, model: str, info: ModelVersion, config: MonitorConfig, at: datetime) -> MonitorResult:
        """A language model's check: its prompts against its corpus, its outputs' length, the prompts'
        perplexity (computed by the workspace's TextCheck), stored and alerted on like any check."""
        if self._text_check is None:
            raise InvalidInputError(
                f"{info.ref} is a language model: its monitor needs the workspace's text check; "
                "use ws.monitoring of a keel.Workspace"
            )
        found = self._text_check(info, self._window(model, info, config, at), config)
        return self._store(model, info, str(found.summary.get("reference") or ""), found, at)

    def _store(self, model: str, info: ModelVersion, reference: str, found: CheckValues, at: datetime) -> MonitorResult:
        """Store one check's values as a run and evaluate the alert rules on them."""
        run = self._meta.monitors.record_run(
            model_name=model,
            model_version=info.version,
            reference=reference,
            started_at=at,
            window_start=found.window_start,
            window_end=found.window_end,
            rows=found.rows,
            labelled_rows=found.labelled_rows,
            summary=found.summary,
            values=found.values,
        )
        context: dict[str, Any] = {
            "reference": reference,
            "model_version": info.version,
            "run_id": run.id,
            "window": {"rows": found.rows, "start": str(found.window_start), "end": str(found.window_end)},
            "features": found.summary["features"],
        }
        if "text" in found.summary:
            context["text"] = found.summary["text"]
        values = [(f, m, v) for f, m, v in found.values if v is not None]
        try:
            alerts = self.alerts.evaluate(model, values, context=context)
        except Exception:  # an alerting bug must not lose the check's results
            logger.exception("evaluating alert rules for %s failed", model)
            alerts = []
        return MonitorResult(run, found.values, found.drifted, alerts)

    def due(self, at: datetime | None = None) -> list[str]:
        """Models whose monitor schedule has elapsed since their last check, or since their last
        failed one: a failing monitor is tried again on its schedule, not at every tick."""
        at = at or datetime.now(UTC)
        failed = dict(self._failed_at)
        for alert in self.alerts.list(status="active"):  # failures seen by other processes, or before a restart
            if alert.rule == FAILING_RULE and alert.model not in failed:
                failed[alert.model] = alert.last_seen_at
        out = []
        for name, config, last in self.monitors():
            tried = max((t for t in (last, failed.get(name)) if t is not None), default=None)
            if tried is None or (at - tried).total_seconds() >= config.schedule_s:
                out.append(name)
        return out

    def run_due(self, at: datetime | None = None) -> list[MonitorResult]:
        """Run every monitor that is due. One that fails does not stop the others: its
        'monitor-failing' alert is raised (see `run`) and its cause logged with the traceback,
        once per cause (a cause seen again is logged at INFO, in one line)."""
        results = []
        for name in self.due(at):
            try:
                results.append(self.run(name, at=at))
            except Exception as exc:  # one broken monitor must not stop the others
                cause = _cause(exc)
                if self._logged_cause.get(name) != cause:
                    self._logged_cause[name] = cause
                    logger.error(
                        "monitor of %s is failing: %s (alert 'monitor-failing' raised; its checks are "
                        "tried again every schedule_s, and this is logged again only if the cause changes)",
                        name,
                        cause,
                        exc_info=exc,
                    )
                else:
                    logger.info("monitor of %s still failing: %s", name, cause)
        return results

    # -- results -------------------------------------------------------------------------------
    def runs(self, model: str, *, limit: int = 100) -> list[MonitorRun]:
        """The newest checks of `model`, newest first; a check of a version that no longer serves
        (the champion moved since) carries `superseded_by`, the version watched now."""
        return self._marked(model, self._meta.monitors.runs(model, limit=limit))

    def get_run(self, model: str, run_id: int) -> MonitorRun:
        """One stored check of `model`; NotFoundError if `model` has no check with this id."""
        run = self._meta.monitors.run(run_id)
        if run.model != model:
            raise NotFoundError(f"Model {model!r} has no monitor check #{run_id} (it is a check of {run.model!r})")
        return self._marked(model, [run])[0]

    def watched_version(self, model: str) -> int | None:
        """The version `model`'s monitor checks now (its alias, else the latest); None without versions."""
        try:
            return self._version(model, self.config(model, strict=False)).version
        except NotFoundError:
            return None

    def _marked(self, model: str, runs: list[MonitorRun], now: int | None = None) -> list[MonitorRun]:
        """`runs` with `superseded_by` set on checks of a version other than `now` (default: the
        version watched now, looked up only when there is a check to mark)."""
        if not runs:
            return runs
        now = now if now is not None else self.watched_version(model)
        return [
            replace(r, superseded_by=now) if now is not None and r.model_version not in (None, now) else r for r in runs
        ]

    def health(self, names: Iterable[str]) -> dict[str, Health]:
        """Per model: its state (unwatched, pending, ok, drift, alert), active alerts and the newest
        check of the version it watches now (see keel.monitoring.health). One version lookup and one
        check read per model: the overview page asks this for every model."""
        active = self.alerts.list(status="active")
        watched = {name for name, _, _ in self.monitors()}
        out: dict[str, Health] = {}
        for name in names:
            version = self.watched_version(name)
            newest = self._marked(name, self._meta.monitors.runs(name, limit=1), version)
            mine = [a for a in active if a.model == name]
            out[name] = health_of(name, newest, mine, watched=name in watched, version=version)
        return out

    def values(self, run_id: int) -> list[tuple[str, str, float | None]]:
        return self._meta.monitors.values(run_id)

    def latest(self, model: str) -> tuple[MonitorRun, list[tuple[str, str, float | None]]] | None:
        runs = self.runs(model, limit=1)
        if not runs:
            return None
        return runs[0], self.values(runs[0].id)

    def series(
        self, model: str, metric: str, *, feature: str | None = None, limit: int = 500
    ) -> list[tuple[datetime, int, str, float | None]]:
        """One statistic over time: (checked at, run id, feature, value), oldest first."""
        return self._meta.monitors.series(model, metric, feature=feature, limit=limit)

    # -- helpers -------------------------------------------------------------------------------
    def _version(self, model: str, config: MonitorConfig) -> ModelVersion:
        try:
            return self._models.get(f"{model}@{config.alias}")
        except NotFoundError:
            return self._models.get(f"{model}@latest")

    def _reference_version(self, info: ModelVersion, config: MonitorConfig) -> DatasetVersion:
        if config.reference:
            return self._datasets.get(config.reference)
        if not info.datasets:
            raise InvalidInputError(
                f"{info.ref} has no training dataset in its lineage; give the monitor a reference: "
                f"ws.monitoring.watch({info.name!r}, reference='NAME@VERSION')"
            )
        return self._datasets.get(info.datasets[0])


def _output_kind(info: ModelVersion) -> str:
    """What the default alert rules key on: 'lm' for language models, else the signature's output."""
    if info.flavor == "lm":
        return "lm"
    return info.signature.output if info.signature else "other"


def _guess_target(reference: DatasetVersion, info: ModelVersion) -> str | None:
    if info.signature is None:
        return None
    extra = [c.name for c in reference.columns if c.name not in info.signature.column_names]
    return extra[0] if len(extra) == 1 else None
