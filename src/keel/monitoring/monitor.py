"""Monitors: compare a window of live traffic with a reference, store the results, raise alerts.

A check reads the newest window of the prediction log (by count or by time), bins it against the
reference profile stored with the reference dataset version (computed once, on first use), and
records one value per (feature, statistic) as a time series. Alert rules then read those values.
"""

from __future__ import annotations

import io
import json
import logging
import math
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from keel.entities import Alert, DatasetVersion, ModelVersion, MonitorRun
from keel.errors import InvalidInputError, KeelError, NotFoundError
from keel.monitoring.alerts import FAILING_RULE
from keel.refs import check_name

if TYPE_CHECKING:
    from keel.data import Datasets
    from keel.monitoring.alerts import Alerts
    from keel.monitoring.predlog import PredictionLog
    from keel.registry import Models
    from keel.storage import BlobStore, MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["MonitorConfig", "MonitorResult", "Monitoring", "performance_from_log"]

SAMPLE_ROWS = 5000  # rows of the reference kept for multivariate drift


# Bounds of the settings: past them a window, a schedule or a row count means a typing mistake,
# and the arithmetic downstream (timedelta, 64-bit columns) would overflow.
MAX_ROWS = 100_000_000  # window_rows, min_rows
MAX_WINDOW_S = 10 * 366 * 86_400.0  # ten years
MAX_SCHEDULE_S = 366 * 86_400.0  # at least once a year
MAX_TEXT = 300  # reference (NAME@VERSION) and target (a column name)


@dataclass(frozen=True)
class MonitorConfig:
    """How a model is watched. Windows are the newest `window_rows` predictions, or those of the
    last `window_s` seconds; the reference defaults to the champion's training dataset version.

    Every field is checked here, whoever builds it (Python, the CLI, the HTTP API, a stored row),
    so that a setting that would fail every later check is refused when it is given.
    """

    window_rows: int | None = 1000
    window_s: float | None = None
    reference: str | None = None
    target: str | None = None  # label column of the reference (for reference performance)
    alias: str = "champion"
    schedule_s: float = 300.0
    min_rows: int = 100
    multivariate: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)  # DriftThresholds fields

    def __post_init__(self) -> None:
        _whole("window_rows", self.window_rows, optional=True)
        _seconds("window_s", self.window_s, MAX_WINDOW_S, optional=True)
        if self.window_rows is None and self.window_s is None:
            raise InvalidInputError("A monitor needs window_rows or window_s")
        _seconds("schedule_s", self.schedule_s, MAX_SCHEDULE_S)
        _whole("min_rows", self.min_rows)
        for name in ("reference", "target"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT):
                raise InvalidInputError(f"{name} must be a non-empty string of at most {MAX_TEXT} characters or null, got {_shown(value)}")
        if not isinstance(self.multivariate, bool):
            raise InvalidInputError(f"multivariate must be true or false, got {_shown(self.multivariate)}")
        check_name(self.alias, what="alias")
        _check_thresholds(self.thresholds)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorConfig:
        return cls(**_known_settings(data))

    @classmethod
    def salvaged(cls, data: Mapping[str, Any]) -> MonitorConfig:
        """The settings of `data` that validate, defaults for the others: to show a monitor whose
        stored settings an older Keel accepted (its checks fail, and say which setting is wrong)."""
        known = {f.name for f in fields(cls)}
        kept: dict[str, Any] = {}
        for key, value in data.items() if isinstance(data, Mapping) else ():
            if key in known:
                try:
                    cls(**{**kept, key: value})
                except InvalidInputError:
                    continue
                kept[key] = value
        return cls(**kept)


