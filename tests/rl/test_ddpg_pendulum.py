"""DDPG end to end on Pendulum-v1 through RLlib: checkpoint/restore, remote env runners, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core.columns import Columns

from gapray.rl import DDPG
from gapray.rl.evaluation import evaluate_policy, random_policy_returns
from gapray.rl.presets import pendulum_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_pendulum_config(num_env_runners: int, **kw):
    config = pendulum_config(num_env_runners=num_env_runners, rollout_fragment_length=kw.pop("fragment", 4),
                             batch_size=kw.pop("batch_size", 32), learning_starts=kw.pop("learning_starts", 100),
                             seed=kw.pop("seed", 0))
    return (config.training(actor_hiddens=(16,), critic_hiddens=(16,), **kw)
            .reporting(min_sample_timesteps_per_iteration=200))


def _actions(algo, obs: torch.Tensor) -> torch.Tensor:
    return algo.get_module().forward_inference({Columns.OBS: obs})[Columns.ACTIONS]


def test_checkpoint_restore_reproduces_actions_with_a_remote_env_runner(ray_session, tmp_path):
    algo = tiny_pendulum_config(num_env_runners=1).build_algo()
    assert isinstance(algo, DDPG)
    result = algo.train()
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 200
    assert np.isfinite(result["learners"]["default_policy"]["qf_loss"])
    obs = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (16, 3)), dtype=torch.float32)
    before = _actions(algo, obs)
    path = algo.save_to_path(tmp_path / "ckpt")
    algo.train()                                           # move away from the checkpoint
    assert not torch.equal(_actions(algo, obs), before)
    algo.restore_from_path(path)
    assert torch.equal(_actions(algo, obs), before)
    algo.stop()

    restored = Algorithm.from_checkpoint(path)
    assert isinstance(restored, DDPG)
    assert torch.equal(_actions(restored, obs), before)
    # The env runner got the restored weights too: its module acts identically.
    runner_actions = restored.env_runner_group.foreach_env_runner(
        lambda runner: runner.module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS], local_env_runner=False)
    assert torch.equal(torch.as_tensor(runner_actions[0]), before)
    restored.train()                                       # and it keeps training
    restored.stop()
