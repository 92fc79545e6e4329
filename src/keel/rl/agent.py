"""Trained decision policies: PPO (Stable-Baselines3) on a twin, frozen into plain NumPy values.

`train_policy` trains on the vectorised twin and returns a `TrainedPolicy`: the actor network's
weights as float32 arrays, the observation normalisation and the action mapping, all frozen, so
`TrainedPolicy.act(obs)` is a few matrix products in NumPy and serving needs no torch. It acts like
the classic policies (same `act(obs)` signature), so keel.rl.evaluate scores it the same way.

What makes PPO work here (each a why, measured in bench/rl.py):
- the action is an order-up-to level (or a change relative to the baseline's level), not a raw
  quantity: the best classic policies are nearly constant in that parameterisation, so the network
  has a simple function to learn and a random network already orders sensibly;
- warm start: the network first imitates the best classic policy (behaviour cloning), so PPO starts
  where decades of inventory theory end instead of from scratch;
- the observations are normalised with statistics frozen before training (from the baseline's own
  trajectories) and the rewards are centred on the baseline's cost and scaled by its spread;
- keep-best: every checkpoint is scored on one fixed demand matrix (common random numbers) and the
  best is returned, the imitation at step 0 included, so a bad PPO update cannot make it worse.

The torch and SB3 side lives in keel.rl._ppo, imported only when training.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from keel.errors import InvalidInputError
from keel.rl.spec import Demand, InventorySpec, SerialSpec

__all__ = ["ActionMap", "TrainedPolicy", "policy_from_bytes", "policy_to_bytes", "train_policy", "train_seeds"]

F32 = NDArray[np.float32]
ACTIVATIONS: dict[str, Callable[[F32], F32]] = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, np.float32(0.0))}
ACTION_KINDS = ("order_up_to", "delta", "quantity")
_FORMAT = "keel.policy/1"


@dataclass(frozen=True)
class ActionMap:
    """How the network's output a in [-1, 1] (one per stage) becomes an order.

    Every kind computes y = base + scale * a. order_up_to: y is a level, base = the baseline's level
    and scale = the level (so y spans 0 .. twice the level); delta: y is a level, base = the
    baseline's level and scale a few standard deviations of lead-time demand (wider for an (s, S)
    baseline: down to s); quantity: y is the order itself, 0 .. 4 x mean demand within the limit.
    A level y is ordered as y - position (the echelon position in a serial chain); every order is
    rounded to whole units, at least 0 and at most the limit."""

    kind: str
    base: tuple[float, ...]
    scale: tuple[float, ...]
    limit: tuple[int, ...]
    echelon: bool = False  # serial chains: levels apply to echelon positions (cumulative from the retailer)

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise InvalidInputError(f"action must be one of {ACTION_KINDS}, got {self.kind!r}")
        if not (len(self.base) == len(self.scale) == len(self.limit) >= 1):
            raise InvalidInputError(
                f"action map needs one base, scale and limit per stage, got {self.base}, {self.scale}, {self.limit}"
            )
        if min(self.scale) <= 0 or min(self.limit) < 1:
            raise InvalidInputError(f"action scales must be > 0 and limits >= 1, got {self.scale}, {self.limit}")

    @property
    def dims(self) -> int:
        return len(self.base)

    def positions(self, obs: NDArray[np.float64]) -> NDArray[np.float64]:
        """What an order-up-to level is compared with: (copies, dims)."""
        pos = obs[:, : self.dims]
        return np.cumsum(pos, axis=1) if self.echelon else pos

    def levels(self, a: NDArray[np.float64]) -> NDArray[np.float64]:
        """Network output (clipped to [-1, 1]) -> order-up-to level (or quantity)."""
        a = np.clip(a, -1.0, 1.0)
        return np.asarray(self.base) + np.asarray(self.scale) * a

    def orders(self, a: NDArray[np.float64], obs: NDArray[np.float64]) -> NDArray[np.int64]:
        y = self.levels(a)
        if self.kind != "quantity":
            y = y - self.positions(obs)
        q = np.clip(np.rint(y), 0, np.asarray(self.limit, dtype=np.float64))
        return q.astype(np.int64)

    def targets(self, orders: NDArray[np.int64], obs: NDArray[np.float64]) -> tuple[F32, F32]:
        """Behaviour-cloning targets in network units: (target, hinge), hinge 1 where the order is 0
        (any level at or below the position orders nothing: the loss only pushes a below the target)."""
        q = np.asarray(orders, dtype=np.float64).reshape(len(obs), self.dims)
        zero = q <= 0
        if self.kind == "quantity":
            y = np.where(zero, -1.0, q)
        else:
            pos = self.positions(obs)
            y = np.where(zero, pos - 1.0, pos + q)  # one unit below the position: rounding orders 0
        target = (y - np.asarray(self.base)) / np.asarray(self.scale)
        return target.astype(np.float32), zero.astype(np.float32)


@dataclass(frozen=True)
class TrainedPolicy:
    """A trained actor, frozen: NumPy weights, normalisation and action mapping (no torch needed)."""

    weights: tuple[F32, ...] = field(repr=False, compare=False)  # W0, b0, W1, b1, ...; W as (inputs, outputs)
    activation: str
    obs_mean: F32 = field(repr=False, compare=False)
    obs_var: F32 = field(repr=False, compare=False)
    obs_clip: float
    action: ActionMap
    observation_names: tuple[str, ...]
    curve: tuple[tuple[int, float], ...] = ()  # (training steps, mean cost per period on the fixed CRN demand)
    seed: int = 0
    steps: int = 0
    seconds: float = 0.0
    kept_step: int = 0  # the checkpoint returned (0: the warm start itself)
    baseline: str = ""  # the classic policy it was warm-started from / compared with
    baseline_cost: float = float("nan")  # the baseline's cost on the same CRN demand as the curve

    def __post_init__(self) -> None:
        _check_network(self.weights, self.activation, self.obs_mean, self.obs_var, self.action, self.observation_names)

    def act(self, obs: ArrayLike) -> NDArray[np.int64]:
        """Deterministic orders for (copies, n) observations -> (copies,) (serial: (copies, stages));
        one (n,) observation -> a scalar order (serial: (stages,))."""
        arr = np.asarray(obs, dtype=np.float64)
        single = arr.ndim == 1
        arr = np.atleast_2d(arr)
        if arr.ndim != 2 or arr.shape[1] != len(self.observation_names):
            raise InvalidInputError(
                f"observations must have shape (copies, {len(self.observation_names)}) or "
                f"({len(self.observation_names)},) laid out as {self.observation_names}, got {np.shape(obs)}"
            )
        out = self.action.orders(self.forward(arr), arr)
        if self.action.dims == 1:
            out = out[:, 0]
        return out[0] if single else out

    def forward(self, obs: NDArray[np.float64]) -> NDArray[np.float64]:
        """The network's raw output (before clipping and mapping) on raw observations."""
        x = (obs - self.obs_mean) / np.sqrt(self.obs_var + 1e-8)
        h = np.clip(x, -self.obs_clip, self.obs_clip).astype(np.float32)
        act = ACTIVATIONS[self.activation]
        layers = len(self.weights) // 2
        for i in range(layers):
            h = h @ self.weights[2 * i] + self.weights[2 * i + 1]
            if i < layers - 1:
                h = act(h)
        out: NDArray[np.float64] = h.astype(np.float64)
        return out