def _known_settings(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"Monitor settings are an object of name: value, got {_shown(data)}")
    known = {f.name for f in fields(MonitorConfig)}
    unknown = {str(k) for k in data} - known
    if unknown:
        raise InvalidInputError(f"Unknown monitor setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return data


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _whole(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{name} must be a whole number{' or null' if optional else ''}, got {_shown(value)}")
    if value < 1:
        raise InvalidInputError(f"{name} must be >= 1, got {value}")
    if value > MAX_ROWS:
        raise InvalidInputError(f"{name} must be at most {MAX_ROWS:,}, got {value:,}")


def _seconds(name: str, value: Any, limit: float, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number of seconds{' or null' if optional else ''}, got {_shown(value)}")
    if value <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {value}")
    if value > limit:
        raise InvalidInputError(f"{name} must be at most {limit:,.0f} seconds, got {value:g}")


def _check_thresholds(thresholds: Any) -> None:
    """Drift thresholds: DriftThresholds fields with finite numbers (ks_stat and noise_quantile may be null)."""
    from keel.monitoring.stats import DriftThresholds

    names = [f.name for f in fields(DriftThresholds)]
    if not isinstance(thresholds, Mapping):
        raise InvalidInputError(f"thresholds must be an object of {', '.join(names)}: number, got {_shown(thresholds)}")
    unknown = sorted(str(k) for k in thresholds if k not in names)
    if unknown:
        raise InvalidInputError(f"thresholds: unknown name(s) {', '.join(unknown)}; known: {', '.join(names)}")
    for key, value in thresholds.items():
        if value is None and key in ("ks_stat", "noise_quantile"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInputError(f"thresholds.{key} must be a finite number, got {_shown(value)}")
    try:
        DriftThresholds(**thresholds)
    except InvalidInputError as exc:
        raise InvalidInputError(f"thresholds: {exc}") from None


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


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


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
    ) -> None:
        self._meta = meta
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

    # -- configuration -------------------------------------------------------------------------
    def watch(self, model: str, /, **settings: Any) -> MonitorConfig:
        """Create or update the monitor of `model`; installs the default alert rules once.

        Settings are MonitorConfig's fields; an unknown or invalid one raises InvalidInputError
        naming it, and nothing is stored.
        """
        self._models.versions(model)  # NotFoundError for an unknown model
        current = self._meta.monitors.get_monitor(model)
        base = dict(current[0]) if current else {}
        _known_settings(settings)  # a mistyped name is named as such, before it meets the stored settings
        base.update(settings)
        config = MonitorConfig.from_dict(base)
        if config.reference is not None:
            self._datasets.get(config.reference)
        self._meta.monitors.save_monitor(model, asdict(config))
        info = self._version(model, config)
        self.alerts.ensure_default_rules(model, output_kind=(info.signature.output if info.signature else "other"))
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
        """The drift profile of a dataset version: computed on first use, then read from the store."""
        profile, _ = self._reference(self._datasets.get(dataset))
        return profile

    def _reference(self, version: DatasetVersion) -> tuple[dict[str, Any], str | None]:
        from keel.monitoring.stats import build_reference

        ds_id = self._datasets.version_id(version)
        stored = self._meta.monitors.get_reference(ds_id)
        if stored is not None:
            return stored
        if version.kind != "table":
            raise InvalidInputError(f"{version.ref} is a folder of files; monitors need a table as reference")
        frame = self._datasets.load(version)
        profile = build_reference(frame)
        sample = frame.sample(n=min(SAMPLE_ROWS, len(frame)), random_state=0)
        buf = io.BytesIO()
        sample.to_parquet(buf)
        digest = self._blobs.put_bytes(buf.getvalue())
        self._meta.monitors.save_reference(ds_id, None, profile, digest)
        logger.info("reference profile of %s computed (%d columns)", version.ref, len(profile.get("columns", {})))
        return profile, digest

    def _sample(self, digest: str | None) -> pd.DataFrame | None:
        if digest is None:
            return None
        return pd.read_parquet(io.BytesIO(self._blobs.get_bytes(digest)))

    def _model_reference(self, info: ModelVersion, reference: DatasetVersion, target: str | None) -> dict[str, Any]:
        """Output profile and reference performance of a model version on its reference data (once)."""
        from keel.monitoring.stats import build_reference, performance

        ds_id = self._datasets.version_id(reference)
        mv_id = self._meta.models.version_id(info.name, info.version)
        stored = self._meta.monitors.get_reference(ds_id, mv_id)
        if stored is not None:
            return stored[0]
        frame = self._datasets.load(reference)
        if len(frame) > 50_000:
            frame = frame.sample(n=50_000, random_state=0)
        model = self._models.load(info)
        features = list(info.signature.column_names) if info.signature else [c for c in frame.columns if c != target]
        X = frame[features]
        outputs = _outputs(model, X)
        profile: dict[str, Any] = {"outputs": build_reference(outputs), "performance": {}}
        if target is not None and target in frame.columns:
            profile["performance"] = _performance(model, frame[target], X, outputs, performance)
        self._meta.monitors.save_reference(ds_id, mv_id, profile, None)
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
        from keel.monitoring.stats import (
            DriftThresholds,
            classifier_drift_auc,
            drift_report,
            quality_report,
        )

        config = self.config(model)
        info = self._version(model, config)
        self.alerts.ensure_default_rules(model, output_kind=info.signature.output if info.signature else "other")
        reference = self._reference_version(info, config)
        ref_profile, sample_digest = self._reference(reference)
        target = config.target or _guess_target(reference, info)
        features = list(info.signature.column_names) if info.signature else [
            c for c in ref_profile.get("columns", {}) if c != target
        ]  # fmt: skip

        if config.window_s is not None:
            window = self.predictions.window(model, since=at - timedelta(seconds=config.window_s), until=at)
        else:
            window = self.predictions.window(model, last_rows=config.window_rows, until=at)
        window = _flat(window, features)
        errors = window["__error"].notna() if "__error" in window.columns else pd.Series(False, index=window.index)
        served = window.loc[~errors]
        present = [f for f in features if f in served.columns]
        inputs = served[present]
        values: list[tuple[str, str, float | None]] = [("", "rows", float(len(window))), ("", "served_rows", float(len(served)))]
        summary: dict[str, Any] = {"model_version": info.version, "reference": reference.ref, "features": {}, "skipped": []}
        unreadable: dict[str, str] = {}  # feature -> why its statistics could not be computed
        drifted: tuple[str, ...] = ()

        # Data quality, over every logged request (rejected ones count as schema violations).
        logged = window[[c for c in window.columns if c in features or c == "__error"]]
        quality, _ = _by_feature(lambda fs: quality_report(
            _restrict(ref_profile, fs), logged, expected_columns=features,
            error_column="__error" if "__error" in window.columns else None,
        ), features, unreadable, "quality")  # fmt: skip
        q = asdict(quality)
        values.append(("", "schema_violation_rate", _finite(q.get("schema_violation_rate"))))
        for feat, rates in (q.get("features") or {}).items():
            for metric in ("missing_rate", "out_of_range_rate", "unseen_category_rate"):
                if metric in rates:
                    values.append((feat, metric, _finite(rates[metric])))

        if len(inputs) >= config.min_rows:
            thresholds = DriftThresholds(**config.thresholds) if config.thresholds else DriftThresholds()
            report, checked = _by_feature(
                lambda fs: drift_report(_restrict(ref_profile, fs), inputs[fs], thresholds=thresholds), present, unreadable, "drift"
            )
            for fd in report.features:
                values += [
                    (fd.feature, "psi", _finite(fd.psi)),
                    (fd.feature, "js_distance", _finite(fd.js_distance)),
                    (fd.feature, "ks_stat", _finite(getattr(fd, "ks_stat", None))),
                    (fd.feature, "ks_pvalue", _finite(getattr(fd, "ks_pvalue", None))),
                    (fd.feature, "wasserstein_norm", _finite(getattr(fd, "wasserstein_norm", None))),
                    (fd.feature, "drift", 1.0 if fd.drifted else 0.0),
                ]
                summary["features"][fd.feature] = _evidence(fd)
            drifted = tuple(fd.feature for fd in report.features if fd.drifted)
            values.append(("", "drifted_share", len(drifted) / max(len(report.features), 1)))

            try:
                model_ref = self._model_reference(info, reference, target)
                out_cols = [c for c in served.columns if c == "__prediction" or c.startswith("__proba_")]
                outputs = _window_outputs(served[out_cols], model_ref["outputs"])
                if outputs is not None:
                    pred = drift_report(_restrict(model_ref["outputs"], list(outputs.columns)), outputs, thresholds=thresholds)
                    if pred.features:
                        values.append(("", "prediction_psi", _finite(pred.features[0].psi)))
                        values.append(("", "prediction_js_distance", _finite(pred.features[0].js_distance)))
            except Exception as exc:  # one statistic that fails costs that statistic, not the check
                _skip(summary, model, "prediction drift", exc)
            if config.multivariate:
                try:
                    ref_sample = self._sample(sample_digest)
                    cols = [c for c in checked if ref_sample is not None and c in ref_sample.columns]
                    if ref_sample is not None and cols:
                        values.append(("", "multivariate_auc", _finite(classifier_drift_auc(ref_sample[cols], inputs[cols]))))
                except Exception as exc:
                    _skip(summary, model, "multivariate drift", exc)
        else:
            summary["skipped"].append(f"drift: {len(inputs)} served rows in the window, fewer than min_rows={config.min_rows}")

        # Performance on the labelled part of the window.
        labelled = served[served["__label"].notna()] if "__label" in served.columns else served.iloc[0:0]
        values.append(("", "labelled_rows", float(len(labelled))))
        if len(labelled) and info.signature is not None:
            try:
                self._performance(model, info, labelled, reference, target, values, summary)
            except Exception as exc:  # one statistic that fails costs that statistic, not the check
                _skip(summary, model, "performance", exc)

        window_start = _ts(window["__at"].min()) if len(window) else None
        window_end = _ts(window["__at"].max()) if len(window) else None
        summary["drifted_features"] = list(drifted)
        if unreadable:
            summary["unreadable"] = unreadable
            summary["skipped"] += [f"{f}: {why}" for f, why in unreadable.items()]
            logger.warning("check of %s: statistics skipped for %s", model, "; ".join(f"{f} ({w})" for f, w in unreadable.items()))
        run = self._meta.monitors.record_run(
            model_name=model,
            model_version=info.version,
            reference=reference.ref,
            started_at=at,
            window_start=window_start,
            window_end=window_end,
            rows=len(window),
            labelled_rows=len(labelled),
            summary=summary,
            values=values,
        )
        context = {"reference": reference.ref, "model_version": info.version, "run_id": run.id,
                   "window": {"rows": len(window), "start": str(window_start), "end": str(window_end)},
                   "features": summary["features"]}  # fmt: skip
        try:
            alerts = self.alerts.evaluate(model, [(f, m, v) for f, m, v in values if v is not None], context=context)
        except Exception:  # an alerting bug must not lose the check's results
            logger.exception("evaluating alert rules for %s failed", model)
            alerts = []
        return MonitorResult(run, values, drifted, alerts)

    def _performance(self, model: str, info: ModelVersion, labelled: pd.DataFrame, reference: DatasetVersion,
                     target: str | None, values: list[tuple[str, str, float | None]], summary: dict[str, Any]) -> None:  # fmt: skip
        """Performance on the labelled rows of the window, and its drop from the reference's."""
        from keel.monitoring.stats import performance

        perf = _performance_from_log(info, labelled, performance)
        # The model's own held-out metrics, where its run logged them, are the honest baseline;
        # scores on the reference data (often the training data itself) fill in the rest.
        recorded = _recorded_performance(info)
        ref_perf = {**self._model_reference(info, reference, target).get("performance", {}), **recorded}
        summary["reference_performance_recorded"] = sorted(recorded)
        for metric, value in perf.items():
            values.append(("", metric, _finite(value)))
        for metric in ("accuracy", "roc_auc", "f1"):
            if metric in perf and metric in ref_perf and _finite(perf[metric]) is not None:
                values.append(("", f"{metric}_drop", _finite(ref_perf[metric] - perf[metric])))
        if "rmse" in perf and ref_perf.get("rmse"):
            values.append(("", "rmse_increase", _finite(perf["rmse"] / ref_perf["rmse"] - 1.0)))
        summary["reference_performance"] = ref_perf
        if not ref_perf:
            summary["skipped"].append(
                f"performance drops: no label column known in {reference.ref}; set one with "
                f"`keel monitor watch {model} --target COLUMN`"
            )

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
                    logger.error("monitor of %s is failing: %s (alert 'monitor-failing' raised; its checks are "
                                 "tried again every schedule_s, and this is logged again only if the cause changes)",
                                 name, cause, exc_info=exc)  # fmt: skip
                else:
                    logger.info("monitor of %s still failing: %s", name, cause)
        return results

    # -- results -------------------------------------------------------------------------------
    def runs(self, model: str, *, limit: int = 100) -> list[MonitorRun]:
        return self._meta.monitors.runs(model, limit=limit)

    def get_run(self, model: str, run_id: int) -> MonitorRun:
        """One stored check of `model`; NotFoundError if `model` has no check with this id."""
        run = self._meta.monitors.run(run_id)
        if run.model != model:
            raise NotFoundError(f"Model {model!r} has no monitor check #{run_id} (it is a check of {run.model!r})")
        return run

    def values(self, run_id: int) -> list[tuple[str, str, float | None]]:
        return self._meta.monitors.values(run_id)

    def latest(self, model: str) -> tuple[MonitorRun, list[tuple[str, str, float | None]]] | None:
        runs = self.runs(model, limit=1)
        if not runs:
            return None
        return runs[0], self.values(runs[0].id)

    def series(self, model: str, metric: str, *, feature: str | None = None, limit: int = 500) -> list[tuple[datetime, int, str, float | None]]:
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


# Metrics a training run logs under these names are the version's held-out performance.
_RECORDED = {
    "roc_auc": ("roc_auc", "auc", "test_auc", "test_roc_auc", "val_auc", "val_roc_auc"),
    "accuracy": ("accuracy", "test_accuracy", "val_accuracy"),
    "f1": ("f1", "test_f1", "val_f1"),
    "rmse": ("rmse", "test_rmse", "val_rmse"),
}


def _recorded_performance(info: ModelVersion) -> dict[str, float]:
    found: dict[str, float] = {}
    for key, names in _RECORDED.items():
        for name in names:
            value = _finite(info.metrics.get(name))
            if value is not None:
                found[key] = value
                break
    return found


def _guess_target(reference: DatasetVersion, info: ModelVersion) -> str | None:
    if info.signature is None:
        return None
    extra = [c.name for c in reference.columns if c.name not in info.signature.column_names]
    return extra[0] if len(extra) == 1 else None


def _restrict(profile: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    out = dict(profile)
    out["columns"] = {k: v for k, v in profile.get("columns", {}).items() if k in columns}
    return out


def _outputs(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    if model.has_proba:
        proba = model.predict_proba(X)
        classes = [str(c) for c in model.classes]
        col = classes[-1] if len(classes) == 2 else None
        if col is not None:
            return pd.DataFrame({f"__proba_{col}": proba[:, -1]})
    return pd.DataFrame({"__prediction": model.predict(X)})


def _window_outputs(frame: pd.DataFrame, ref_outputs: dict[str, Any]) -> pd.DataFrame | None:
    cols = [c for c in ref_outputs.get("columns", {}) if c in frame.columns]
    if not cols or frame.empty:
        return None
    return frame[cols]


def _performance(model: Any, y: pd.Series, X: pd.DataFrame, outputs: pd.DataFrame, performance: Any) -> dict[str, float]:
    kind = model.signature.output if model.signature else "other"
    if kind == "classification":
        proba = model.predict_proba(X) if model.has_proba else None
        return dict(performance("classification", y.to_numpy(), model.predict(X), proba=proba, classes=list(model.classes or ())))
    if kind == "regression":
        return dict(performance("regression", y.to_numpy(), model.predict(X)))
    return {}


def performance_from_log(info: ModelVersion, labelled: pd.DataFrame) -> dict[str, float]:
    """Metrics of logged predictions (`__prediction`, `__proba_<class>`) against their `__label`."""
    from keel.monitoring.stats import performance

    return _performance_from_log(info, labelled, performance)


def _performance_from_log(info: ModelVersion, labelled: pd.DataFrame, performance: Any) -> dict[str, float]:
    assert info.signature is not None
    kind = info.signature.output
    y = labelled["__label"].to_numpy()
    pred = labelled["__prediction"].to_numpy()
    if kind == "classification":
        classes = list(info.signature.classes or ())
        proba_cols = [f"__proba_{c}" for c in classes]
        proba = labelled[proba_cols].to_numpy(dtype=float) if all(c in labelled.columns for c in proba_cols) else None
        y = _align_labels(y, classes)
        pred = _align_labels(pred, classes)
        return dict(performance("classification", y, pred, proba=proba, classes=classes))
    if kind == "regression":
        return dict(performance("regression", y.astype(float), pred.astype(float)))
    return {}


def _align_labels(values: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Feedback arrives as JSON: map '1' back to 1 when the classes are numbers."""
    if not classes:
        return values
    lookup = {str(c): c for c in classes}
    return np.array([lookup.get(str(v), v) for v in values], dtype=object if isinstance(classes[0], str) else None)


def _evidence(fd: Any) -> dict[str, Any]:
    data = asdict(fd) if hasattr(fd, "__dataclass_fields__") else dict(fd)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items() if k != "feature"}


def _ts(value: Any) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.to_pydatetime()


def _cause(exc: BaseException) -> str:
    """An error in one line: Keel's own messages as they are, others with their type."""
    return str(exc) if isinstance(exc, KeelError) else f"{type(exc).__name__}: {exc}"


def _skip(summary: dict[str, Any], model: str, what: str, exc: BaseException) -> None:
    summary["skipped"].append(f"{what}: {_cause(exc)}")
    logger.warning("check of %s: %s skipped: %s", model, what, _cause(exc), exc_info=exc)


_T = TypeVar("_T")


def _by_feature(compute: Callable[[list[str]], _T], features: list[str], unreadable: dict[str, str], what: str) -> tuple[_T, list[str]]:
    """`compute(features)`; when that raises, the features it fails on alone are noted in
    `unreadable` with the cause, and it is computed over the others: one bad column costs that
    column, not the check. Returns the result and the features it covers. An error that is no
    single feature's fault (every feature fails alone, or none does) is raised."""
    try:
        return compute(features), features
    except Exception as exc:
        whole = exc
    good = []
    for feature in features:
        try:
            compute([feature])
        except Exception as exc:
            unreadable.setdefault(feature, f"{what}: {_cause(exc)}")
        else:
            good.append(feature)
    if not good or len(good) == len(features):
        raise whole  # the check fails, and its monitor-failing alert says why
    return compute(good), good


def _flat(window: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Cells holding lists or objects (a refused request's inputs, as sent) as their JSON text:
    a value that is not a number, or an unseen category, rather than one that cannot be hashed."""
    changed = {}
    for name in features:
        if name in window.columns and window[name].dtype == object and window[name].map(_nested).any():
            changed[name] = window[name].map(lambda v: json.dumps(v, default=str) if _nested(v) else v)
    return window.assign(**changed) if changed else window


def _nested(value: Any) -> bool:
    return isinstance(value, list | dict | tuple | set)
