"""Monitors: compare a window of live traffic with a reference, store the results, raise alerts.

A check reads the newest window of the prediction log (by count or by time), bins it against the
reference profile stored with the reference dataset version (computed once, on first use), and
records one value per (feature, statistic) as a time series. Alert rules then read those values.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.entities import DatasetVersion, ModelVersion, MonitorRun
from keel.errors import InvalidInputError, NotFoundError
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


@dataclass(frozen=True)
class MonitorConfig:
    """How a model is watched. Windows are the newest `window_rows` predictions, or those of the
    last `window_s` seconds; the reference defaults to the champion's training dataset version."""

    window_rows: int | None = 1000
    window_s: float | None = None
    reference: str | None = None
    target: str | None = None  # label column of the reference (for reference performance)
    alias: str = "champion"
    schedule_s: float = 300.0
    min_rows: int = 100
    multivariate: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.window_rows is None and self.window_s is None:
            raise InvalidInputError("A monitor needs window_rows or window_s")
        if self.window_rows is not None and self.window_rows < 1:
            raise InvalidInputError(f"window_rows must be >= 1, got {self.window_rows}")
        if self.window_s is not None and self.window_s <= 0:
            raise InvalidInputError(f"window_s must be > 0, got {self.window_s}")
        if self.schedule_s <= 0:
            raise InvalidInputError(f"schedule_s must be > 0, got {self.schedule_s}")
        if self.min_rows < 1:
            raise InvalidInputError(f"min_rows must be >= 1, got {self.min_rows}")
        check_name(self.alias, what="alias")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"Unknown monitor setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        return cls(**data)


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

    # -- configuration -------------------------------------------------------------------------
    def watch(self, model: str, **settings: Any) -> MonitorConfig:
        """Create or update the monitor of `model`; installs the default alert rules once."""
        self._models.versions(model)  # NotFoundError for an unknown model
        current = self._meta.monitors.get_monitor(model)
        base = dict(current[0]) if current else {}
        base.update({k: v for k, v in settings.items()})
        config = MonitorConfig.from_dict(base)
        if config.reference is not None:
            self._datasets.get(config.reference)
        self._meta.monitors.save_monitor(model, asdict(config))
        info = self._version(model, config)
        self.alerts.ensure_default_rules(model, output_kind=(info.signature.output if info.signature else "other"))
        return config

    def config(self, model: str) -> MonitorConfig:
        found = self._meta.monitors.get_monitor(model)
        if found is None:
            return MonitorConfig()
        return MonitorConfig.from_dict(found[0])

    def monitors(self) -> list[tuple[str, MonitorConfig, datetime | None]]:
        return [(name, MonitorConfig.from_dict(cfg), last) for name, cfg, last in self._meta.monitors.monitors()]

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
        rules it lacks are installed first (a disabled one stays disabled).
        """
        from keel.monitoring.stats import (
            DriftThresholds,
            classifier_drift_auc,
            drift_report,
            performance,
            quality_report,
        )

        at = at or datetime.now(UTC)
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
        errors = window["__error"].notna() if "__error" in window.columns else pd.Series(False, index=window.index)
        served = window.loc[~errors]
        present = [f for f in features if f in served.columns]
        inputs = served[present]
        values: list[tuple[str, str, float | None]] = [("", "rows", float(len(window))), ("", "served_rows", float(len(served)))]
        summary: dict[str, Any] = {"model_version": info.version, "reference": reference.ref, "features": {}, "skipped": []}
        drifted: tuple[str, ...] = ()

        # Data quality, over every logged request (rejected ones count as schema violations).
        quality = quality_report(
            _restrict(ref_profile, features), window[[c for c in window.columns if c in features or c == "__error"]],
            expected_columns=features, error_column="__error" if "__error" in window.columns else None,
        )  # fmt: skip
        q = asdict(quality)
        values.append(("", "schema_violation_rate", _finite(q.get("schema_violation_rate"))))
        for feat, rates in (q.get("features") or {}).items():
            for metric in ("missing_rate", "out_of_range_rate", "unseen_category_rate"):
                if metric in rates:
                    values.append((feat, metric, _finite(rates[metric])))

        if len(inputs) >= config.min_rows:
            thresholds = DriftThresholds(**config.thresholds) if config.thresholds else DriftThresholds()
            report = drift_report(_restrict(ref_profile, present), inputs, thresholds=thresholds)
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

            model_ref = self._model_reference(info, reference, target)
            out_cols = [c for c in served.columns if c == "__prediction" or c.startswith("__proba_")]
            outputs = _window_outputs(served[out_cols], model_ref["outputs"])
            if outputs is not None:
                pred = drift_report(_restrict(model_ref["outputs"], list(outputs.columns)), outputs, thresholds=thresholds)
                if pred.features:
                    values.append(("", "prediction_psi", _finite(pred.features[0].psi)))
                    values.append(("", "prediction_js_distance", _finite(pred.features[0].js_distance)))
            if config.multivariate:
                ref_sample = self._sample(sample_digest)
                if ref_sample is not None:
                    cols = [c for c in present if c in ref_sample.columns]
                    if cols:
                        values.append(("", "multivariate_auc", _finite(classifier_drift_auc(ref_sample[cols], inputs[cols]))))
        else:
            summary["skipped"].append(f"drift: {len(inputs)} served rows in the window, fewer than min_rows={config.min_rows}")

        # Performance on the labelled part of the window.
        labelled = served[served["__label"].notna()] if "__label" in served.columns else served.iloc[0:0]
        values.append(("", "labelled_rows", float(len(labelled))))
        if len(labelled) and info.signature is not None:
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

        window_start = _ts(window["__at"].min()) if len(window) else None
        window_end = _ts(window["__at"].max()) if len(window) else None
        summary["drifted_features"] = list(drifted)
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

    def due(self, at: datetime | None = None) -> list[str]:
        """Models whose monitor schedule has elapsed."""
        at = at or datetime.now(UTC)
        out = []
        for name, config, last in self.monitors():
            if last is None or (at - last).total_seconds() >= config.schedule_s:
                out.append(name)
        return out

    def run_due(self, at: datetime | None = None) -> list[MonitorResult]:
        """Run every monitor that is due; a failing one is logged and skipped."""
        results = []
        for name in self.due(at):
            try:
                results.append(self.run(name, at=at))
            except Exception:  # one broken monitor must not stop the others
                logger.exception("monitor of %s failed", name)
        return results

    # -- results -------------------------------------------------------------------------------
    def runs(self, model: str, *, limit: int = 100) -> list[MonitorRun]:
        return self._meta.monitors.runs(model, limit=limit)

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
