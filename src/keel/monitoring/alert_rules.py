"""Alert rules: the metrics a rule may watch, its comparison operators, the rules every model
gets by default, and the validation of a rule's fields (keel.monitoring.alerts stores and evaluates them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keel.entities import AlertSeverity
from keel.errors import InvalidInputError

__all__ = [
    "DEFAULT_RULES",
    "DERIVED",
    "FAILING_RULE",
    "FEATURE_METRICS",
    "MIN_LABELLED_ROWS",
    "MODEL_METRICS",
    "OPS",
    "PERFORMANCE_METRICS",
    "DefaultRule",
    "check_rule",
]

FEATURE_METRICS = frozenset(
    {
        "psi",
        "js_distance",
        "ks_stat",
        "ks_pvalue",
        "wasserstein_norm",
        "drift",
        "missing_rate",
        "missing_rate_increase",
        "out_of_range_rate",
        "unseen_category_rate",
        "causal_effect_drift",  # 1 when a causal study's rerun moved an estimator's effect (feature: the estimator)
        "edge_build_failed",  # 1 when a new champion's edge build lost agreement or no longer fits (feature: the target)
    }
)
MODEL_METRICS = frozenset(
    {
        "prediction_psi",
        "prediction_js_distance",
        "multivariate_auc",
        "drifted_share",
        "schema_violation_rate",
        "accuracy",
        "roc_auc",
        "f1",
        "log_loss",
        "ece",
        "mae",
        "rmse",
        "r2",
        "accuracy_drop",
        "roc_auc_drop",
        "f1_drop",
        "rmse_increase",
        "rows",
        "served_rows",
        "labelled_rows",
        "retraining_failed",
        "monitor_failing",
        # language models (keel.workspace.genai_monitor): prompts against the training corpus, outputs
        "text_drift",  # 1 when the window's prompt embeddings drifted from the corpus's (MMD effect size)
        "text_drift_effect",
        "text_drift_pvalue",
        "prompt_perplexity",
        "prompt_perplexity_ratio",  # prompt_perplexity / the version's val_perplexity
        "prompt_length",
        "output_length",  # mean whitespace words of the generated texts
        "output_tokens",  # mean tokens (the model's tokenizer) of the generated texts
        "output_chars",
    }
)
# Performance on a handful of labels is noise: rules on these metrics fire only when the check
# saw at least MIN_LABELLED_ROWS labelled predictions (when it reports `labelled_rows` at all).
PERFORMANCE_METRICS = frozenset(
    {
        "accuracy",
        "roc_auc",
        "f1",
        "log_loss",
        "ece",
        "mae",
        "rmse",
        "r2",
        "accuracy_drop",
        "roc_auc_drop",
        "f1_drop",
        "rmse_increase",
    }
)
MIN_LABELLED_ROWS = 50
# 'drop' metrics are reference minus current, 'increase' current / reference - 1.
DERIVED = {"accuracy_drop": "accuracy", "roc_auc_drop": "roc_auc", "f1_drop": "f1", "rmse_increase": "rmse"}

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}
_HOUR = 3600


@dataclass(frozen=True)
class DefaultRule:
    """A rule every model gets (or every model with one of `outputs`): see DEFAULT_RULES."""

    name: str
    metric: str
    op: str
    threshold: float
    severity: str
    cooldown_s: int
    outputs: tuple[str, ...] = ()  # only for models with these signature outputs; () = every model


# The defaults: one drift decision per feature (`drift` is 1 when PSI >= 0.2, the Wasserstein
# distance >= 0.1 reference standard deviations or Jensen-Shannon >= 0.1: see DriftThresholds;
# one rule, so a drifting feature raises one alert, not three), joint drift, prediction drift, data quality, and performance against the
# reference. Warnings re-notify every 6 hours while open, critical alerts every hour.
DEFAULT_RULES = (
    DefaultRule("feature-drift", "drift", ">=", 1.0, "warning", 6 * _HOUR),
    DefaultRule("multivariate-drift", "multivariate_auc", ">=", 0.7, "warning", 6 * _HOUR),
    DefaultRule("prediction-drift", "prediction_psi", ">=", 0.2, "warning", 6 * _HOUR),
    DefaultRule("schema-violations", "schema_violation_rate", ">", 0.01, "critical", _HOUR),
    # Against the reference's own rate: a column 8.5% empty in training is not an incident at 10%.
    DefaultRule("missing-values", "missing_rate_increase", ">", 0.1, "warning", 6 * _HOUR),
    DefaultRule("out-of-range", "out_of_range_rate", ">", 0.05, "warning", 6 * _HOUR),
    DefaultRule("unseen-categories", "unseen_category_rate", ">", 0.05, "warning", 6 * _HOUR),
    DefaultRule("auc-drop", "roc_auc_drop", ">", 0.05, "critical", _HOUR, ("classification",)),
    DefaultRule("accuracy-drop", "accuracy_drop", ">", 0.05, "warning", 6 * _HOUR, ("classification",)),
    DefaultRule("rmse-increase", "rmse_increase", ">", 0.1, "critical", _HOUR, ("regression",)),
    # Language models: prompts unlike the training corpus (MMD effect size over its threshold, and
    # significant), or text the model finds more than twice as surprising as its own held-out split.
    DefaultRule("prompt-drift", "text_drift", ">=", 1.0, "warning", 6 * _HOUR, ("lm",)),
    DefaultRule("prompt-perplexity", "prompt_perplexity_ratio", ">", 2.0, "warning", 6 * _HOUR, ("lm",)),
    DefaultRule("retraining-failed", "retraining_failed", ">=", 1.0, "critical", _HOUR),
    DefaultRule("monitor-failing", "monitor_failing", ">=", 1.0, "critical", 6 * _HOUR),
)
FAILING_RULE = "monitor-failing"  # fires while a model's monitor checks fail; one alert per episode


def check_rule(
    metric: str, op: str, threshold: Any, feature: Any, severity: Any, cooldown_s: Any, window: Any
) -> str | None:
    """Check a rule's fields; return its feature ('' for a model-level metric, None for any feature).

    Raises InvalidInputError naming the bad field.
    """
    if metric not in FEATURE_METRICS | MODEL_METRICS:
        raise InvalidInputError(
            f"metric: unknown metric {metric!r}; per feature: {', '.join(sorted(FEATURE_METRICS))}; "
            f"per model: {', '.join(sorted(MODEL_METRICS))}"
        )
    if op not in OPS:
        raise InvalidInputError(f"op: use one of {', '.join(OPS)}, got {op!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InvalidInputError(f"threshold: a finite number, got {threshold!r}")
    if feature is not None:
        if not isinstance(feature, str) or len(feature) > 250:
            raise InvalidInputError(f"feature: a column name (at most 250 characters) or None for any, got {feature!r}")
        if feature and metric in MODEL_METRICS:
            raise InvalidInputError(
                f"feature: {metric!r} is a model-level metric; leave feature unset, got {feature!r}"
            )
        if not feature and metric in FEATURE_METRICS:
            raise InvalidInputError(f"feature: {metric!r} is measured per feature; name one or leave it unset for any")
    if metric in MODEL_METRICS:
        feature = ""  # model-level values carry feature ''
    if severity not in set(AlertSeverity):
        raise InvalidInputError(f"severity: use one of {', '.join(AlertSeverity)}, got {severity!r}")
    if isinstance(cooldown_s, bool) or not isinstance(cooldown_s, int) or cooldown_s < 0:
        raise InvalidInputError(f"cooldown_s: a whole number of seconds >= 0, got {cooldown_s!r}")
    if window is not None and (not isinstance(window, str) or not window.strip() or len(window) > 64):
        raise InvalidInputError(f"window: a short label such as '1000 rows' or '1h', got {window!r}")
    return feature
