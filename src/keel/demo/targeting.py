"""Act 13, Target: which retention offer for whom? A policy learned from logged (confounded) offers,
on simulated customers whose best offer is known, registered as a model version and asked for three
customers like any other model.

The known answer: a discount keeps new customers (tenure under a year), a call keeps long-standing
big spenders, and for everyone else the best offer is none (both cost more than they bring back).
Past offers were not random: agents gave discounts to new customers and calls to big spenders more
often, so comparing the customers who got each offer would mislead; the doubly robust scores
behind the policy tree adjust for tenure and spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from keel.demo._shared import INDENT, SEED, step

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from rich.console import Console

    from keel.workspace import Workspace

__all__ = ["OFFERS", "POLICY_MODEL", "TargetingResult", "offers_frame", "best_offer", "learn_targeting"]

OFFERS = ("none", "call", "discount")  # "none" is the baseline the gains are measured from
POLICY_MODEL = "retention-offer"
CUSTOMERS = 3000


@dataclass(frozen=True)
class TargetingResult:
    """What the act found, for callers and tests."""

    study: str
    model: str  # 'retention-offer@1'
    rules: tuple[str, ...]
    agreement: float  # share of customers whose recommended offer is the known best
    value: tuple[float, float, float]  # the policy's expected revenue: value, low, high
    single: dict[str, float]  # each offer given to everyone
    optimum: float  # the known best policy's expected revenue


def best_offer(frame: pd.DataFrame) -> np.ndarray:
    """The known answer: the offer that maximises each customer's expected revenue."""
    return _means(frame).argmax(axis=1)


def _means(frame: pd.DataFrame) -> np.ndarray:
    """Expected 12-month revenue (in $) of each customer under none, call and discount."""
    import numpy as np

    tenure, spend = frame["tenure"].to_numpy(float), frame["spend"].to_numpy(float)
    base = 4.0 * spend + 2.0 * np.minimum(tenure, 60)
    call = np.where((tenure >= 12) & (spend > 80), 150.0, -40.0)
    discount = np.where(tenure < 12, 120.0, -60.0)
    return np.column_stack([base, base + call, base + discount])


def offers_frame(n: int = CUSTOMERS, seed: int = SEED) -> pd.DataFrame:
    """Logged offers: customers, the offer an agent chose (not at random) and the revenue that followed."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"tenure": rng.integers(1, 72, n), "spend": rng.gamma(4.0, 20.0, n).round(2)})
    tenure, spend = frame["tenure"].to_numpy(float), frame["spend"].to_numpy(float)
    logits = np.column_stack([np.zeros(n), 0.02 * (spend - 80.0), 1.0 - tenure / 24.0])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    chosen = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    revenue = _means(frame)[np.arange(n), chosen] + rng.normal(0.0, 60.0, n)
    return frame.assign(offer=np.asarray(OFFERS)[chosen], revenue=revenue.round(2))


def learn_targeting(ws: Workspace, console: Console, number: int = 13) -> TargetingResult:
    """Study the offers, learn a depth-2 policy tree, register it and ask it about three customers."""
    import numpy as np

    frame = offers_frame()
    with console.status("Learning which retention offer suits whom..."):
        dataset = ws.datasets.add("offers", frame, description="Simulated retention offers with a known best offer")
        study = ws.causal.study(
            "retention-offers",
            dataset,
            graph=[
                ("tenure", "offer"),
                ("spend", "offer"),
                ("tenure", "revenue"),
                ("spend", "revenue"),
                ("offer", "revenue"),
            ],
            treatment="offer",
            outcome="revenue",
        )
        result, _, model = ws.causal.policy(study, baseline="none", register_as=POLICY_MODEL, seed=SEED)
    assert model is not None
    optimum = float(_means(frame).max(axis=1).mean())
    agreement = float(np.mean(result.tree.predict(frame) == np.asarray(OFFERS)[best_offer(frame)]))
    console.print(
        f"{step(number, 'Target')}which retention offer for whom? {model.ref}, learned from {study.ref} "
        f"({len(frame):,} logged offers)"
    )
    for rule in result.tree.rules():
        console.print(f"{INDENT}- {rule}")
    single = {str(a): result.action_values[a].value for a in OFFERS}
    console.print(
        f"{INDENT}revenue per customer: policy ${result.value.value:,.0f} [{result.value.low:,.0f}, "
        f"{result.value.high:,.0f}]; everyone " + ", ".join(f"{a} ${v:,.0f}" for a, v in single.items())
    )
    console.print(
        f"{INDENT}the known optimum is ${optimum:,.0f}; the tree picks the known best offer for {agreement:.0%} of customers"
    )
    recommended = result.tree.predict(frame)
    customers = frame.loc[[int(np.argmax(recommended == offer)) for offer in OFFERS], ["tenure", "spend"]]
    loaded = ws.models.load(model.ref)  # served at /predict like any model; asked here in process
    offers, gains = loaded.predict(customers), loaded.row_fields(customers) or []
    asked = "; ".join(
        f"{row.tenure} months, ${row.spend:,.0f}/month -> {offer} (+${gain['expected_gain']:,.0f})"
        for row, offer, gain in zip(customers.itertuples(), offers, gains, strict=True)
    )
    console.print(f"{INDENT}asked (expected gain over none): {asked}")
    return TargetingResult(
        study=study.ref,
        model=model.ref,
        rules=tuple(result.tree.rules()),
        agreement=agreement,
        value=(result.value.value, result.value.low, result.value.high),
        single=single,
        optimum=optimum,
    )
