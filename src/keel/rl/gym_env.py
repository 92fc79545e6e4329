"""The inventory twin as Gymnasium environments (imports gymnasium; keel.rl's __init__ does not
import this module, so `import keel.rl` stays light).

- `InventoryVectorEnv`: a `gymnasium.vector.VectorEnv` over `InventoryTwin`; every copy runs the
  same episode length, so all of them end (truncate) together and are reset together on the next
  step (Gymnasium's NEXT_STEP autoreset: that step's actions are ignored, its rewards are 0).
- `ReferenceInventoryEnv`: one copy, plain Python, a loop per unit of logic. It exists to be
  obviously right (the tests check the twin against it trajectory for trajectory) and as the
  'per-step Python Gymnasium environment' the benchmark measures the twin against.

Rewards are the negative cost of the period. Actions are the order quantity: Discrete(limit + 1) by
default, or a Box [0, limit] of shape (1,) rounded to whole units (`discrete=False`).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from keel.errors import InvalidInputError
from keel.rl.inventory import InventoryTwin, observation_names
from keel.rl.spec import Demand, InventorySpec

__all__ = ["InventoryVectorEnv", "ReferenceInventoryEnv", "action_space", "observation_space"]


def observation_space(spec: InventorySpec, season: int = 1) -> spaces.Box:
    """The Box of one copy's observation (float32; whole units below 2**24 are exact)."""
    lows, highs = [], []
    for name in observation_names(spec, season):
        signed = name in ("position", "net_inventory") and not spec.lost_sales
        lows.append(-np.inf if signed else 0.0)
        if name.startswith("pipeline"):
            highs.append(float(spec.order_limit))
        elif name == "phase":
            highs.append(float(season - 1))
        else:
            highs.append(np.inf)
    return spaces.Box(np.array(lows, dtype=np.float32), np.array(highs, dtype=np.float32), dtype=np.float32)


def action_space(spec: InventorySpec, *, discrete: bool = True) -> spaces.Space[Any]:
    """The order quantity of one copy: Discrete(limit + 1), or Box [0, limit] of shape (1,)."""
    if discrete:
        return spaces.Discrete(spec.order_limit + 1)
    return spaces.Box(0.0, float(spec.order_limit), shape=(1,), dtype=np.float32)


def _check_length(episode_length: int) -> None:
    if not isinstance(episode_length, int) or episode_length < 1:
        raise InvalidInputError(f"episode_length must be an integer >= 1 (periods), got {episode_length!r}")


