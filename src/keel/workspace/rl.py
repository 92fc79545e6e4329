"""Digital twins as a use case (`ws.rl`): fit a twin's demand on a dataset version (keel.rl.demand),
store it as a versioned record with lineage (keel.twins), find the best classic policies on it and the
exact optimum where the DP covers the system (keel.rl.evaluate, keel.rl.dp), and keep those results.

A twin's spec is plain JSON (keel.rl.codec): the system (lead time, costs, lost sales, capacity,
shelf life), the fitted demand model, and how it was chosen (every candidate's fit), so a twin
version rebuilds the same simulator anywhere.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.entities_rl import Twin, TwinResult
from keel.errors import InvalidInputError, NotFoundError
from keel.refs import CHAMPION
from keel.twins import Twins

if TYPE_CHECKING:
    from keel.rl.spec import Demand, InventorySpec
    from keel.storage import MetadataStore
    from keel.workspace.facade import Workspace

__all__ = ["RL"]


class RL:
    """`ws.rl`: digital twins of inventory systems, their classic baselines and optimum."""

    def __init__(self, ws: Workspace, meta: MetadataStore, *, author: str) -> None:
        self._ws = ws
        self.records = Twins(meta, author=author)

    def twin(
        self,
        name: str,
        dataset: str,
        *,
        demand_column: str,
        time_column: str | None = None,
        period: str | None = None,
        season: int | None = None,
        scale: float | None = None,
        lead_time: int = 2,
        costs: Mapping[str, float] | None = None,
        lost_sales: bool = False,
        capacity: int | None = None,
        shelf_life: int | None = None,
        description: str = "",
    ) -> Twin:
        """Fit a single-item inventory twin's demand on `dataset`'s `demand_column` and store it as the
        next version of twin `name` (lineage: the dataset version).

        `period` ('month', 'week', 'day', ...) or `season` names the seasonal cycle tested; `scale`
        turns a non-integer series (money, thousands) into whole units, the rounding stated;
        `time_column` orders the rows and must advance in equal steps (a gap is refused); `costs`:
        holding, penalty, fixed_order, unit (per period and unit). Bad input (negative costs, a lead
        time longer than the history, a demand column with negatives or gaps) raises InvalidInputError
        naming it, before anything is stored."""
        from keel.rl.codec import demand_to_dict, fit_to_dict, spec_to_dict
        from keel.rl.demand import fit_demand, scale_to_units
        from keel.rl.spec import Costs, InventorySpec

        self.records.check_name(name)
        version = self._ws.datasets.get(dataset)
        if version.kind != "table":
            raise InvalidInputError(f"Dataset {version.ref} is a folder of files; a twin's demand needs a table")
        history = _history(self._ws.datasets.load(version), demand_column, time_column, version.ref)
        system = InventorySpec(
            lead_time=lead_time,
            costs=_costs(Costs, costs),
            lost_sales=lost_sales,
            capacity=capacity,
            shelf_life=shelf_life,
        )
        if lead_time >= len(history):
            raise InvalidInputError(
                f"lead_time={lead_time} periods is not shorter than the demand history ({len(history)} periods "
                f"of {version.ref}): a twin cannot learn the demand over its own lead time"
            )
        scaled = None
        if scale is not None:
            scaled = scale_to_units(history, scale)
            history = pd.Series(scaled.units, index=history.index)
        fit = fit_demand(history, period=period, season=season)
        spec = {
            "system": spec_to_dict(system),
            "demand": demand_to_dict(fit.model),
            "fit": fit_to_dict(fit),
            "column": demand_column,
            "time_column": time_column,
            "period": period,
            "scale": None if scaled is None else {"factor": scaled.factor, "note": scaled.note},
            "history": {"periods": len(history), "mean": float(history.mean()), "max": int(history.max())},
        }
        return self.records.add(name, version, kind="inventory", spec=spec, description=description)

    def system(self, ref: str | Twin) -> tuple[InventorySpec, Demand]:
        """The twin version's system and demand model, rebuilt from its stored spec."""
        from keel.rl.codec import demand_from_dict, spec_from_dict

        twin = self.records.get(ref)
        return spec_from_dict(twin.spec["system"]), demand_from_dict(twin.spec["demand"])

    def baselines(
        self, ref: str | Twin, *, periods: int = 1000, copies: int = 256, seed: int = 0
    ) -> builtins.list[TwinResult]:
        """The best base-stock, (s,S) and capped base-stock policies on the twin (common random
        numbers; the winners re-scored on fresh demand, so their costs carry no selection bias), and
        the exact optimum by dynamic programming where it covers the system (stationary demand, no
        perishability); each policy's gap to it. Stored as the twin's 'baselines' (and 'optimum')
        results, which are returned."""
        from keel.rl.codec import evaluation_to_dict, optimum_to_dict, policy_to_dict
        from keel.rl.dp import optimum
        from keel.rl.evaluate import best_classic

        for value, what in ((periods, "periods"), (copies, "copies")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 10:
                raise InvalidInputError(f"{what} must be an integer >= 10, got {value!r}")
        twin = self.records.get(ref)
        spec, demand = self.system(twin)
        found = best_classic(spec, demand, periods=periods, copies=copies, warmup=min(50, periods // 5), seed=seed)
        try:
            best = optimum(spec, demand)
            optimal: dict[str, Any] | None = optimum_to_dict(best)
            note = None
        except InvalidInputError as exc:  # seasonal or perishable: the DP does not cover it
            optimal, note = None, str(exc)
        classic = {
            family: {
                "policy": policy_to_dict(found.policies[family]),
                "evaluation": evaluation_to_dict(evaluation),
                "gap": None if optimal is None else evaluation.cost / optimal["cost"] - 1.0,
            }
            for family, evaluation in found.evaluations.items()
        }
        payload = {"classic": classic, "best": found.best, "optimum": optimal, "optimum_note": note}
        stored = [self.records.add_result(twin, "baselines", payload)]
        if optimal is not None:
            stored.append(self.records.add_result(twin, "optimum", optimal))
        return stored

    def train(
        self,
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
        """Train a PPO policy on the twin (warm-started from its best classic policy: the latest
        baselines, computed first if there are none), `seeds` seeds as tasks on the executor; keep the
        best seed on fresh common random numbers; score it against the best classic policy (paired)
        and the optimum; track the run (learning curves); store the 'evaluation' result; with
        `register_as`, register the policy as the next version of that model (the `policy` flavour,
        served at /predict: an observation in, the order out)."""
        from keel.workspace.rl_train import train_policy_on_twin

        return train_policy_on_twin(
            self._ws,
            ref,
            register_as=register_as,
            steps=steps,
            seeds=seeds,
            action=action,
            n_envs=n_envs,
            eval_periods=eval_periods,
            eval_copies=eval_copies,
        )

    def trajectory(
        self, ref: str | Twin, policies: Mapping[str, Any], *, periods: int = 52, seed: int = 0
    ) -> dict[str, Any]:
        """One simulated path per policy (a name -> anything with `act(observations)`), all facing the same
        demand draw (common random numbers): per period the demand, the orders, the stock at the end of
        the period (on hand; minus the backlog under backorders), and the cost. Plain JSON values."""
        from keel.rl.inventory import InventoryTwin

        if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= 10_000:
            raise InvalidInputError(f"periods must be an integer between 1 and 10,000, got {periods!r}")
        spec, demand = self.system(ref)
        draws = demand.sample(np.random.default_rng(seed), periods, 1)
        paths: dict[str, Any] = {}
        for name, policy in policies.items():
            twin = InventoryTwin(spec, demand, copies=1)
            obs = twin.reset(demand=draws)
            path: dict[str, list[float]] = {"demand": [], "order": [], "stock": [], "cost": []}
            for _ in range(periods):
                orders = np.asarray(policy.act(obs), dtype=np.int64).reshape(1)
                obs, cost, info = twin.step(orders)
                path["demand"].append(int(info["demand"][0]))
                path["order"].append(int(info["ordered"][0]))
                path["stock"].append(int(info["on_hand"][0] - info["backlog"][0]))
                path["cost"].append(float(cost[0]))
            path["mean_cost"] = [float(np.mean(path["cost"]))]
            paths[name] = path
        return {"periods": periods, "seed": seed, "paths": paths}

    def trajectories(self, ref: str | Twin, *, periods: int = 52, seed: int = 0) -> dict[str, Any]:
        """`trajectory` of the twin's trained policy (the champion of the model its latest registered
        evaluation names, when that champion was trained on this twin version; else that version) and
        of the classic policies of its latest baselines, the best first: all facing the same demand."""
        from keel.rl.codec import policy_from_dict

        twin = self.records.get(ref)
        stored = self.records.results(twin, "baselines")
        if not stored:
            raise InvalidInputError(f"Twin {twin.ref} has no baselines yet: run `keel rl baselines {twin.ref}` first")
        payload = stored[-1].payload
        families = sorted(payload["classic"], key=lambda family: family != payload.get("best"))
        trained = self._trained(twin)
        policies: dict[str, Any] = dict(trained)
        policies.update({family: policy_from_dict(payload["classic"][family]["policy"]) for family in families})
        found = self.trajectory(twin, policies, periods=periods, seed=seed)
        return {**found, "best": payload.get("best"), "trained": trained[0][0] if trained else None}

    def _trained(self, twin: Twin) -> builtins.list[tuple[str, Any]]:
        """[(label, policy)] of the twin's newest registered trained policy, or [] when there is none."""
        for result in reversed(self.records.results(twin, "evaluation")):
            model = result.payload.get("model")
            if not model:
                continue
            version = None
            try:
                version, label = self._ws.models.get(model), model
                champion = self._ws.models.get(f"{version.name}@{CHAMPION}")
                if champion.tags.get("keel.twin") == twin.ref:  # the champion serves this twin's decisions
                    version, label = champion, f"{champion.ref} (champion)"
            except NotFoundError:  # the version is gone, or the model has no champion: skip or keep it
                if version is None:
                    continue
            loaded = self._ws.models.load(version)
            if hasattr(loaded.model, "act"):
                return [(label, loaded.model)]
        return []

    def get(self, ref: str | Twin) -> Twin:
        return self.records.get(ref)

    def list(self) -> builtins.list[Twin]:
        """The latest version of every twin."""
        return self.records.list()

    def versions(self, name: str) -> builtins.list[Twin]:
        return self.records.versions(name)

    def results(self, ref: str | Twin, kind: str | None = None) -> builtins.list[TwinResult]:
        return self.records.results(ref, kind)


def _costs(cls: Any, costs: Mapping[str, float] | None) -> Any:
    if costs is None:
        return cls()
    if not isinstance(costs, Mapping):
        raise InvalidInputError(f"costs must be a mapping of holding, penalty, fixed_order, unit; got {costs!r}")
    unknown = sorted(set(costs) - {"holding", "penalty", "fixed_order", "unit"})
    if unknown:
        raise InvalidInputError(f"costs: unknown keys {unknown}; known: holding, penalty, fixed_order, unit")
    for key, value in costs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"costs.{key} must be a number, got {value!r}")
    return cls(**{k: float(v) for k, v in costs.items()})


def _history(frame: pd.DataFrame, column: str, time_column: str | None, ref: str) -> pd.Series:
    """The demand column in time order; with `time_column`, checked to advance in equal steps."""
    for name in (column, time_column):
        if name is not None and name not in frame.columns:
            raise InvalidInputError(f"{ref} has no column {name!r}; columns: {', '.join(map(str, frame.columns[:20]))}")
    if time_column is None:
        return frame[column].reset_index(drop=True)
    ordered = frame.sort_values(time_column, kind="stable")
    times = ordered[time_column]
    if pd.api.types.is_datetime64_any_dtype(times):
        return pd.Series(ordered[column].to_numpy(), index=pd.DatetimeIndex(times))  # fit_demand checks the gaps
    if not pd.api.types.is_numeric_dtype(times) or pd.api.types.is_bool_dtype(times):
        raise InvalidInputError(
            f"{ref}: time column {time_column!r} holds {times.dtype} values: give dates or numbers (period index)"
        )
    steps = np.diff(times.to_numpy(dtype=np.float64))
    if steps.size and (
        not np.all(np.isfinite(steps)) or np.ptp(steps) > 1e-6 * max(abs(float(np.median(steps))), 1e-12)
    ):
        odd = int(np.argmax(np.abs(steps - np.median(steps)) > 1e-6 * abs(float(np.median(steps)))))
        raise InvalidInputError(
            f"{ref}: {time_column!r} does not advance in equal steps (a gap or a repeat after "
            f"{times.iloc[odd]}): reindex to a regular period and fill the gaps (0 if no sales)"
        )
    return ordered[column].reset_index(drop=True)
