"""Policy projects: a model project with a `policy:` section is a PPO policy trained on a digital twin
of its dataset; a new dataset version refits the twin (a new version with lineage), trains a
challenger, and the gate compares challenger and champion on the refitted twin with common random
numbers before promoting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel.retraining import Project, ProjectError

STEPS = 1024


def project(**policy: Any) -> Project:
    return Project.from_dict(
        {
            "model": "shop-ordering",
            "data": {"dataset": "sales", "target": "units"},
            "policy": {
                "twin": "shop",
                "costs": {"holding": 1, "penalty": 9},
                "steps": STEPS,
                "n_envs": 2,
                "periods": 200,
                "copies": 64,
                **policy,
            },
            "retraining": {"triggers": ["new_data", "manual"]},
        }
    )


def sales(mean: float, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"units": np.random.default_rng(seed).poisson(mean, size=150)})


def test_the_policy_section_parses_round_trips_and_is_checked() -> None:
    p = project(lead_time=1, period="month", scale=10.0)
    assert p.policy is not None and (p.policy.twin, p.policy.lead_time, p.policy.steps) == ("shop", 1, STEPS)
    assert p.evaluation.metrics == ("cost",) and p.lower_is_better and p.estimator.cls is None
    assert Project.from_dict(p.to_dict()) == p
    base = {"model": "m", "data": {"dataset": "d", "target": "y"}}
    for change, message in [
        ({"policy": {"costs": {"holding": -1}}}, "policy.costs.holding: expected a number >= 0"),
        ({"policy": {"action": "buy"}}, "policy.action: expected one of order_up_to, delta, quantity"),
        ({"policy": {"steps": 10}}, "policy.steps: expected an integer >= 256"),
        ({"policy": {"wings": 2}}, "policy.wings: unknown key"),
        ({"policy": {}, "estimator": {"class": "a.B"}}, "estimator: a policy project trains PPO on its twin"),
        (
            {"policy": {}, "evaluation": {"metrics": ["roc_auc"]}},
            "evaluation: a policy project is judged on 'cost' only",
        ),
        (
            {"estimator": {"class": "a.B"}, "evaluation": {"metrics": ["cost"]}},
            "'cost' is the metric of policy projects",
        ),
    ]:
        with pytest.raises(ProjectError, match=message):
            Project.from_dict({**base, **change})


def test_new_data_refits_the_twin_and_the_gate_compares_both_policies_on_it(ws: keel.Workspace) -> None:
    ws.datasets.add("sales", sales(10, 0))
    first = ws.retraining.train(project())
    assert first.outcome == "promoted" and first.version == 1
    assert first.evidence["data"] == {"dataset": "sales@1", "twin": "shop@1"}
    assert first.evidence["metrics"]["challenger"]["cost"] > 0 and first.evidence["metrics"]["champion"] is None
    model = ws.models.get("shop-ordering@champion")
    assert model.flavor == "policy" and model.tags["keel.twin"] == "shop@1"

    again = ws.retraining.retrain("shop-ordering")  # the same data: the same twin version, a new policy
    assert again.evidence["data"]["twin"] == "shop@1"
    assert again.evidence["paired"]["twin"] == "shop@1"

    ws.datasets.add("sales", sales(14, 1))  # demand grew: the twin is refitted on the new version
    moved = ws.retraining.retrain("shop-ordering", trigger="new_data")
    assert moved.evidence["data"] == {"dataset": "sales@2", "twin": "shop@2"}
    assert ws.rl.get("shop@2").dataset == "sales@2" and ws.rl.get("shop@2").spec["demand"]["rate"] > 12
    paired = moved.evidence["paired"]
    metrics = moved.evidence["metrics"]
    assert (metrics["challenger"]["cost"], metrics["champion"]["cost"]) == (paired["challenger"], paired["champion"])
    # the old champion was tuned for mean 10: on the refitted twin the challenger, warm-started from the new
    # best classic policy, costs less, and the gate promotes it
    assert paired["difference"] < -3 * paired["se"] and moved.outcome == "promoted"
    assert ws.models.get("shop-ordering@champion").version == moved.version
    assert "cost improves" in " ".join(moved.evidence["gate"]["reasons"])
