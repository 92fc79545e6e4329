"""Causal effects: Keel's CATE learners and what-if answers on data with known answers.

CATE: the issue's simulated DGP (X ~ N(0, I_10), propensity logistic in X0 and X1,
tau(X) = 1 + X0 + 0.5 X1^2, a nonlinear baseline, N(0, 1) noise), n = 10,000, 20 seeds:
sqrt(PEHE) of the chosen learner, ATE error and interval coverage. Goals: sqrt(PEHE) <= 0.30,
coverage >= 90 %.

What-if: a structural model z -> x -> m -> y (z also into m and y, m quadratic in z), n = 2,000,
20 seeds, do(x := 1.5 x) counterfactually for the observed units, against the exact answer (the
same noise pushed through the true equations): median relative error, 50-resample interval
coverage (goal >= 90 %), fit time and answer time for 10,000 rows (goal < 1 s).

The anchors (DoWhy, EconML at their defaults) are reported when installed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/causal.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit" / "causal"))

from test_cate import simulate  # noqa: E402  (the unit test's DGP, one definition)
from test_whatif import GRAPH, _push, _simulate  # noqa: E402

from keel.causal import estimate_cate, fit_scm  # noqa: E402


def line(name: str, value: float, goal: str, ok: bool) -> None:
    print(f"  {name:<34} {value:>10.3f}   goal {goal:<10} {'' if ok else 'missed'}")


def cate(n: int, seeds: int) -> None:
    print(f"CATE (simulated DGP, n = {n:,}, {seeds} seeds)")
    pehe, err, covered, secs, chosen = [], [], 0, [], []
    for seed in range(seeds):
        X, t, y, tau = simulate(n, seed)
        start = time.perf_counter()
        res = estimate_cate(X, t, y, seed=seed)
        secs.append(time.perf_counter() - start)
        pehe.append(float(np.sqrt(np.mean((res.cate - tau) ** 2))))
        err.append(abs(res.ate - tau.mean()))
        covered += res.ate_interval[0] <= tau.mean() <= res.ate_interval[1]
        chosen.append(f"{res.learner}/{res.model}")
    cov = covered / seeds
    line("sqrt(PEHE), mean over seeds", statistics.mean(pehe), "<= 0.30", statistics.mean(pehe) <= 0.30)
    line("sqrt(PEHE), median", statistics.median(pehe), "-", True)
    line("sqrt(PEHE), worst seed", max(pehe), "-", True)
    line("ATE abs error, median", statistics.median(err), "-", True)
    line("ATE 95% interval coverage", cov, ">= 0.90", cov >= 0.90)
    line("seconds per fit, median", statistics.median(secs), "-", True)
    print(f"  chosen learners: {dict((c, chosen.count(c)) for c in sorted(set(chosen)))}")


def what_if(n: int, seeds: int, resamples: int) -> None:
    print(f"What-if (simulated SCM, n = {n:,}, {seeds} seeds, {resamples} resamples, do(x := 1.5 x))")
    errs, covered, fit_s = [], 0, []
    for seed in range(seeds):
        data, noise = _simulate(n, seed)
        truth = float(np.mean(_push(noise, 1.5)["y"] - data["y"]))
        start = time.perf_counter()
        scm = fit_scm(data, GRAPH, n_resamples=resamples, seed=seed)
        fit_s.append(time.perf_counter() - start)
        res = scm.what_if({"x": "*1.5"}, "y", kind="counterfactual")
        errs.append(abs(res.mean_effect - truth) / abs(truth))
        covered += res.interval[0] <= truth <= res.interval[1]
    data, _ = _simulate(10_000, 0)
    scm = fit_scm(data, GRAPH, n_resamples=resamples, seed=0)
    start = time.perf_counter()
    scm.what_if({"x": "*1.5"}, "y", kind="counterfactual")
    answer = time.perf_counter() - start
    line("relative error, median", statistics.median(errs), "-", True)
    line("interval coverage", covered / seeds, ">= 0.90", covered / seeds >= 0.90)
    line("fit seconds (with resamples), median", statistics.median(fit_s), "-", True)
    line("answer seconds, 10,000 rows", answer, "< 1", answer < 1)
    print(f"  mechanisms: {dict(scm.mechanisms)}")


def anchors() -> None:
    missing = [name for name in ("dowhy", "econml") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"Anchors: {', '.join(missing)} not installed in this environment; their figures are not measured here.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 2,000 and 3 seeds (a smoke test)")
    args = parser.parse_args()
    anchors()
    cate(2_000 if args.quick else 10_000, 3 if args.quick else 20)
    what_if(2_000, 3 if args.quick else 20, 50)


if __name__ == "__main__":
    main()
