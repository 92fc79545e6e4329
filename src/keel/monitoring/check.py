"""One monitor check as a pure function: a window of the prediction log, the reference profile and
the monitor's settings in; the values, the summary and the drifted features out. No storage.

    compute_check(window, features, ref_profile, config, ...) -> CheckValues

What the check needs from the model (its output profile and performance on the reference data, a
sample of the reference rows) is passed in as callables, called only when the window is large
enough to need them: `Monitoring._check` (keel.monitoring.monitor) loads the inputs, stores the
results and raises the alerts.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from keel.entities import ModelVersion
from keel.errors import KeelError
from keel.monitoring.columns import AT, ERROR, LABEL, PREDICTION, PROBA_PREFIX, proba_column
from keel.monitoring.profiles import ModelReference, ReferenceProfile

if TYPE_CHECKING:
    from keel.monitoring.monitor_config import MonitorConfig
    from keel.monitoring.stats import DriftThresholds

logger = logging.getLogger("keel.monitoring.monitor")  # the check's warnings keep the logger they always had

__all__ = [
    "CheckValues",
    "compute_check",
    "drift_values",
    "finish_check",
    "model_outputs",
    "performance_from_log",
    "prediction_values",
    "quality_values",
    "reference_performance",
]

Values = list[tuple[str, str, float | None]]


@dataclass(frozen=True)
class CheckValues:
    """What one check found: one value per (feature, statistic) ('' for the model's own), the
    run's summary (per-feature evidence, what was skipped and why), and the drifted features."""

    values: Values
    summary: dict[str, Any]
    drifted: tuple[str, ...]
    rows: int
    labelled_rows: int
    window_start: datetime | None
    window_end: datetime | None


def compute_check(
    window: pd.DataFrame,
    features: list[str],
    ref_profile: ReferenceProfile,
    config: MonitorConfig,
    *,
    model: str,
    info: ModelVersion,
    reference: str,
    model_reference: Callable[[], ModelReference],
    reference_sample: Callable[[], pd.DataFrame | None],
) -> CheckValues:
    """The statistics of one window of `model` (version `info`) against the profile of the dataset
    version `reference`. `model_reference()` gives the model's output profile and performance on
    the reference data, `reference_sample()` a sample of the reference rows (or None).
    A statistic that fails is skipped and named in the summary; a feature that cannot be binned
    costs that feature (summary `unreadable`)."""
    window = _flat(window, features)
    errors = window[ERROR].notna() if ERROR in window.columns else pd.Series(False, index=window.index)
    served = window.loc[~errors]
    values: Values = [("", "rows", float(len(window))), ("", "served_rows", float(len(served)))]
    summary: dict[str, Any] = {"model_version": info.version, "reference": reference, "features": {}, "skipped": []}
    unreadable: dict[str, str] = {}  # feature -> why its statistics could not be computed
    drifted: tuple[str, ...] = ()

    _quality(window, features, ref_profile, config.min_rows, values, summary, unreadable)
    present = [f for f in features if f in served.columns]
    inputs = served[present]
    if len(inputs) >= config.min_rows:
        drifted = _drift(
            model,
            inputs,
            served,
            present,
            ref_profile,
            config,
            values,
            summary,
            unreadable,
            model_reference,
            reference_sample,
        )
    else:
        summary["skipped"].append(
            f"drift: {len(inputs)} served rows in the window, fewer than min_rows={config.min_rows}"
        )

    # Performance on the labelled part of the window.
    labelled = served[served[LABEL].notna()] if LABEL in served.columns else served.iloc[0:0]
    return finish_check(
        labelled,
        values,
        summary,
        drifted,
        unreadable,
        model=model,
        info=info,
        reference=reference,
        model_reference=model_reference,
        rows=len(window),
        window_start=_ts(window[AT].min()) if len(window) else None,
        window_end=_ts(window[AT].max()) if len(window) else None,
    )


def finish_check(
    labelled: pd.DataFrame,
    values: Values,
    summary: dict[str, Any],
    drifted: tuple[str, ...],
    unreadable: dict[str, str],
    *,
    model: str,
    info: ModelVersion,
    reference: str,
    model_reference: Callable[[], ModelReference],
    rows: int,
    window_start: datetime | None,
    window_end: datetime | None,
) -> CheckValues:
    """Performance on the `labelled` served rows, then the check's values as one CheckValues."""
    values.append(("", "labelled_rows", float(len(labelled))))
    if len(labelled) and info.signature is not None:
        try:
            _performance(model, info, labelled, reference, model_reference, values, summary)
        except Exception as exc:  # one statistic that fails costs that statistic, not the check
            _skip(summary, model, "performance", exc)

    summary["drifted_features"] = list(drifted)
    if unreadable:
        summary["unreadable"] = unreadable
        summary["skipped"] += [f"{f}: {why}" for f, why in unreadable.items()]
        logger.warning(
            "check of %s: statistics skipped for %s", model, "; ".join(f"{f} ({w})" for f, w in unreadable.items())
        )
    return CheckValues(
        values=values,
        summary=summary,
        drifted=drifted,
        rows=rows,
        labelled_rows=len(labelled),
        window_start=window_start,
        window_end=window_end,
    )


def _quality(
    window: pd.DataFrame,
    features: list[str],
    ref_profile: ReferenceProfile,
    min_rows: int,
    values: Values,
    summary: dict[str, Any],
    unreadable: dict[str, str],
) -> None:
    """Data quality, over every logged request (rejected ones count as schema violations)."""
    from keel.monitoring.stats import quality_report

    logged = window[[c for c in window.columns if c in features or c == ERROR]]
    quality, _ = _by_feature(
        lambda fs: quality_report(
            ref_profile.restricted(fs),
            logged,
            expected_columns=features,
            error_column=ERROR if ERROR in window.columns else None,
        ),
        features,
        unreadable,
        "quality",
    )
    quality_values(quality, len(logged), ref_profile, min_rows, values, summary)


def quality_values(
    quality: Any, rows: int, ref_profile: ReferenceProfile, min_rows: int, values: Values, summary: dict[str, Any]
) -> None:
    """The values of a quality report of a window of `rows` rows."""
    q = asdict(quality)
    values.append(("", "schema_violation_rate", _finite(q.get("schema_violation_rate"))))
    # Per-feature rates need as many rows as drift does: one empty cell in five rows is 20%.
    if rows >= min_rows:
        columns = ref_profile.columns
        for feat, rates in (q.get("features") or {}).items():
            for metric in ("missing_rate", "out_of_range_rate", "unseen_category_rate"):
                if metric in rates:
                    values.append((feat, metric, _finite(rates[metric])))
            column = columns.get(feat)
            base = _finite(column.missing_rate if column is not None else None)
            rate = _finite(rates.get("missing_rate"))
            if rate is not None and base is not None:
                values.append((feat, "missing_rate_increase", rate - base))
    else:
        summary["skipped"].append(
            f"data quality per feature: {rows} rows in the window, fewer than min_rows={min_rows}"
        )


def _drift(
    model: str,
    inputs: pd.DataFrame,
    served: pd.DataFrame,
    present: list[str],
    ref_profile: ReferenceProfile,
    config: MonitorConfig,
    values: Values,
    summary: dict[str, Any],
    unreadable: dict[str, str],
    model_reference: Callable[[], ModelReference],
    reference_sample: Callable[[], pd.DataFrame | None],
) -> tuple[str, ...]:
    """Per-feature drift, then the drift of the model's outputs and the multivariate drift."""
    from keel.monitoring.stats import DriftThresholds, drift_report

    thresholds = DriftThresholds(**config.thresholds) if config.thresholds else DriftThresholds()
    report, checked = _by_feature(
        lambda fs: drift_report(ref_profile.restricted(fs), inputs[fs], thresholds=thresholds),
        present,
        unreadable,
        "drift",
    )
    drifted = drift_values(report, values, summary)
    try:
        _prediction_drift(served, model_reference().outputs, thresholds, values)
    except Exception as exc:  # one statistic that fails costs that statistic, not the check
        _skip(summary, model, "prediction drift", exc)
    if config.multivariate:
        try:
            _multivariate(inputs, checked, reference_sample(), values)
        except Exception as exc:
            _skip(summary, model, "multivariate drift", exc)
    return drifted


def drift_values(report: Any, values: Values, summary: dict[str, Any]) -> tuple[str, ...]:
    """The values of a drift report (per feature, and the drifted share); the drifted features."""
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
    return drifted


def _prediction_drift(
    served: pd.DataFrame, ref_outputs: ReferenceProfile, thresholds: DriftThresholds, values: Values
) -> None:
    from keel.monitoring.stats import drift_report

    out_cols = [c for c in served.columns if c == PREDICTION or c.startswith(PROBA_PREFIX)]
    outputs = _window_outputs(served[out_cols], ref_outputs)
    if outputs is not None:
        prediction_values(
            drift_report(ref_outputs.restricted(list(outputs.columns)), outputs, thresholds=thresholds), values
        )


def prediction_values(pred: Any, values: Values) -> None:
    if pred.features:
        values.append(("", "prediction_psi", _finite(pred.features[0].psi)))
        values.append(("", "prediction_js_distance", _finite(pred.features[0].js_distance)))


def _multivariate(inputs: pd.DataFrame, checked: list[str], ref_sample: pd.DataFrame | None, values: Values) -> None:
    from keel.monitoring.stats import classifier_drift_auc

    cols = [c for c in checked if ref_sample is not None and c in ref_sample.columns]
    if ref_sample is not None and cols:
        values.append(("", "multivariate_auc", _finite(classifier_drift_auc(ref_sample[cols], inputs[cols]))))


def _performance(
    model: str,
    info: ModelVersion,
    labelled: pd.DataFrame,
    reference: str,
    model_reference: Callable[[], ModelReference],
    values: Values,
    summary: dict[str, Any],
) -> None:
    """Performance on the labelled rows of the window, and its drop from the reference's."""
    perf = performance_from_log(info, labelled)
    # The model's own held-out metrics, where its run logged them, are the honest baseline;
    # scores on the reference data (often the training data itself) fill in the rest.
    recorded = _recorded_performance(info)
    ref_perf = {**model_reference().performance, **recorded}
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
            f"performance drops: no label column known in {reference}; set one with "
            f"`keel monitor watch {model} --target COLUMN`"
        )


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


