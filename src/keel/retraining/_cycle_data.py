"""What one retraining cycle trains and judges on: the training set (the dataset version, with
`data: reference+production` the labelled production rows too; the columns; the holdout) and the
champion's side of the comparison (its metrics on that holdout, the project's gate checks), and
the run's params and the evidence as they are stored.

Functions of the objects the Retraining hands them; each adds what it decided to the cycle's
`evidence`, which becomes the recorded decision's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.entities import DatasetVersion, ModelVersion
from keel.errors import InvalidInputError, KeelError
from keel.retraining.pipeline import evaluate, features_target, resolve, split
from keel.retraining.project import Project

if TYPE_CHECKING:
    import pandas as pd

    from keel.data import Datasets
    from keel.monitoring.monitor import Monitoring
    from keel.monitoring.predlog import PredictionLog
    from keel.registry import Models

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingSet",
    "training_set",
    "score_champion",
    "gate_checks",
    "run_params",
    "jsonable",
    "recorded_holdout",
    "apply_monitoring",
]


@dataclass(frozen=True)
class TrainingSet:
    """The rows a challenger is fitted on and the holdout both models are scored on."""

    data: DatasetVersion  # the version trained on: the run's input and the model's lineage
    X_train: pd.DataFrame
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series


def training_set(
    project: Project,
    dataset: str | None,
    champion: ModelVersion | None,
    evidence: dict[str, Any],
    *,
    datasets: Datasets,
    predictions: PredictionLog,
) -> TrainingSet:
    """The training data (`dataset` overrides the project's), its columns, and the holdout: a random
    split of it, or the newest labelled production rows (data neither model has seen)."""
    data, fresh = _training_data(project, dataset, evidence, datasets=datasets, predictions=predictions)
    frame = datasets.load(data)
    features = _features(project, champion, data, frame, evidence)
    if fresh is None:  # a random holdout of the training data
        X_train, X_test, y_train, y_test = split(project, frame, features)
        holdout: dict[str, Any] = {"test_fraction": project.data.split.test_fraction, "seed": project.data.split.seed}
    else:  # the newest labelled production rows: data neither model has seen
        (X_train, y_train), (X_test, y_test) = (
            features_target(project, frame, features),
            features_target(project, fresh, features),
        )
        holdout = {"newest_production_rows": len(fresh)}
    evidence["data"] = {
        "dataset": data.ref,
        "rows": len(frame) + (0 if fresh is None else len(fresh)),
        "train_rows": len(X_train),
        "holdout_rows": len(X_test),
        "split": holdout,
    }
    return TrainingSet(data, X_train, y_train, X_test, y_test)


def _training_data(
    project: Project, dataset: str | None, evidence: dict[str, Any], *, datasets: Datasets, predictions: PredictionLog
) -> tuple[DatasetVersion, pd.DataFrame | None]:
    """The dataset version to train on, and the fresh holdout when there is one.

    `data: latest`: the pinned or newest version, split at random. `data: reference+production`:
    the labelled production rows are exported from the prediction log as a dataset version;
    the newest `test_fraction` of them (at least 20 rows' worth) is the holdout, and the
    reference plus the older production rows is stored as the training version.
    """
    ref = dataset or project.data.dataset
    base = datasets.get(ref if "@" in ref else f"{ref}@latest")
    evidence["data_base"] = base.ref
    if project.retraining.data != "reference+production":
        return base, None
    import pandas as pd

    name = project.model
    try:
        production = predictions.export(name, f"{name}-production", target=project.data.target)
    except InvalidInputError:
        evidence["production_rows"] = 0
        return base, None  # no labelled production rows yet: the reference alone
    rows = datasets.load(production)  # oldest first
    evidence["production"] = production.ref
    evidence["production_rows"] = len(rows)
    held = round(len(rows) * project.data.split.test_fraction) if len(rows) >= 20 else 0
    train_rows, fresh = (rows.iloc[: len(rows) - held], rows.iloc[len(rows) - held :]) if held else (rows, None)
    combined = pd.concat([datasets.load(base), train_rows], ignore_index=True)
    version = datasets.add(
        f"{base.name}-retrain",
        combined,
        description=f"{base.ref} plus {len(train_rows)} labelled production rows of {production.ref}",
        tags={"base": base.ref, "production": production.ref},
    )
    return version, fresh


def _features(
    project: Project, champion: ModelVersion | None, data: DatasetVersion, frame: pd.DataFrame, evidence: dict[str, Any]
) -> tuple[str, ...] | None:
    """The columns to train on: the project's declared features, else the champion's (so that a
    new dataset version's extra column neither changes the model's inputs nor breaks the holdout
    of production rows that never had it), else every column but the target (None).

    Columns left out are reported in the evidence; a feature the dataset lost fails the cycle
    here, before any training.
    """
    target = project.data.target
    if project.data.features:
        features, origin = project.data.features, "project"
    elif champion is not None and champion.signature is not None:
        features, origin = champion.signature.column_names, f"champion {champion.ref}"
    else:
        features, origin = None, "dataset"
    ignored = [str(c) for c in frame.columns if c != target and (features is not None and c not in features)]
    evidence["columns"] = {"features_from": origin, "ignored": ignored}
    if features is None:
        return None
    missing = [f for f in features if f not in frame.columns]
    if missing:
        fix = (
            "put them back, or remove them from data.features"
            if origin == "project"
            else "put them back, or declare data.features in the project without them"
        )
        raise InvalidInputError(f"{data.ref} lacks the feature(s) {', '.join(missing)} that the {origin} uses; {fix}")
    if ignored:
        logger.warning(
            "retraining %s: %s has columns the %s does not use, ignored: %s",
            project.model,
            data.ref,
            origin,
            ", ".join(ignored),
        )
    return tuple(features)


def recorded_holdout(
    project: Project, version: ModelVersion, evidence: dict[str, Any], *, datasets: Datasets
) -> tuple[pd.DataFrame, pd.Series, str] | None:
    """The holdout a retraining cycle scored `version` on, drawn again from the decision's evidence
    (the dataset version, the split's fraction and seed; the same stratification rule): the rows the
    version never saw. None when the cycle held out production rows, which are not kept apart."""
    from dataclasses import replace

    data = evidence.get("data") or {}
    split_spec = data.get("split") or {}
    if "test_fraction" not in split_spec or not data.get("dataset") or version.signature is None:
        return None
    spec = replace(
        project.data,
        split=replace(project.data.split, test_fraction=split_spec["test_fraction"], seed=split_spec["seed"]),
    )
    frame = datasets.load(data["dataset"])
    _, X_test, _, y_test = split(replace(project, data=spec), frame, version.signature.column_names)
    return X_test, y_test, f"the holdout of {data['dataset']} the retraining scored {version.ref} on"


def score_champion(
    models: Models,
    champion: ModelVersion | None,
    X: pd.DataFrame,
    y: pd.Series,
    project: Project,
    kind: str,
    evidence: dict[str, Any],
) -> dict[str, float] | None:
    """The champion's metrics on the challenger's holdout; None without a champion, or when it cannot
    score these rows (the reason goes into the evidence, and the gate judges the challenger alone)."""
    if champion is None:
        return None
    try:
        return evaluate(models.load(champion), X, y, project.evaluation.metrics, kind)
    except (KeelError, ValueError, KeyError) as exc:
        evidence["champion_not_scored"] = f"{champion.ref}: {exc}"
        return None


def gate_checks(
    models: Models,
    project: Project,
    challenger: Any,
    champion: ModelVersion | None,
    X: pd.DataFrame,
    y: pd.Series,
    metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
) -> dict[str, Any]:
    """The results of the project's `gate.checks`, by path, for the gate to weigh."""
    out = {}
    loaded = models.load(champion) if champion is not None and project.gate.checks else None
    for path in project.gate.checks:
        check = resolve(path, "gate.checks")
        out[path] = check(
            challenger=challenger, champion=loaded, X=X, y=y, metrics=metrics, champion_metrics=champion_metrics
        )
    return out


def run_params(project: Project, trigger: str) -> dict[str, Any]:
    """What the training run logs as its params: the estimator's, prefixed, and how it was trained."""
    params: dict[str, Any] = {f"estimator.{k}": v for k, v in project.estimator.params.items()}
    params.update(
        {
            "estimator": project.estimator.cls or project.estimator.entry_point,
            "trigger": trigger,
            "test_fraction": project.data.split.test_fraction,
            "seed": project.data.split.seed,
        }
    )
    return params


def shadow_name(model: str) -> str:
    """The prediction-log name of a model's shadow traffic."""
    return f"{model}.shadow"


def shadow_metrics(
    monitoring: Monitoring, project: Project, champion: ModelVersion, challenger: ModelVersion
) -> tuple[dict[str, float], dict[str, float], int] | None:
    """Both models' metrics on the live requests the champion answered and the challenger scored in
    shadow, once `gate.shadow_rows` of them have labels: (challenger's, champion's, rows); else None."""
    from keel.monitoring.check import performance_from_log
    from keel.monitoring.columns import ID, LABEL

    live = monitoring.predictions.window(champion.name, version=champion.version, labelled_only=True)
    shadow = monitoring.predictions.window(shadow_name(champion.name), version=challenger.version)
    both = live[live[ID].isin(set(shadow[ID]))]
    if len(both) < (project.gate.shadow_rows or 0):
        return None
    labels = both.set_index(ID)[LABEL]
    shadow = shadow[shadow[ID].isin(labels.index)].copy()
    shadow[LABEL] = shadow[ID].map(labels)
    keep = set(project.evaluation.metrics)
    metrics = {k: v for k, v in performance_from_log(challenger, shadow).items() if k in keep}
    champion_metrics = {k: v for k, v in performance_from_log(champion, both).items() if k in keep}
    return metrics, champion_metrics, len(both)


def apply_monitoring(monitoring: Monitoring, project: Project) -> None:
    """Watch the model as the project says, and add its own alert rules (once each)."""
    if not project.monitoring and not project.alert_rules:
        return
    monitoring.watch(project.model, **project.monitoring)
    alerts = monitoring.alerts
    have = {r.name for r in alerts.rules(project.model)}
    for rule in project.alert_rules:
        if rule["name"] not in have:
            spec = {k: v for k, v in rule.items() if k != "name"}
            alerts.add_rule(project.model, rule["name"], **spec)


def jsonable(value: Any) -> Any:
    """`value` as JSON can store it (what a decision's evidence is kept as)."""
    import math

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item"):
        return jsonable(value.item())
    return str(value)
