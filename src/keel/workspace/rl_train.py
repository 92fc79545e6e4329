"""Training a decision policy on a twin (`ws.rl.train`): PPO seeds as tasks on the executor (threads,
or Ray tasks with KEEL_EXECUTOR=ray), a tracked run with each seed's learning curve, the best seed
chosen on fresh common random numbers, scored against the best classic policy (paired, with its
standard error) and the optimum, stored as the twin's 'evaluation' result and, on request,
registered as a `policy` model version with lineage to the twin's dataset version.

Each seed's task is a plain function of plain values (the twin as JSON, numbers) returning the
policy's bytes, so it pickles to a Ray worker that has no workspace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.entities_rl import TwinResult
from keel.errors import InvalidInputError
from keel.refs import check_name

if TYPE_CHECKING:
    from keel.entities_rl import Twin
    from keel.workspace.facade import Workspace

__all__ = ["train_policy_on_twin", "EVAL_SEED"]

EVAL_SEED = 10_007  # the evaluation's demand: never the seeds training used for its own checkpoints
ACTIONS = ("order_up_to", "delta", "quantity")


def _train_task(system: dict[str, Any], demand: dict[str, Any], seed: int, options: dict[str, Any]) -> bytes:
    """One seed's training, in whatever process the executor picked: plain values in, bytes out."""
    from keel.rl.agent import policy_to_bytes, train_policy
    from keel.rl.codec import demand_from_dict, policy_from_dict, spec_from_dict

    baseline = policy_from_dict(options.pop("baseline"))
    policy = train_policy(spec_from_dict(system), demand_from_dict(demand), seed=seed, baseline=baseline, **options)
    return policy_to_bytes(policy)


def _check(steps: Any, seeds: Any, action: Any, n_envs: Any, register_as: Any) -> None:
    for value, what, low in ((steps, "steps", 256), (seeds, "seeds", 1), (n_envs, "n_envs", 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInputError(f"{what} must be an integer >= {low}, got {value!r}")
    if seeds > 16:
        raise InvalidInputError(f"seeds must be at most 16 (each is a full training), got {seeds}")
    if action not in ACTIONS:
        raise InvalidInputError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if register_as is not None and (not isinstance(register_as, str) or not register_as):
        raise InvalidInputError(f"register_as must be a model name, got {register_as!r}")


def train_policy_on_twin(
    ws: Workspace,
    ref: str | Twin,
    *,
    register_as: str | None = None,
    steps: int = 200_000,
    seeds: int = 1,
    action: str = "order_up_to",
    n_envs: int = 8,
    eval_periods: int = 500,
    eval_copies: int = 256,
) -> TwinResult:
    """Train, choose, score, store (and register): see the module's doc. Returns the 'evaluation' result."""
    from keel.rl.agent import policy_from_bytes
    from keel.rl.codec import evaluation_to_dict, policy_from_dict
    from keel.rl.evaluate import compare, evaluate_many
    from keel.rl.inventory import InventoryTwin
    from keel.workspace.causal_jobs import run_tasks

    _check(steps, seeds, action, n_envs, register_as)
    if register_as is not None:
        check_name(register_as, what="model name")
    twin = ws.rl.get(ref)
    spec, demand = ws.rl.system(twin)
    baselines = ws.rl.results(twin, kind="baselines") or ws.rl.baselines(twin)[:1]
    found = baselines[-1].payload
    best = found["best"]
    options = {"steps": steps, "action": action, "n_envs": n_envs, "baseline": found["classic"][best]["policy"]}
    calls = [(_train_task, (twin.spec["system"], twin.spec["demand"], s, dict(options))) for s in range(seeds)]
    policies = [policy_from_bytes(b) for b in run_tasks(ws, calls, stage="training seeds")]

    def factory(n: int) -> InventoryTwin:
        return InventoryTwin(spec, demand, copies=n)

    baseline = policy_from_dict(found["classic"][best]["policy"])
    scored = evaluate_many(
        factory,
        [*policies, baseline],
        periods=eval_periods,
        copies=eval_copies,
        warmup=min(50, eval_periods // 5),
        seed=EVAL_SEED,
    )
    chosen = int(np.argmin([e.cost for e in scored[:-1]]))
    policy, evaluation, classic = policies[chosen], scored[chosen], scored[-1]
    difference = compare(evaluation, classic)
    optimum = ws.rl.results(twin, kind="optimum")
    optimal = optimum[-1].payload["cost"] if optimum else None
    run_id = _track(ws, twin, policies, chosen, options, evaluation.cost)
    model = None
    if register_as is not None:
        observations = pd.DataFrame(factory(64).reset(seed=0), columns=list(policy.observation_names))
        model = ws.models.register(
            register_as,
            policy,
            run=run_id,
            trained_on=twin.dataset,
            X=observations,
            tags={"keel.twin": twin.ref, "keel.baseline": best},
            description=f"PPO on twin {twin.ref} ({action} actions, {steps:,} steps, seed {policy.seed})",
        ).ref
    payload = {
        "model": model,
        "policy": {"kind": "ppo", "action": action, "steps": steps, "seed": policy.seed, "seeds": seeds},
        "evaluation": {**evaluation_to_dict(evaluation), "policy": f"ppo (seed {policy.seed})"},
        "baseline": {"family": best, "evaluation": evaluation_to_dict(classic)},
        "difference": {"value": difference.difference, "se": difference.se},
        # against the exact optimum: the simulated cost's own noise is the gap's standard error
        "gap": None if optimal is None else evaluation.cost / optimal - 1.0,
        "gap_se": None if optimal is None else evaluation.se / optimal,
        "learning_curve": [[int(s), float(c)] for s, c in policy.curve],
        "kept_step": policy.kept_step,
        "seed_costs": [e.cost for e in scored[:-1]],
        "run": run_id,
    }
    return ws.rl.records.add_result(twin, "evaluation", payload)


def _track(ws: Workspace, twin: Twin, policies: list[Any], chosen: int, options: dict[str, Any], cost: float) -> str:
    """A run with each seed's learning curve ('cost' is the chosen seed's; 'cost/seed<N>' each seed's)."""
    params = {k: v for k, v in options.items() if k != "baseline"} | {"baseline": options["baseline"]["kind"]}
    with ws.runs.start(
        f"rl-{twin.name}", name="ppo", params=params, tags={"keel.twin": twin.ref}, inputs=[twin.dataset]
    ) as run:
        for i, p in enumerate(policies):
            for step, value in p.curve:
                run.log_metric(f"cost/seed{p.seed}", value, step=step)
                if i == chosen:
                    run.log_metric("cost", value, step=step)
        run.log_metric("evaluation_cost", cost)
        return run.id
