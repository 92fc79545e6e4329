"""Registry benchmark: Keel vs MLflow, both on a fresh SQLite store and local artifacts, in one process.

    4. register versions  V scikit-learn LogisticRegression versions of one model, inside one run,
                          each with a signature and an input example:
                          Keel `ws.models.register(name, est, run=run, X=X)`;
                          MLflow `mlflow.sklearn.log_model(est, name=..., registered_model_name=...,
                          pip_requirements=[...], input_example=X.head(5))`
    5. load by alias      `name@champion`, median of L loads:
                          Keel `ws.models.load("name@champion")`;
                          MLflow `mlflow.sklearn.load_model("models:/name@champion")` (anchor) and
                          `mlflow.pyfunc.load_model(...)` (second row)

Each side first registers one untimed "warm-up" version (first-call imports and query
compilation). The V models are fitted before any timing and differ from each other (C varies), so every
version writes a new artifact on both sides (Keel stores identical bytes once).

    make bench                                         # full sizes, through .venv-bench
    .venv-bench/bin/python bench/registry.py --quick   # smoke test in seconds
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, median, parse_args, quiet_mlflow, stopwatch, time_calls  # noqa: E402

quiet_mlflow()

import mlflow  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import keel  # noqa: E402

quiet_mlflow()  # again: importing mlflow configures its own loggers

NAME = "bench-model"
ALIAS = "champion"
# Explicit requirements: without them MLflow infers them in a subprocess, seconds per call (RECIPES.md).
PIP_REQUIREMENTS = [f"scikit-learn=={metadata.version('scikit-learn')}"]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], sizes={"versions": (20, 200), "loads": (10, 50)}, repeats=(1, 3))
    report = Report("registry", args)
    frame = load_breast_cancer(as_frame=True).frame
    X = frame.drop(columns="target").iloc[:, :10]
    y = frame["target"]
    example = X.head(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        models = [LogisticRegression(C=0.05 * (i + 1), max_iter=300).fit(X, y) for i in range(args.versions)]
    champion = models[-1]

    t: dict[str, list[float]] = {
        k: [] for k in ("keel_register", "mlflow_register", "keel_load", "mlflow_load", "mlflow_load_pyfunc")
    }
    print(f"registry: {args.versions} versions, {args.loads} loads, {args.repeats} repeats", flush=True)
    for rep in range(args.repeats):
        with (
            tempfile.TemporaryDirectory(prefix="keel-bench-") as kdir,
            tempfile.TemporaryDirectory(prefix="mlflow-bench-") as mdir,
        ):
            ws = keel.Workspace(home=kdir)
            mlflow.set_tracking_uri(f"sqlite:///{mdir}/mlflow.db")
            mlflow.set_registry_uri(f"sqlite:///{mdir}/mlflow.db")
            client = MlflowClient()
            exp = client.create_experiment("registry", artifact_location=Path(mdir, "artifacts").as_uri())
            sides = ["keel", "mlflow"] if rep % 2 == 0 else ["mlflow", "keel"]

            # 4. register versions
            for side in sides:
                if side == "keel":
                    run = ws.runs.start("registry")
                    ws.models.register("warm-up", champion, run=run, X=X)  # first-call imports, untimed
                    with stopwatch(t["keel_register"]):
                        for est in models:
                            ws.models.register(NAME, est, run=run, X=X)
                    run.end()
                    version = ws.models.get(NAME).version
                    assert version == args.versions, version
                    ws.models.set_alias(NAME, ALIAS, version=version)
                else:
                    with mlflow.start_run(experiment_id=exp):
                        mlflow.sklearn.log_model(
                            champion,
                            name="model",
                            registered_model_name="warm-up",
                            pip_requirements=PIP_REQUIREMENTS,
                            input_example=example,
                        )
                        with stopwatch(t["mlflow_register"]):
                            for est in models:
                                mlflow.sklearn.log_model(
                                    est,
                                    name="model",
                                    registered_model_name=NAME,
                                    pip_requirements=PIP_REQUIREMENTS,
                                    input_example=example,
                                )
                    versions = client.search_model_versions(f"name='{NAME}'", max_results=10_000)
                    version = max(int(v.version) for v in versions)
                    assert version == args.versions and len(versions) == args.versions, (version, len(versions))
                    client.set_registered_model_alias(NAME, ALIAS, str(version))

            # 5. load by alias
            uri = f"models:/{NAME}@{ALIAS}"
            want = champion.predict_proba(X)
            got_keel = ws.models.load(f"{NAME}@{ALIAS}").predict_proba(X)
            got_mlflow = mlflow.sklearn.load_model(uri).predict_proba(X)
            got_pyfunc = np.asarray(mlflow.pyfunc.load_model(uri).predict(X))
            if not (
                np.allclose(got_keel, want)
                and np.allclose(got_mlflow, want)
                and np.array_equal(got_pyfunc, champion.predict(X))
            ):
                raise SystemExit("A loaded champion does not predict like the fitted model")
            report.checks["loaded_champion_predicts_like_fitted_model"] = True
            for side in sides:
                if side == "keel":
                    t["keel_load"].append(median(time_calls(lambda: ws.models.load(f"{NAME}@{ALIAS}"), args.loads)))
                else:
                    t["mlflow_load"].append(median(time_calls(lambda: mlflow.sklearn.load_model(uri), args.loads)))
                    t["mlflow_load_pyfunc"].append(
                        median(time_calls(lambda: mlflow.pyfunc.load_model(uri), args.loads))
                    )
            ws.close()
        print(f"repeat {rep + 1}/{args.repeats} done", flush=True)

    v = args.versions
    report.add(
        f"register {v} model versions",
        t["keel_register"],
        t["mlflow_register"],
        unit="total",
        note="MLflow: mlflow.sklearn.log_model(registered_model_name=, pip_requirements=, input_example=) in a run; "
        "Keel: ws.models.register(run=, X=)",
    )
    report.add(
        "load model by alias (sklearn flavour)",
        t["keel_load"],
        t["mlflow_load"],
        unit="per load",
        note="MLflow: mlflow.sklearn.load_model('models:/name@champion'); Keel: ws.models.load('name@champion')",
    )
    report.add(
        "load model by alias (pyfunc)",
        t["keel_load"],
        t["mlflow_load_pyfunc"],
        unit="per load",
        note="MLflow: mlflow.pyfunc.load_model('models:/name@champion')",
    )
    report.print_table()
    report.save()


if __name__ == "__main__":
    main()
