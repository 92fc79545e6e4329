"""The Gymnasium faces of the twin: the reference env passes Gymnasium's checker, the vector env
steps as the twin does and resets itself after an episode."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from keel.errors import InvalidInputError
from keel.rl.gym_env import InventoryVectorEnv, ReferenceInventoryEnv
from keel.rl.inventory import InventoryTwin
from keel.rl.spec import InventorySpec

from ._toy_demand import ToyPoisson


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("spec", [InventorySpec(), InventorySpec(lost_sales=True, shelf_life=3, capacity=20)])
def test_reference_env_passes_gymnasium_checker(discrete: bool, spec: InventorySpec) -> None:
    env = ReferenceInventoryEnv(spec, ToyPoisson(10.0, (0.8, 1.2)), episode_length=20, discrete=discrete)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    assert not [w for w in caught if "keel" in str(w.filename)]
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)


def test_vector_env_steps_like_the_twin_and_autoresets() -> None:
    spec, demand, n = InventorySpec(), ToyPoisson(), 16
    env = InventoryVectorEnv(spec, demand, num_envs=n, episode_length=5)
    assert env.single_action_space.n == spec.order_limit + 1  # type: ignore[attr-defined]
    assert env.observation_space.shape == (n, 3)  # position, net inventory, pipeline_1
    twin = InventoryTwin(spec, demand, copies=n)
    obs, _ = env.reset(seed=11)
    twin_obs = twin.reset(seed=11)
    np.testing.assert_array_equal(obs, twin_obs)
    for t in range(5):
        actions = np.full(n, 12)
        obs, reward, terminated, truncated, info = env.step(actions)
        twin_obs, cost, _ = twin.step(actions)
        np.testing.assert_array_equal(obs, twin_obs)
        np.testing.assert_allclose(reward, -cost)
        assert obs.dtype == np.float32 and not terminated.any()
        assert truncated.all() == (t == 4)
    obs, reward, _, truncated, _ = env.step(np.full(n, 99))  # autoreset step: actions ignored
    assert (reward == 0).all() and not truncated.any() and (obs == 0).all()
    obs, _, _, _, info = env.step(np.full(n, 3))
    assert (info["ordered"] == 3).all()


def test_vector_env_box_actions_are_clipped_to_the_space() -> None:
    env = InventoryVectorEnv(InventorySpec(capacity=20), ToyPoisson(), num_envs=3, discrete=False)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([[-4.2], [7.6], [55.0]], dtype=np.float32))
    assert info["ordered"].tolist() == [0, 8, 20]
    with pytest.raises(InvalidInputError, match="shape"):
        InventoryVectorEnv(InventorySpec(), ToyPoisson(), num_envs=3).step(np.zeros(4, dtype=int))


def test_reference_env_rejects_negative_orders_and_bad_lengths() -> None:
    env = ReferenceInventoryEnv(InventorySpec(), ToyPoisson())
    env.reset(seed=0)
    with pytest.raises(InvalidInputError, match=">= 0"):
        env.step(-1)
    with pytest.raises(InvalidInputError, match="episode_length"):
        ReferenceInventoryEnv(InventorySpec(), ToyPoisson(), episode_length=0)
