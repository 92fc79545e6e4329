"""Hyper-parameter search for a model project: trials fit on the training part and are scored on a
validation split of it (the gate's holdout stays untouched), with Ray Tune when the executor is
Ray, else as a seeded random search in this process. Values in, values out.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.retraining.pipeline import evaluate, fit, output_kind
from keel.retraining.project import LOWER_IS_BETTER, Estimator, Project

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["search", "with_params"]


def with_params(project: Project, params: dict[str, Any]) -> Project:
    """The project with its estimator's params overridden."""
    merged = {**project.estimator.params, **params}
    return replace(
        project,
        estimator=Estimator(project.estimator.cls, project.estimator.entry_point, merged, project.estimator.preprocess),
    )


def _sample(space: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            config[name] = spec[int(rng.integers(len(spec)))]
            continue
        low, high = spec["low"], spec["high"]
        value = math.exp(rng.uniform(math.log(low), math.log(high))) if spec["log"] else rng.uniform(low, high)
        config[name] = int(round(value)) if spec["int"] else float(value)
    return config


def _trial(
    project: Project, config: dict[str, Any], X: pd.DataFrame, y: pd.Series, X_val: pd.DataFrame, y_val: pd.Series
) -> float:
    model = fit(with_params(project, config), X, y)
    scores = evaluate(model, X_val, y_val, (project.evaluation.primary,), output_kind(model))
    return scores.get(project.evaluation.primary, math.nan)


def search(project: Project, X: pd.DataFrame, y: pd.Series, *, use_ray: bool) -> dict[str, Any]:
    """Run the project's `tuning` trials; returns {"best": params, "score": value, "trials": [...]}."""
    from sklearn.model_selection import train_test_split

    assert project.tuning is not None
    tuning = project.tuning
    X_fit, X_val, y_fit, y_val = train_test_split(
        X, y, test_size=project.data.split.test_fraction, random_state=tuning.seed
    )
    rng = np.random.default_rng(tuning.seed)
    configs = [_sample(tuning.params, rng) for _ in range(tuning.trials)]
    lower = project.evaluation.primary in LOWER_IS_BETTER
    if use_ray:
        scores = _ray_trials(project, configs, X_fit, y_fit, X_val, y_val)
    else:
        scores = [_trial(project, c, X_fit, y_fit, X_val, y_val) for c in configs]
    trials: list[dict[str, Any]] = [{"params": c, "score": s} for c, s in zip(configs, scores, strict=True)]
    finite = [t for t in trials if t["score"] is not None and math.isfinite(t["score"])]
    if not finite:
        raise ValueError(f"no trial could be scored on {project.evaluation.primary}")
    best = (min if lower else max)(finite, key=lambda t: t["score"])
    return {
        "best": best["params"],
        "score": best["score"],
        "metric": project.evaluation.primary,
        "trials": trials,
        "validation_rows": len(X_val),
        "engine": "ray tune" if use_ray else "random search",
    }


def _ray_trials(project: Project, configs: list[dict[str, Any]], X: Any, y: Any, X_val: Any, y_val: Any) -> list[float]:
    """The same sampled configurations as Ray Tune trials (one CPU each), in order."""
    from ray import tune

    def trainable(config: dict[str, Any], X: Any, y: Any, X_val: Any, y_val: Any) -> None:
        tune.report({"score": _trial(project, config["params"], X, y, X_val, y_val)})

    with tempfile.TemporaryDirectory(prefix="keel-tune-") as storage:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, X=X, y=y, X_val=X_val, y_val=y_val), {"cpu": 1}),
            param_space={"params": tune.grid_search(configs)},
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        results = tuner.fit()
        # ResultGrid iterates through __getitem__ and __len__, which mypy does not follow.
        by_config = {repr(sorted(r.config["params"].items())): r.metrics.get("score", math.nan) for r in results}  # type: ignore[attr-defined]
    return [float(by_config.get(repr(sorted(c.items())), math.nan)) for c in configs]