def _check_network(
    weights: Sequence[F32], activation: str, mean: F32, var: F32, action: ActionMap, names: Sequence[str]
) -> None:
    if activation not in ACTIVATIONS:
        raise InvalidInputError(f"unknown activation {activation!r}: use one of {sorted(ACTIVATIONS)}")
    if len(weights) < 2 or len(weights) % 2:
        raise InvalidInputError(f"weights must be pairs (W, b) per layer, got {len(weights)} arrays")
    width = len(names)
    if np.shape(mean) != (width,) or np.shape(var) != (width,):
        raise InvalidInputError(
            f"obs_mean and obs_var must have shape ({width},), got {np.shape(mean)} and {np.shape(var)}"
        )
    if np.any(np.asarray(var) < 0):
        raise InvalidInputError("obs_var must be >= 0")
    for i in range(0, len(weights), 2):
        w, b = np.asarray(weights[i]), np.asarray(weights[i + 1])
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise InvalidInputError(
                f"layer {i // 2}: expected W of shape ({width}, k) and b of shape (k,), got {w.shape} and {b.shape}"
            )
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise InvalidInputError(f"layer {i // 2}: weights must be finite")
        width = w.shape[1]
    if width != action.dims:
        raise InvalidInputError(f"the network has {width} outputs but the action map {action.dims} stages")


