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
    6. alias move         median of M moves of 'champion' between two versions:
                          Keel `ws.models.set_alias(...)`; MLflow `client.set_registered_model_alias(...)`
                          (goal: Keel p50 <= 0.5 ms, issue 17)
    7. first load         each version loaded once, as a freshly started server does: Keel with its
                          in-process vetting verdicts cleared first (the skops audit is part of the
                          figure); MLflow `mlflow.sklearn.load_model("models:/name/v")`
    8. fresh process      a new Python process that imports the library, opens the store and loads
                          `name@champion` (imports included: what a worker or CLI call pays)

Each side first registers one untimed "warm-up" version (first-call imports and query
compilation). The V models are fitted before any timing and differ from each other (C varies), so every
version writes a new artifact on both sides (Keel stores identical bytes once).

    make bench                                         # full sizes, through .venv-bench
    .venv-bench/bin/python bench/registry.py --quick   # smoke test in seconds
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, fmt_seconds, median, parse_args, quiet_mlflow, stopwatch, time_calls, verdict  # noqa: E402

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
ALIAS_MOVE_GOAL_S = 0.5e-3  # issue 17: an alias move's p50
# Explicit requirements: without them MLflow infers them in a subprocess, seconds per call (RECIPES.md).
PIP_REQUIREMENTS = [f"scikit-learn=={metadata.version('scikit-learn')}"]


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0], sizes={"versions": (20, 200), "loads": (10, 50), "moves": (50, 300)}, repeats=(1, 3)
    )
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
        k: []
        for k in (
            "keel_register",
            "mlflow_register",
            "keel_load",
            "mlflow_load",
            "mlflow_load_pyfunc",
            "keel_move",
            "mlflow_move",
            "keel_first_load",
            "mlflow_first_load",
            "keel_fresh",
            "mlflow_fresh",
        )
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
            extra_rows(ws, client, kdir, args, sides, t)
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
    move = report.add(
        "move an alias (p50)",
        t["keel_move"],
        t["mlflow_move"],
        unit="per move",
        note="Keel: ws.models.set_alias; MLflow: client.set_registered_model_alias",
    )
    report.add(
        "first load of a version",
        t["keel_first_load"],
        t["mlflow_first_load"],
        unit="per load",
        note="each version once; Keel's vetting verdicts cleared first (a freshly started server)",
    )
    report.add(
        "load by alias in a fresh process",
        t["keel_fresh"],
        t["mlflow_fresh"],
        unit="per process",
        note="python -c: import, open the store, load name@champion",
    )
    report.print_table()
    goal = verdict(move["keel_s"], ALIAS_MOVE_GOAL_S, fmt=fmt_seconds)
    report.checks["alias_move_p50_goal"] = goal
    print(f"alias move p50 {fmt_seconds(move['keel_s'])}: {goal}")
    report.save()


def extra_rows(ws: Any, client: Any, kdir: str, args: Any, sides: list[str], t: dict[str, list[float]]) -> None:
    """Rows 6-8: alias moves, first loads, a fresh process's load by alias."""
    from keel.registry import _skops_vetting

    versions = list(range(1, args.versions + 1))
    for side in sides:
        if side == "keel":
            moves = iter(range(args.moves))
            t["keel_move"].append(
                median(time_calls(lambda: ws.models.set_alias(NAME, "moving", version=1 + next(moves) % 2), args.moves))
            )
            firsts = []
            for v in versions:
                _skops_vetting._VETTED.clear()
                _skops_vetting._AUDITS.clear()
                firsts += time_calls(lambda v=v: ws.models.load(f"{NAME}@{v}"), 1)
            t["keel_first_load"].append(median(firsts))
            code = f"import keel; keel.Workspace(home={kdir!r}).models.load({NAME + '@' + ALIAS!r})"
        else:
            moves = iter(range(args.moves))
            t["mlflow_move"].append(
                median(
                    time_calls(
                        lambda: client.set_registered_model_alias(NAME, "moving", str(1 + next(moves) % 2)), args.moves
                    )
                )
            )
            t["mlflow_first_load"].append(
                median(
                    [
                        x
                        for v in versions
                        for x in time_calls(lambda v=v: mlflow.sklearn.load_model(f"models:/{NAME}/{v}"), 1)
                    ]
                )
            )
            code = (
                "import mlflow, mlflow.sklearn; "
                f"mlflow.set_tracking_uri({mlflow.get_tracking_uri()!r}); mlflow.set_registry_uri({mlflow.get_registry_uri()!r}); "
                f"mlflow.sklearn.load_model('models:/{NAME}@{ALIAS}')"
            )
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"}
        fresh = []
        for _ in range(2 if args.quick else 3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=300)
            fresh.append(time.perf_counter() - start)
        t[f"{side}_fresh"].append(median(fresh))


if __name__ == "__main__":
    main()