class InventoryVectorEnv(VectorEnv[Any, Any, Any]):
    """`num_envs` copies of the twin as one Gymnasium vector environment."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        spec: InventorySpec,
        demand: Demand,
        *,
        num_envs: int = 1024,
        episode_length: int = 200,
        initial: int = 0,
        discrete: bool = True,
    ) -> None:
        _check_length(episode_length)
        self.twin = InventoryTwin(spec, demand, copies=num_envs, initial=initial)
        self.num_envs, self.episode_length, self.discrete = num_envs, episode_length, discrete
        self.single_observation_space = observation_space(spec, self.twin.season)
        self.single_action_space = action_space(spec, discrete=discrete)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._ended = False

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if isinstance(seed, list):  # one seed per copy is not how the twin draws: the first seeds all
            seed = seed[0]
        self._ended = False
        obs = self.twin.reset(seed=seed, demand=(options or {}).get("demand"))
        return obs.astype(np.float32), {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        n = self.num_envs
        if self._ended:  # NEXT_STEP autoreset: this step only starts the next episode
            obs, _ = self.reset()
            false = np.zeros(n, dtype=np.bool_)
            return obs, np.zeros(n), false, false.copy(), {}
        arr = np.asarray(actions)
        if not self.discrete:  # a learner's Box action may overshoot; the space's bounds apply
            arr = np.clip(arr.reshape(n), 0.0, float(self.twin.spec.order_limit))
        obs, cost, info = self.twin.step(arr.reshape(n) if arr.size == n else arr)
        self._ended = self.twin.t >= self.episode_length
        truncated = np.full(n, self._ended, dtype=np.bool_)
        return obs.astype(np.float32), -cost, np.zeros(n, dtype=np.bool_), truncated, dict(info)


class ReferenceInventoryEnv(gymnasium.Env[NDArray[np.float32], Any]):
    """One copy of the system, stepped in plain Python. `reset(options={"demand": [...]})` fixes
    the episode's demand; otherwise it is drawn from `demand` with the env's seeded generator."""

    def __init__(
        self, spec: InventorySpec, demand: Demand, *, episode_length: int = 200, initial: int = 0, discrete: bool = True
    ) -> None:
        _check_length(episode_length)
        # not `spec`: Gymnasium's Env.spec is the registration's EnvSpec
        self.system, self.demand, self.episode_length, self.initial = spec, demand, episode_length, initial
        self.season = int(demand.season)
        self.observation_space = observation_space(spec, self.season)  # type: ignore[assignment]
        self.action_space = action_space(spec, discrete=discrete)
        self.observation_names = observation_names(spec, self.season)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        given = (options or {}).get("demand")
        if given is None:
            given = self.demand.sample(self.np_random, self.episode_length, 1)[:, 0]
        self.demands = [int(x) for x in np.asarray(given).reshape(-1)]
        if any(x < 0 for x in self.demands):
            raise InvalidInputError("demand must be >= 0")
        self.t = 0
        self.stock = [0] * (self.system.shelf_life or 1)  # stock[a]: units held a periods already
        self.stock[0] = self.initial
        self.backlog = 0
        self.pipe = [0] * max(self.system.lead_time, 1)  # pipe[k]: arrives in k + 1 periods
        return self._observe(), {}

    def _observe(self) -> NDArray[np.float32]:
        spec, lead = self.system, self.system.lead_time
        on_hand = sum(self.stock)
        values = [on_hand - self.backlog + sum(self.pipe[: lead - 1])]
        if spec.shelf_life is None:
            values.append(on_hand if spec.lost_sales else on_hand - self.backlog)
        else:
            values.extend(self.stock)
            if not spec.lost_sales:
                values.append(self.backlog)
        values.extend(self.pipe[: lead - 1])
        if self.season > 1:
            values.append(self.t % self.season)
        return np.array(values, dtype=np.float32)

    def _receive(self, units: int) -> None:
        served = min(self.backlog, units)
        self.backlog -= served
        self.stock[0] += units - served

    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        spec, costs = self.system, self.system.costs
        q = float(np.asarray(action).reshape(-1)[0])
        if not np.isfinite(q) or q < 0:
            raise InvalidInputError(f"the order must be a finite number >= 0, got {q}")
        q = min(int(round(q)), spec.order_limit)
        cost = (costs.fixed_order if q > 0 else 0.0) + costs.unit * q
        if spec.lead_time == 0:
            self._receive(q)
        else:
            self.pipe[-1] = q
        if self.t >= len(self.demands):
            raise InvalidInputError(f"the episode's demand covers {len(self.demands)} periods; reset")
        d = self.demands[self.t]
        left = d + self.backlog
        for a in reversed(range(len(self.stock))):  # oldest stock first
            take = min(self.stock[a], left)
            self.stock[a] -= take
            left -= take
        on_hand = sum(self.stock)
        lost = left if spec.lost_sales else 0
        self.backlog = 0 if spec.lost_sales else left
        cost += costs.holding * on_hand + costs.penalty * left
        expired = 0
        if spec.shelf_life is not None:
            expired = self.stock[-1]
            self.stock = [0, *self.stock[:-1]]
        end_backlog = self.backlog
        self.t += 1
        if spec.lead_time > 0:
            arrival = self.pipe[0]
            self.pipe = [*self.pipe[1:], 0]
            self._receive(arrival)
        info = {"on_hand": on_hand, "backlog": end_backlog, "lost": lost, "ordered": q, "demand": d, "expired": expired}
        return self._observe(), -cost, False, self.t >= self.episode_length, info