# -- bytes: safetensors for the tensors, JSON metadata in its header (never pickle) ------------------


def policy_to_bytes(policy: TrainedPolicy) -> bytes:
    """The policy as a safetensors file; everything but the tensors is JSON under the 'keel' key."""
    from safetensors.numpy import save

    tensors = {f"layer{i // 2}.{'weight' if i % 2 == 0 else 'bias'}": w for i, w in enumerate(policy.weights)}
    tensors["obs.mean"], tensors["obs.var"] = policy.obs_mean, policy.obs_var
    meta = {
        "format": _FORMAT,
        "layers": len(policy.weights) // 2,
        "activation": policy.activation,
        "obs_clip": policy.obs_clip,
        "action": {k: getattr(policy.action, k) for k in ("kind", "base", "scale", "limit", "echelon")},
        "observation_names": list(policy.observation_names),
        "curve": [list(p) for p in policy.curve],
        "seed": policy.seed,
        "steps": policy.steps,
        "seconds": policy.seconds,
        "kept_step": policy.kept_step,
        "baseline": policy.baseline,
        "baseline_cost": _num(policy.baseline_cost),
    }
    return save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, {"keel": json.dumps(meta)})


def policy_from_bytes(data: bytes) -> TrainedPolicy:
    """A policy saved by `policy_to_bytes`; malformed input raises InvalidInputError naming the problem."""
    from safetensors.numpy import load

    if not isinstance(data, (bytes, bytearray)) or len(data) < 8:
        raise InvalidInputError("a policy file must be safetensors bytes (at least an 8-byte header length)")
    try:
        (n,) = struct.unpack("<Q", bytes(data[:8]))
        header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
        meta = json.loads(header["__metadata__"]["keel"])
        tensors = load(bytes(data))
    except Exception as exc:  # safetensors, JSON and struct errors alike: the file is not a policy
        raise InvalidInputError(f"not a Keel policy file (safetensors with a 'keel' metadata entry): {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise InvalidInputError(f"policy metadata must declare format {_FORMAT!r}")
    try:
        layers = int(meta["layers"])
        weights = []
        for i in range(layers):
            weights += [tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]]
        a = meta["action"]
        action = ActionMap(
            str(a["kind"]),
            tuple(float(v) for v in a["base"]),
            tuple(float(v) for v in a["scale"]),
            tuple(int(v) for v in a["limit"]),
            bool(a["echelon"]),
        )
        return TrainedPolicy(
            weights=tuple(weights),
            activation=str(meta["activation"]),
            obs_mean=tensors["obs.mean"],
            obs_var=tensors["obs.var"],
            obs_clip=float(meta["obs_clip"]),
            action=action,
            observation_names=tuple(str(v) for v in meta["observation_names"]),
            curve=tuple((int(s), float(c)) for s, c in meta["curve"]),
            seed=int(meta["seed"]),
            steps=int(meta["steps"]),
            seconds=float(meta["seconds"]),
            kept_step=int(meta["kept_step"]),
            baseline=str(meta["baseline"]),
            baseline_cost=float("nan") if meta["baseline_cost"] is None else float(meta["baseline_cost"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"policy file is missing or has a malformed entry: {exc!r}") from None


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


# -- training ------------------------------------------------------------------------------------------


def train_policy(
    spec: InventorySpec | SerialSpec,
    demand: Demand,
    *,
    steps: int = 200_000,
    seed: int = 0,
    n_envs: int = 8,
    action: str = "order_up_to",
    warm_start: bool = True,
    normalize: bool = True,
    net: Sequence[int] = (64, 64),
    threads: int = 1,
    baseline: Any = None,
    progress: Callable[[int, float], None] | None = None,
    keep_best: bool = True,
    ppo: dict[str, Any] | None = None,
    episode_length: int | None = None,
) -> TrainedPolicy:
    """PPO on the twin of `spec` (single item or serial chain) facing `demand`.

    `baseline`: the classic policy to imitate and to centre `delta` actions on (None: the best
    classic policy found by keel.rl.evaluate, or the best echelon base-stock for a chain).
    `progress(steps, cost)` is called at each checkpoint. `keep_best`: return the checkpoint with
    the lowest cost on a fixed CRN demand matrix, the warm start (step 0) included; off: the last.
    `ppo`: overrides of SB3 PPO's arguments (None: the tuned defaults; `{}`: SB3's own defaults).
    `episode_length`: None trains on one endless episode per copy, started on the baseline's path
    (the objective is the long-run cost per period); else episodes of that many periods from empty
    shelves. SB3's default PPO with action="quantity", warm_start=False, normalize=False,
    keep_best=False, n_envs=4 and episode_length=200 is the issue's 'default PPO' anchor."""
    from keel.rl import _ppo

    if action not in ACTION_KINDS:
        raise InvalidInputError(f"action must be one of {ACTION_KINDS}, got {action!r}")
    if not isinstance(steps, int) or steps < 1 or not isinstance(n_envs, int) or n_envs < 1:
        raise InvalidInputError(f"steps and n_envs must be integers >= 1, got {steps!r}, {n_envs!r}")
    if episode_length is not None and (not isinstance(episode_length, int) or episode_length < 1):
        raise InvalidInputError(f"episode_length must be None or an integer >= 1, got {episode_length!r}")
    if not net or any(not isinstance(k, int) or k < 1 for k in net):
        raise InvalidInputError(f"net must be a non-empty sequence of layer widths >= 1, got {net!r}")
    start = time.perf_counter()
    problem = _ppo.Problem.build(spec, demand, baseline, action)
    return _ppo.train(
        problem,
        steps=steps,
        seed=seed,
        n_envs=n_envs,
        warm_start=warm_start,
        normalize=normalize,
        net=tuple(net),
        threads=threads,
        progress=progress,
        keep_best=keep_best,
        ppo=ppo,
        episode_length=episode_length,
        started=start,
    )


def train_seeds(
    spec: InventorySpec | SerialSpec,
    demand: Demand,
    *,
    seeds: Iterable[int],
    map_fn: Callable[..., Iterable[TrainedPolicy]] = map,
    **kwargs: Any,
) -> list[TrainedPolicy]:
    """One policy per seed. `map_fn(f, seeds)` runs them (the default builtin map: one after the
    other; the workspace passes an executor's or Ray's map to train them in parallel)."""
    seeds = list(seeds)
    if not seeds:
        raise InvalidInputError("train_seeds needs at least one seed")
    return list(map_fn(_SeedJob(spec, demand, kwargs), seeds))


@dataclass(frozen=True)
class _SeedJob:
    """A picklable 'train with this seed' function (a lambda would not cross a process boundary)."""

    spec: InventorySpec | SerialSpec
    demand: Demand
    kwargs: dict[str, Any]

    def __call__(self, seed: int) -> TrainedPolicy:
        return train_policy(self.spec, self.demand, seed=seed, **self.kwargs)