def performance_from_log(info: ModelVersion, labelled: pd.DataFrame) -> dict[str, float]:
    """Metrics of logged predictions (`__prediction`, `__proba_<class>`) against their `__label`."""
    from keel.monitoring.stats import performance

    assert info.signature is not None
    kind = info.signature.output
    y = labelled[LABEL].to_numpy()
    pred = labelled[PREDICTION].to_numpy()
    if kind == "classification":
        classes = list(info.signature.classes or ())
        proba_cols = [proba_column(c) for c in classes]
        proba = labelled[proba_cols].to_numpy(dtype=float) if all(c in labelled.columns for c in proba_cols) else None
        y = _align_labels(y, classes)
        pred = _align_labels(pred, classes)
        return dict(performance("classification", y, pred, proba=proba, classes=classes))
    if kind == "regression":
        return dict(performance("regression", y.astype(float), pred.astype(float)))
    return {}


def model_outputs(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    """The outputs of a loaded model on `X` as the log holds them: the probability of the positive
    class of a binary classifier, the prediction otherwise."""
    if model.has_proba:
        proba = model.predict_proba(X)
        classes = [str(c) for c in model.classes]
        col = classes[-1] if len(classes) == 2 else None
        if col is not None:
            return pd.DataFrame({proba_column(col): proba[:, -1]})
    return pd.DataFrame({PREDICTION: model.predict(X)})


def reference_performance(model: Any, y: pd.Series, X: pd.DataFrame) -> dict[str, float]:
    """Metrics of a loaded model on reference rows `X` with labels `y` ({} for other outputs)."""
    from keel.monitoring.stats import performance

    kind = model.signature.output if model.signature else "other"
    if kind == "classification":
        proba = model.predict_proba(X) if model.has_proba else None
        return dict(
            performance(
                "classification", y.to_numpy(), model.predict(X), proba=proba, classes=list(model.classes or ())
            )
        )
    if kind == "regression":
        return dict(performance("regression", y.to_numpy(), model.predict(X)))
    return {}


def _align_labels(values: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Feedback arrives as JSON: map '1' back to 1 when the classes are numbers."""
    if not classes:
        return values
    lookup = {str(c): c for c in classes}
    return np.array([lookup.get(str(v), v) for v in values], dtype=object if isinstance(classes[0], str) else None)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _window_outputs(frame: pd.DataFrame, ref_outputs: ReferenceProfile) -> pd.DataFrame | None:
    cols = [c for c in ref_outputs.columns if c in frame.columns]
    if not cols or frame.empty:
        return None
    return frame[cols]


def _evidence(fd: Any) -> dict[str, Any]:
    data = asdict(fd) if hasattr(fd, "__dataclass_fields__") else dict(fd)
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items() if k != "feature"
    }


def _ts(value: Any) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.to_pydatetime()


def cause(exc: BaseException) -> str:
    """An error in one line: Keel's own messages as they are, others with their type."""
    return str(exc) if isinstance(exc, KeelError) else f"{type(exc).__name__}: {exc}"


def _skip(summary: dict[str, Any], model: str, what: str, exc: BaseException) -> None:
    summary["skipped"].append(f"{what}: {cause(exc)}")
    logger.warning("check of %s: %s skipped: %s", model, what, cause(exc), exc_info=exc)


_T = TypeVar("_T")


def _by_feature(
    compute: Callable[[list[str]], _T], features: list[str], unreadable: dict[str, str], what: str
) -> tuple[_T, list[str]]:
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
            unreadable.setdefault(feature, f"{what}: {cause(exc)}")
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
