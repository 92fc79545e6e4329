"""Policies that follow their data (issue 15's loop): a model project with a `policy:` section is a
decision policy trained on a digital twin of its dataset. Each retraining cycle (a new dataset
version, a drift alert, a schedule, by hand) refits the twin on the newest data (a new twin version,
unless the latest was fitted on that very dataset version), finds its classic baselines, trains a
challenger (`ws.rl.train`, registered as the model's next version), and scores challenger and
champion on the refitted twin with common random numbers, so that the gate (keel.retraining.gate,
metric `cost`, lower is better) compares them on the same simulated demand before promoting.

`PolicyLoop` is the retraining's PolicyTrainer (keel.retraining.project), so the retraining never
imports the workspace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.entities import ModelVersion
from keel.errors import NotFoundError

if TYPE_CHECKING:
    from keel.entities_rl import Twin
    from keel.retraining.project import PolicyProject, Project
    from keel.workspace.facade import Workspace

__all__ = ["PolicyLoop"]


class PolicyLoop:
    """Refit, train, and score challenger and champion on the same demand (see the module's doc)."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def train(
        self, project: Project, dataset: str | None, champion: ModelVersion | None, evidence: dict[str, Any]
    ) -> tuple[ModelVersion, dict[str, float], dict[str, float] | None, str | None]:
        """(the challenger, its metrics, the champion's on the same demand or None, the training run)."""
        from keel.workspace.rl_train import EVAL_SEED

        policy = project.policy
        assert policy is not None
        ref = dataset or project.data.dataset
        version = self._ws.datasets.get(ref if "@" in ref else f"{ref}@latest")
        twin = self._twin(project, policy, version.ref)
        evidence["data"] = {"dataset": version.ref, "twin": twin.ref}
        if not self._ws.rl.results(twin, kind="baselines"):
            self._ws.rl.baselines(twin, periods=policy.periods, copies=policy.copies)
        trained = self._ws.rl.train(
            twin,
            register_as=project.model,
            steps=policy.steps,
            seeds=policy.seeds,
            action=policy.action,
            n_envs=policy.n_envs,
            eval_periods=policy.periods,
            eval_copies=policy.copies,
        )
        candidate = self._ws.models.get(trained.payload["model"])
        p = trained.payload
        evidence["policy"] = {
            "evaluation": trained.id,
            "baseline": p["baseline"]["family"],
            "difference": p["difference"],
            "gap": p["gap"],
        }
        metrics = {"cost": p["evaluation"]["cost"]}
        if champion is None:
            return candidate, metrics, None, p["run"]
        scored = self._paired(twin, candidate, champion, policy, EVAL_SEED, evidence)
        if scored is None:
            return candidate, metrics, None, p["run"]
        return candidate, {"cost": scored[0]}, {"cost": scored[1]}, p["run"]

    def _twin(self, project: Project, policy: PolicyProject, dataset: str) -> Twin:
        """The latest twin version when it was fitted on `dataset` with this system; else a new one."""
        wanted = {
            "lead_time": policy.lead_time,
            "lost_sales": policy.lost_sales,
            "capacity": policy.capacity,
            "shelf_life": policy.shelf_life,
        }
        try:
            latest = self._ws.rl.get(policy.twin)
            system = latest.spec["system"]
            same = latest.dataset == dataset and latest.spec.get("column") == project.data.target
            if same and all(system.get(k) == v for k, v in wanted.items()):
                costs = system["costs"]
                if all(costs.get(k) == float(v) for k, v in policy.costs.items()):
                    return latest
        except NotFoundError:
            pass
        return self._ws.rl.twin(
            policy.twin,
            dataset,
            demand_column=project.data.target,
            time_column=policy.time_column,
            period=policy.period,
            season=policy.season,
            scale=policy.scale,
            lead_time=policy.lead_time,
            costs=policy.costs or None,
            lost_sales=policy.lost_sales,
            capacity=policy.capacity,
            shelf_life=policy.shelf_life,
            description=f"refitted for {project.model} on {dataset}",
        )

    def _paired(
        self,
        twin: Twin,
        candidate: ModelVersion,
        champion: ModelVersion,
        policy: PolicyProject,
        seed: int,
        evidence: dict[str, Any],
    ) -> tuple[float, float] | None:
        """Challenger and champion on the refitted twin, the same demand matrix for both: their costs,
        with the paired difference in the evidence. None when the champion cannot act on this twin."""
        from keel.rl.evaluate import compare, evaluate_many
        from keel.rl.inventory import InventoryTwin

        spec, demand = self._ws.rl.system(twin)
        challenger = self._ws.models.load(candidate).model
        current = self._ws.models.load(champion).model
        names = tuple(getattr(current, "observation_names", ()))
        if names != tuple(challenger.observation_names):
            evidence["champion_not_scored"] = (
                f"{champion.ref} does not act on {twin.ref}'s observations {list(challenger.observation_names)}"
            )
            return None
        a, b = evaluate_many(
            lambda n: InventoryTwin(spec, demand, copies=n),
            [challenger, current],
            periods=policy.periods,
            copies=policy.copies,
            warmup=min(50, policy.periods // 5),
            seed=seed,
        )
        paired = compare(a, b)
        evidence["paired"] = {
            "twin": twin.ref,
            "challenger": a.cost,
            "champion": b.cost,
            "difference": paired.difference,
            "se": paired.se,
        }
        return a.cost, b.cost
