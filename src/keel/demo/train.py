"""Acts 2 to 5: two candidates trained and tracked, registered, the better one promoted, its lineage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.demo._shared import EXPERIMENT, INDENT, MODEL_NAME, POSITIVE, SEED, TEST_FRACTION, split, step
from keel.refs import CHAMPION

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from keel.entities import DatasetVersion, Lineage
    from keel.workspace import Workspace

__all__ = ["TrainedModel", "train_and_register", "promote"]


@dataclass(frozen=True)
class TrainedModel:
    """One trained, tracked and registered candidate."""

    label: str  # 'logistic regression'
    ref: str  # 'credit-risk@1'
    version: int
    run_id: str
    metrics: dict[str, float]  # test-split roc_auc, accuracy, log_loss (the names retraining and monitors use)


def promote(
    ws: Workspace, trained: list[TrainedModel], n_inputs: int, console: Console
) -> tuple[TrainedModel, TrainedModel, Lineage]:
    """Acts 3 to 5: the registered versions, the champion by test AUC, and its lineage."""
    console.print(f"{step(3, 'Register')}{', '.join(m.ref for m in trained)}  (signature: {n_inputs} input columns)")
    best, other = sorted(trained, key=lambda m: m.metrics["roc_auc"], reverse=True)
    auc = f"AUC {best.metrics['roc_auc']:.3f} > {other.metrics['roc_auc']:.3f}"
    reason = f"test AUC {best.metrics['roc_auc']:.3f} vs {other.metrics['roc_auc']:.3f} for {other.ref} ({other.label})"
    ws.models.set_alias(MODEL_NAME, CHAMPION, version=best.version, reason=reason)
    console.print(f"{step(4, 'Promote')}champion -> [bold]{best.ref}[/] ({best.label}), {auc}")
    lineage = ws.models.lineage(f"{MODEL_NAME}@{CHAMPION}")
    console.print(
        f"{step(5, 'Lineage')}{', '.join(lineage.datasets)} -> run {(lineage.run_id or '?')[:8]} "
        f"({lineage.experiment}) -> {lineage.model}"
    )
    return best, other, lineage


def _columns(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    import pandas as pd

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    return numeric, [c for c in X.columns if c not in numeric]


def _candidates(numeric: list[str], categorical: list[str]) -> list[tuple[str, Any, dict[str, Any]]]:
    """(label, unfitted pipeline, params to log) for each model the demo compares."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    linear = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                (
                    "cat",
                    make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                    categorical,
                ),
            ]
        ),
        LogisticRegression(C=1.0, max_iter=1000),
    )
    # Boosted trees take missing values natively and split ordinal codes well enough.
    codes = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    boosted = make_pipeline(
        ColumnTransformer([("cat", codes, categorical)], remainder="passthrough"),
        HistGradientBoostingClassifier(
            learning_rate=0.05,
            max_iter=200,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=SEED,
        ),
    )
    # Params named as a model project's runs name them (estimator, estimator.<param>), so the demo's
    # runs and the retraining's compare key by key.
    return [
        (
            "logistic regression",
            linear,
            {
                "estimator": "sklearn.linear_model.LogisticRegression",
                "estimator.C": 1.0,
                "estimator.max_iter": 1000,
                "encoding": "one-hot",
            },
        ),
        (
            "gradient boosting",
            boosted,
            {
                "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                "estimator.learning_rate": 0.05,
                "estimator.max_iter": 200,
                "estimator.max_leaf_nodes": 15,
                "estimator.l2_regularization": 1.0,
                "estimator.early_stopping": False,
                "estimator.random_state": SEED,
                "encoding": "ordinal",
            },
        ),
    ]


def _binary_log_loss(y: Any, p: Any) -> float:
    """Log-loss of P(positive) against 0/1 labels; sklearn's log_loss validates too much for 200 calls."""
    import numpy as np

    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def train_and_register(ws: Workspace, version: DatasetVersion, console: Console) -> tuple[list[TrainedModel], int]:
    """Train, track and register each candidate; return them and the number of input columns."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    frame = ws.datasets.load(version)  # train on exactly what the workspace stored
    X_train, X_test, y_train, y_test = split(frame)
    numeric, categorical = _columns(X_train)
    y_bad = (y_test == POSITIVE).to_numpy()
    trained: list[TrainedModel] = []
    for i, (label, pipeline, params) in enumerate(_candidates(numeric, categorical)):
        with console.status(f"Training {label}..."):
            with ws.runs.start(EXPERIMENT, name=label.replace(" ", "-"), params=params) as run:
                run.log_input(version)
                run.log_params({"test_fraction": TEST_FRACTION, "seed": SEED})
                pipeline.fit(X_train, y_train)
                bad = list(pipeline.classes_).index(POSITIVE)
                proba = pipeline.predict_proba(X_test)
                metrics = {
                    "roc_auc": float(roc_auc_score(y_bad, proba[:, bad])),
                    "accuracy": float(accuracy_score(y_test, pipeline.predict(X_test))),
                    "log_loss": _binary_log_loss(y_bad, proba[:, bad]),
                }
                if hasattr(pipeline[-1], "staged_predict_proba"):
                    # One log-loss point per boosting iteration: how the test loss fell as trees
                    # were added. The last point is the final model's, so it is not logged twice.
                    encoded = pipeline[:-1].transform(X_test)
                    for i, staged in enumerate(pipeline[-1].staged_predict_proba(encoded)):
                        run.log_metric("log_loss", _binary_log_loss(y_bad, staged[:, bad]), step=i)
                    run.log_metrics({k: v for k, v in metrics.items() if k != "log_loss"})
                else:
                    run.log_metrics(metrics)
            # Registered after the run ended, so every buffered metric is in the store.
            mv = ws.models.register(MODEL_NAME, pipeline, run=run, X=X_train, description=label)
        trained.append(TrainedModel(label, mv.ref, mv.version, run.id, metrics))
        if i == 0:
            console.print(f"{step(2, 'Train')}{'model':<21}{'run':<10}{'AUC':<7}{'accuracy':<10}log-loss")
        console.print(
            f"{INDENT}{label:<21}{run.id[:8]:<10}{metrics['roc_auc']:<7.3f}{metrics['accuracy']:<10.3f}"
            f"{metrics['log_loss']:.3f}"
        )
    return trained, X_train.shape[1]
