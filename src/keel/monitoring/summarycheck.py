"""One monitor check from a window's merged summary (keel.monitoring.windowsummary) instead of its
rows: the same values, summary and drifted features as `compute_check` gives for those rows.

    check_from_summary(window, labelled, features, ref_profile, config, ...) -> CheckValues

Multivariate drift (a classifier telling reference rows from window rows) needs the rows
themselves: a monitor with `multivariate` on checks from rows (keel.monitoring.monitor).
Performance needs the labelled rows only, and the caller passes just those.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from keel.entities import ModelVersion
from keel.monitoring.check import (
    CheckValues,
    Values,
    _skip,
    drift_values,
    finish_check,
    prediction_values,
    quality_values,
)
from keel.monitoring.profiles import ModelReference, ReferenceProfile

if TYPE_CHECKING:
    from keel.data import Datasets
    from keel.entities import DatasetVersion
    from keel.monitoring.monitor_config import MonitorConfig
    from keel.monitoring.windowsummary import SummaryPlan, WindowSummary
    from keel.registry import Models
    from keel.storage import MetadataStore

logger = logging.getLogger("keel.monitoring.monitor")

__all__ = ["SummaryPlans", "check_features", "check_from_summary"]

_PLAN_TTL_S = 10.0  # how long a log-time plan is reused: a monitor changed takes this long to apply


def check_features(info: ModelVersion, ref_profile: ReferenceProfile, target: str | None) -> list[str]:
    """The features a check of `info` covers: its signature's inputs, else the profile's columns."""
    return list(info.signature.column_names) if info.signature else [c for c in ref_profile.columns if c != target]


class SummaryPlans:
    """The plans (keel.monitoring.windowsummary.SummaryPlan) of a workspace's monitors: what a
    segment is summarized against when logged, and what a check merges summaries of."""

    def __init__(
        self,
        meta: MetadataStore,
        datasets: Datasets,
        models: Models,
        reference_version: Callable[[ModelVersion, MonitorConfig], DatasetVersion],
        guess_target: Callable[[DatasetVersion, ModelVersion], str | None],
    ) -> None:
        self._meta = meta
        self._datasets = datasets
        self._models = models
        self._reference_version = reference_version
        self._guess_target = guess_target
        self._cache: dict[tuple[str, int], tuple[float, SummaryPlan | None]] = {}

    def stored_outputs(self, info: ModelVersion, reference: DatasetVersion) -> ModelReference | None:
        """The version's output profile on `reference` when stored (a check computes it once)."""
        ds_id = self._datasets.version_id(reference)
        stored = self._meta.monitors.get_reference(ds_id, self._meta.models.version_id(info.name, info.version))
        return None if stored is None else ModelReference.from_dict(stored[0])

    def plan(
        self,
        info: ModelVersion,
        reference: DatasetVersion,
        ref_profile: ReferenceProfile,
        features: list[str],
        outputs: ModelReference,
    ) -> SummaryPlan:
        from keel.monitoring.windowsummary import SummaryPlan

        # Stored profiles never change: the dataset and model versions name them.
        ds_id = self._datasets.version_id(reference)
        return SummaryPlan.of(features, ref_profile, outputs.outputs, reference.ref, ds_id, info.name, info.version)

    def for_log(self, model: str, version: int) -> SummaryPlan | None:
        """The plan of a segment of `model@version` being logged: only when its monitor's profiles
        are stored already (a serving process never computes them); reused for a few seconds."""
        from keel.monitoring.monitor_config import MonitorConfig

        key = (model, version)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < _PLAN_TTL_S:
            return cached[1]
        plan = None
        try:
            found = self._meta.monitors.get_monitor(model)
            config = MonitorConfig.from_dict(found[0]) if found is not None else None
            if config is not None and not config.multivariate:
                info = self._models.get(f"{model}@{version}")
                reference = self._reference_version(info, config)
                stored = self._meta.monitors.get_reference(self._datasets.version_id(reference))
                outputs = self.stored_outputs(info, reference)
                if stored is not None and outputs is not None and info.flavor != "lm":
                    profile = ReferenceProfile.from_dict(stored[0])
                    target = config.target or self._guess_target(reference, info)
                    plan = self.plan(info, reference, profile, check_features(info, profile, target), outputs)
        except Exception:  # no plan: checks read the segment's rows instead
            logger.debug("no summary plan for %s@%s", model, version, exc_info=True)
        self._cache[key] = (time.monotonic(), plan)
        return plan


def check_from_summary(
    window: WindowSummary,
    labelled: pd.DataFrame,
    features: list[str],
    ref_profile: ReferenceProfile,
    config: MonitorConfig,
    *,
    model: str,
    info: ModelVersion,
    reference: str,
    model_reference: Callable[[], ModelReference],
    window_start: datetime | None,
    window_end: datetime | None,
) -> CheckValues:
    """`compute_check` of a window given as its merged summary (taken against `ref_profile` and,
    when the window needs them, the outputs of `model_reference()`) and its `labelled` served rows."""
    from keel.monitoring._quality import quality_from_counts
    from keel.monitoring.stats import DriftThresholds, drift_report_from
    from keel.monitoring.windowsummary import side_stats

    values: Values = [("", "rows", float(window.rows)), ("", "served_rows", float(window.served))]
    summary: dict[str, Any] = {"model_version": info.version, "reference": reference, "features": {}, "skipped": []}
    drifted: tuple[str, ...] = ()

    profiles = ref_profile.restricted(features).columns
    missing = tuple(c for c in features if c not in window.columns)
    counts = {name: window.quality.get(name) if name in window.columns else None for name in profiles}
    quality = quality_from_counts(profiles, window.rows, window.flagged, missing, counts)
    quality_values(quality, window.rows, ref_profile, config.min_rows, values, summary)

    present = [f for f in features if f in window.columns]
    if window.served >= config.min_rows:
        thresholds = DriftThresholds(**config.thresholds) if config.thresholds else DriftThresholds()
        restricted = ref_profile.restricted(present)
        report = drift_report_from(
            restricted, side_stats(restricted, window.features), window.served, thresholds=thresholds
        )
        drifted = drift_values(report, values, summary)
        try:
            outputs = model_reference().outputs  # the window's summary was taken against it
            out_cols = [c for c in outputs.columns if c in window.outputs.columns]
            if out_cols and window.served:
                out_profile = outputs.restricted(out_cols)
                stats = side_stats(out_profile, window.outputs)
                prediction_values(drift_report_from(out_profile, stats, window.served, thresholds=thresholds), values)
        except Exception as exc:  # one statistic that fails costs that statistic, not the check
            _skip(summary, model, "prediction drift", exc)
    else:
        summary["skipped"].append(
            f"drift: {window.served} served rows in the window, fewer than min_rows={config.min_rows}"
        )
    return finish_check(
        labelled,
        values,
        summary,
        drifted,
        {},
        model=model,
        info=info,
        reference=reference,
        model_reference=model_reference,
        rows=window.rows,
        window_start=window_start,
        window_end=window_end,
    )
