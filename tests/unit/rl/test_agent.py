"""Trained policies: PPO warm-started from the classic policy, frozen to NumPy, saved without pickle.

Every training here is a few thousand steps (seconds): enough to check the machinery, not quality
(bench/rl.py measures quality at 200,000 steps)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from keel.errors import InvalidInputError
from keel.rl.agent import TrainedPolicy, policy_from_bytes, policy_to_bytes, train_policy, train_seeds
from keel.rl.demand import Poisson
from keel.rl.evaluate import compare, evaluate_many
from keel.rl.inventory import InventoryTwin
from keel.rl.policies import SS, BaseStock, CappedBaseStock, EchelonBaseStock
from keel.rl.serial import SerialTwin, or_gym_spec
from keel.rl.spec import Costs, InventorySpec

DEMAND = Poisson(10.0)  # the reference case: Poisson mean 10, L = 2, h = 1, p = 9
LOST = InventorySpec(lead_time=2, lost_sales=True)
FIXED = InventorySpec(lead_time=2, costs=Costs(holding=1, penalty=9, fixed_order=50))
BACKORDERS = InventorySpec(lead_time=2)


@pytest.fixture(scope="module")
def lost() -> TrainedPolicy:
    return train_policy(LOST, DEMAND, steps=2000, n_envs=4, seed=0, baseline=CappedBaseStock(36, 11))


@pytest.fixture(scope="module")
def fixed() -> TrainedPolicy:
    return train_policy(FIXED, DEMAND, steps=2000, n_envs=4, seed=0, baseline=SS(27, 58), action="delta")


def _states(spec: InventorySpec, policy: object, seed: int = 5) -> np.ndarray:
    """States visited by `policy` on the twin (after a warm-up), stacked."""
    twin = InventoryTwin(spec, DEMAND, copies=64)
    obs = twin.reset(seed=seed)
    seen = []
    for t in range(150):
        if t >= 30:
            seen.append(obs)
        obs, _, _ = twin.step(policy.act(obs))  # type: ignore[attr-defined]
    return np.concatenate(seen)


def test_saved_and_loaded_policy_acts_identically(lost: TrainedPolicy) -> None:
    data = policy_to_bytes(lost)
    back = policy_from_bytes(data)
    rng = np.random.default_rng(0)
    obs = np.column_stack([rng.integers(0, 60, 5000), rng.integers(0, 40, 5000), rng.integers(0, 30, 5000)])
    assert np.array_equal(back.act(obs), lost.act(obs))
    assert back.curve == lost.curve and back.action == lost.action and back.observation_names == lost.observation_names
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, lost.weights, strict=True))
    assert b"pickle" not in data and data[8:9] == b"{"  # a safetensors header: JSON, not a pickle stream
    assert back.act(obs[0]) == lost.act(obs[:1])[0]  # one observation in, one order out


def _rewrite_meta(data: bytes, change: dict[str, object]) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["keel"])
    meta.update(change)
    header["__metadata__"]["keel"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_malformed_policy_bytes_are_refused(lost: TrainedPolicy) -> None:
    data = policy_to_bytes(lost)
    assert policy_from_bytes(_rewrite_meta(data, {})).act(np.zeros(3)) == lost.act(np.zeros(3))  # the rewrite is sound
    for bad, words in [
        (data[:40], "not a Keel policy"),
        (b"\x00" * 4, "at least an 8-byte"),
        (b"garbage that is not safetensors", "not a Keel policy"),
        (_rewrite_meta(data, {"activation": "gelu"}), "unknown activation"),
        (_rewrite_meta(data, {"layers": 4}), "missing"),
        (_rewrite_meta(data, {"format": "other/9"}), "format"),
        (_rewrite_meta(data, {"observation_names": ["position", "on_hand"]}), "shape"),
        (
            _rewrite_meta(
                data, {"action": {"kind": "teleport", "base": [1], "scale": [1], "limit": [1], "echelon": False}}
            ),
            "action",
        ),
    ]:
        with pytest.raises(InvalidInputError, match=words):
            policy_from_bytes(bad)
    with pytest.raises(InvalidInputError, match="layer 1"):  # inconsistent shapes, built in memory
        replace(
            lost, weights=(lost.weights[0], lost.weights[1], lost.weights[2][:5], lost.weights[3], *lost.weights[4:])
        )
    with pytest.raises(InvalidInputError, match="shape"):
        lost.act(np.zeros((2, 5)))


@pytest.mark.parametrize("case", ["lost", "fixed"])
def test_warm_start_reproduces_the_baseline(case: str, request: pytest.FixtureRequest) -> None:
    # behaviour cloning: on the states the baseline visits, the trained policy orders what it orders
    policy: TrainedPolicy = request.getfixturevalue(case)
    spec, base = (LOST, CappedBaseStock(36, 11)) if case == "lost" else (FIXED, SS(27, 58))
    obs = _states(spec, base)
    same = float(np.mean(policy.act(obs) == base.act(obs)))
    assert same >= 0.95, f"{case}: only {same:.1%} of orders equal the baseline's"


@pytest.mark.parametrize("case", ["lost", "fixed"])
def test_keep_best_is_never_worse_than_the_baseline(case: str, request: pytest.FixtureRequest) -> None:
    policy: TrainedPolicy = request.getfixturevalue(case)
    spec, base = (LOST, CappedBaseStock(36, 11)) if case == "lost" else (FIXED, SS(27, 58))
    # keep-best: the checkpoint with the lowest CRN cost, or the warm start (step 0) when that winner
    # did not also beat it on an independent matrix
    kept = policy.curve[[s for s, _ in policy.curve].index(policy.kept_step)][1]
    assert kept == min(c for _, c in policy.curve) or policy.kept_step == 0
    evs = evaluate_many(
        lambda n: InventoryTwin(spec, DEMAND, copies=n), [policy, base], periods=400, copies=256, warmup=50, seed=11
    )  # an independent demand matrix: not the one the checkpoints were chosen on
    diff = compare(evs[0], evs[1])
    assert diff.difference <= diff.se + 1e-9, (
        f"{case}: worse than the baseline by {diff.difference:.4f} +- {diff.se:.4f}"
    )


def test_learning_curve_is_recorded(lost: TrainedPolicy) -> None:
    steps = [s for s, _ in lost.curve]
    assert steps[0] == 0 and steps[-1] == lost.steps >= 2000 and steps == sorted(set(steps)) and len(steps) >= 3
    assert all(np.isfinite(c) and 7.0 < c < 12.0 for _, c in lost.curve)
    assert lost.seconds > 0 and lost.seed == 0 and "CappedBaseStock" in lost.baseline
    assert abs(lost.baseline_cost - 8.617) < 0.15  # the capped base-stock's cost on the checkpoints' demand


def test_training_is_deterministic_for_a_seed() -> None:
    a = train_policy(BACKORDERS, DEMAND, steps=1000, n_envs=2, seed=3, baseline=BaseStock(37), net=(16, 16))
    b = train_policy(BACKORDERS, DEMAND, steps=1000, n_envs=2, seed=3, baseline=BaseStock(37), net=(16, 16))
    assert a.curve == b.curve and a.kept_step == b.kept_step
    assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights, strict=True))
    assert [w.shape for w in a.weights] == [(3, 16), (16,), (16, 16), (16,), (16, 1), (1,)]


def test_train_seeds_uses_the_given_map_and_a_serial_chain_acts_per_stage() -> None:
    spec, demand = or_gym_spec(lost_sales=False), Poisson(20.0)
    calls: list[int] = []

    def my_map(fn, seeds):  # type: ignore[no-untyped-def]
        calls.extend(seeds)
        return [fn(s) for s in seeds]

    base = EchelonBaseStock((70, 200, 420))
    out = train_seeds(spec, demand, seeds=[0, 1], map_fn=my_map, steps=256, n_envs=2, net=(8,), baseline=base)
    assert calls == [0, 1] and [p.seed for p in out] == [0, 1]
    obs = SerialTwin(spec, demand, copies=5).reset(seed=0)
    orders = out[0].act(obs)
    assert orders.shape == (5, 3) and orders.dtype == np.int64 and (orders >= 0).all()
    assert (orders <= np.array([100, 90, 80])).all()  # the stages' capacities


def test_the_default_ppo_anchor_runs_episodes_and_keeps_the_last_checkpoint() -> None:
    p = train_policy(
        BACKORDERS, DEMAND, steps=400, n_envs=2, seed=0, baseline=BaseStock(37), action="quantity",
        warm_start=False, normalize=False, keep_best=False, ppo={"batch_size": 100}, episode_length=50, net=(8,),
    )  # fmt: skip
    assert p.kept_step == p.steps == p.curve[-1][0] >= 400
    assert p.action.kind == "quantity" and p.action.base == (20.0,)  # orders 0 .. 4 x mean demand
    orders = p.act(np.array([[30.0, 10.0, 10.0], [0.0, 0.0, 0.0]]))
    assert ((orders >= 0) & (orders <= 40)).all()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="episode_length"):
        train_policy(LOST, DEMAND, steps=100, episode_length=0, baseline=BaseStock(35))
    with pytest.raises(InvalidInputError, match="action must be one of"):
        train_policy(LOST, DEMAND, steps=100, action="teleport", baseline=BaseStock(35))
    with pytest.raises(InvalidInputError, match="net must be"):
        train_policy(LOST, DEMAND, steps=100, net=(), baseline=BaseStock(35))
    with pytest.raises(InvalidInputError, match="EchelonBaseStock"):
        train_policy(or_gym_spec(), Poisson(20.0), steps=100, baseline=BaseStock(35))


def test_import_keel_rl_stays_light() -> None:
    code = (
        "import sys, keel.rl, keel.rl.agent; "
        "heavy = [m for m in ('torch', 'stable_baselines3', 'gymnasium', 'safetensors') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
