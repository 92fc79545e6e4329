"""The anchors for bench/causal.py: DoWhy and EconML at their defaults, run in their own env.

Runs under bench/.anchors-venv (bash bench/causal_anchors_env.sh), never Keel's: DoWhy 0.14 caps
scipy below 1.16 and EconML caps scikit-learn, below what Keel uses. bench/causal.py writes the
data as CSV into a temporary folder, runs this script on it and reads one JSON object back, so
both sides see the same rows. Nothing here imports Keel.

    bench/.anchors-venv/bin/python bench/causal_anchors.py DATA_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def dowhy_average(data: Path) -> dict[str, Any]:
    """DoWhy backdoor estimators at their defaults on the NSW samples (value and time)."""
    from dowhy import CausalModel

    out: dict[str, Any] = {}
    cases = [
        ("nsw_experimental", "ate", "nsw_experimental.csv"),
        ("nsw_experimental", "att", "nsw_experimental.csv"),
        ("nsw_cps", "att", "nsw_cps.csv"),
        ("nsw_psid", "att", "nsw_psid.csv"),
    ]
    for sample, estimand, file in cases:
        frame = pd.read_csv(data / file)
        for method in ("backdoor.propensity_score_weighting", "backdoor.linear_regression"):

            def run(frame: pd.DataFrame = frame, method: str = method, estimand: str = estimand) -> float:
                model = CausalModel(data=frame, treatment="treat", outcome="re78", common_causes=COVARIATES)
                identified = model.identify_effect(proceed_when_unidentifiable=True)
                return float(model.estimate_effect(identified, method_name=method, target_units=estimand).value)

            try:
                value, secs = _timed(run)
                out[f"{sample}/{estimand}/{method.split('.')[1]}"] = {"value": value, "seconds": secs}
            except Exception as exc:  # an anchor that fails is reported, not fatal
                out[f"{sample}/{estimand}/{method.split('.')[1]}"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def _econml_models() -> dict[str, Any]:
    from econml.dml import CausalForestDML, LinearDML
    from econml.dr import DRLearner
    from econml.metalearners import XLearner
    from sklearn.ensemble import GradientBoostingRegressor

    # Defaults, except what the estimator cannot do without: the treatment is binary, and the
    # X-learner has no default base model (scikit-learn's default gradient boosting is used).
    return {
        "LinearDML": lambda: LinearDML(discrete_treatment=True, random_state=0),
        "CausalForestDML": lambda: CausalForestDML(discrete_treatment=True, random_state=0),
        "XLearner": lambda: XLearner(models=GradientBoostingRegressor(random_state=0)),
        "DRLearner": lambda: DRLearner(random_state=0),
    }


def econml_cate(data: Path) -> dict[str, Any]:
    """sqrt(PEHE), ATE and fit time of EconML's learners on each simulated seed's data."""
    out: dict[str, Any] = {}
    for file in sorted(data.glob("cate_seed*.csv")):
        frame = pd.read_csv(file)
        x = frame[[c for c in frame.columns if c.startswith("x")]].to_numpy()
        t, y, tau = frame["t"].to_numpy(), frame["y"].to_numpy(), frame["tau"].to_numpy()
        for name, make in _econml_models().items():
            est = make()
            try:
                _, secs = _timed(lambda est=est: est.fit(y, t, X=x))
                effect = np.asarray(est.effect(x)).ravel()
            except Exception as exc:
                out.setdefault(name, []).append({"error": f"{type(exc).__name__}: {exc}"})
                continue
            pehe = float(np.sqrt(np.mean((effect - tau) ** 2)))
            out.setdefault(name, []).append(
                {"pehe": pehe, "ate_error": float(abs(effect.mean() - tau.mean())), "seconds": secs}
            )
    return out


def gcm_what_if(data: Path) -> dict[str, Any]:
    """DoWhy GCM: auto-assigned mechanisms, counterfactual do(x := 1.5 x), error against the truth."""
    import networkx as nx
    from dowhy import gcm

    edges = [("z", "x"), ("z", "m"), ("x", "m"), ("z", "y"), ("m", "y")]
    rows = []
    for file in sorted(data.glob("scm_seed*.csv")):
        frame = pd.read_csv(file)
        truth = float(frame["truth_effect"].iloc[0])
        observed = frame[["z", "x", "m", "y"]]
        scm = gcm.InvertibleStructuralCausalModel(nx.DiGraph(edges))  # a fresh graph: GCM writes into it

        def fit(scm: Any = scm, observed: pd.DataFrame = observed) -> None:
            gcm.auto.assign_causal_mechanisms(scm, observed)
            gcm.fit(scm, observed)

        _, fit_s = _timed(fit)
        cf, answer_s = _timed(
            lambda scm=scm, observed=observed: gcm.counterfactual_samples(
                scm, {"x": lambda x: 1.5 * x}, observed_data=observed
            )
        )
        effect = float(np.mean(cf["y"].to_numpy() - observed["y"].to_numpy()))
        rows.append({"rel_error": abs(effect - truth) / abs(truth), "fit_seconds": fit_s, "answer_seconds": answer_s})
    return {"gcm": rows}


def main() -> None:
    data, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    warnings.filterwarnings("ignore")
    import dowhy
    import econml
    import scipy
    import sklearn

    result: dict[str, Any] = {
        "versions": {
            "dowhy": dowhy.__version__,
            "econml": econml.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        }
    }
    result["average"] = dowhy_average(data)
    result["cate"] = econml_cate(data)
    result.update(gcm_what_if(data))
    out_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
