"""`ws.rl.train`: a PPO policy trained on a twin (seeds as executor tasks), scored against the best
classic policy with common random numbers, tracked, stored as the twin's 'evaluation', registered as
a `policy` model version and served like any model; also as an `rl_train` job."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError, InvalidModelError

STEPS = 1024  # seconds, not minutes: the quality is the benchmark's (bench/rl.py)


@pytest.fixture
def twin_ws(ws: keel.Workspace) -> keel.Workspace:
    units = np.random.default_rng(0).poisson(10, size=200)
    ws.datasets.add("sales", pd.DataFrame({"units": units}))
    twin = ws.rl.twin("shop", "sales@1", demand_column="units", costs={"holding": 1, "penalty": 9})
    ws.rl.baselines(twin, periods=300, copies=64)
    return ws


def test_a_trained_policy_is_scored_tracked_registered_and_served(twin_ws: keel.Workspace) -> None:
    ws = twin_ws
    result = ws.rl.train("shop", register_as="shop-policy", steps=STEPS, seeds=2, n_envs=4, eval_copies=64)
    p = result.payload
    assert result.kind == "evaluation" and result.twin == "shop@1" and p["model"] == "shop-policy@1"
    assert p["policy"] == {
        "kind": "ppo",
        "action": "order_up_to",
        "steps": STEPS,
        "seed": p["policy"]["seed"],
        "seeds": 2,
    }
    assert len(p["seed_costs"]) == 2 and p["evaluation"]["cost"] == min(p["seed_costs"])
    # warm-started from the best classic policy and kept at least as good on the training CRN: on fresh
    # demand it is within a few paired standard errors of it
    assert abs(p["difference"]["value"]) <= max(4 * p["difference"]["se"], 0.05)
    assert p["gap"] is not None and abs(p["gap"]) < 5 * p["gap_se"] + 0.02
    assert p["learning_curve"][0][0] == 0 and p["learning_curve"][-1][0] == STEPS
    run = ws.runs.get(p["run"])
    assert run.tags["keel.twin"] == "shop@1" and run.inputs == ("sales@1",) and "cost" in run.metrics

    version = ws.models.get("shop-policy@1")
    assert version.flavor == "policy" and version.datasets == ("sales@1",) and version.tags["keel.twin"] == "shop@1"
    model = ws.models.load("shop-policy@1")
    obs = pd.DataFrame({"position": [20.0, 60.0], "net_inventory": [10.0, 40.0], "pipeline_1": [5.0, 10.0]})
    orders = model.predict(obs)
    assert orders[0] > 0 and orders[1] == 0  # a low position orders, a high one does not
    assert model.model.act(obs.to_numpy()).tolist() == orders.tolist()  # the same actions after a round trip


def test_training_runs_as_a_job(twin_ws: keel.Workspace) -> None:
    job = twin_ws.jobs.run("rl_train", {"twin": "shop@1", "steps": STEPS, "n_envs": 2})
    assert job.status == "succeeded", job.error
    assert job.result["model"] is None and job.result["twin"] == "shop@1"
    assert [r.kind for r in twin_ws.rl.results("shop")].count("evaluation") == 1
    assert job.progress is not None and job.progress["done"] == 1
    bad = twin_ws.jobs.run("rl_train", {"twin": "shop@1", "action": "buy"})
    assert bad.status == "failed" and "'action' must be one of" in (bad.error or "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 10}, "steps must be an integer >= 256"),
        ({"seeds": 0}, "seeds must be an integer >= 1"),
        ({"action": "buy"}, "action must be one of order_up_to, delta, quantity"),
        ({"register_as": "bad name!"}, "model name"),
    ],
)
def test_bad_options_are_refused_before_training(twin_ws: keel.Workspace, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        twin_ws.rl.train("shop", **kwargs)
    assert twin_ws.rl.results("shop", kind="evaluation") == []


def test_a_hostile_policy_file_is_refused_untrusted(twin_ws: keel.Workspace) -> None:
    from keel.registry.flavors import get_flavor

    flavor = get_flavor("policy")
    good = twin_ws.rl.train("shop", register_as="p", steps=STEPS, n_envs=2, eval_copies=32)
    data = flavor.save(twin_ws.models.load(good.payload["model"]).model)
    assert flavor.load(data, trusted=False).observation_names == ("position", "net_inventory", "pipeline_1")
    broken = data.replace(b'\\"tanh\\"', b'\\"evil\\"')  # the metadata is JSON inside the header's JSON
    assert broken != data
    with pytest.raises(InvalidModelError, match="unknown activation 'evil'"):
        flavor.load(broken, trusted=False)
    with pytest.raises(InvalidModelError):
        flavor.load(data[: len(data) // 2], trusted=False)


def test_the_trajectories_show_the_champion_beside_the_classic_policies(twin_ws: keel.Workspace) -> None:
    ws = twin_ws
    ws.rl.train("shop", register_as="shop-policy", steps=STEPS, n_envs=2, eval_copies=32)
    before = ws.rl.trajectories("shop", periods=20)
    assert before["trained"] == "shop-policy@1"  # no champion yet: the version the training registered
    ws.models.set_alias("shop-policy", "champion", version=1)
    found = ws.rl.trajectories("shop", periods=20)
    assert found["trained"] == "shop-policy@1 (champion)" and next(iter(found["paths"])) == found["trained"]
    assert found["best"] in found["paths"]
    demand = {tuple(path["demand"]) for path in found["paths"].values()}
    assert len(demand) == 1  # every policy faces the same demand
