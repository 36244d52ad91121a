"""Exploration noise of ``_forward_exploration``: Gaussian scale, OU correlation, random warm-up."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from gapray.rl import DDPGConfig
from gapray.rl.exploration import OrnsteinUhlenbeckNoise

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


def _module(**exploration):
    config = (DDPGConfig().training(actor_hiddens=(8,), critic_hiddens=(8,), actor_batch_norm=False)
              .exploration(**exploration))
    return config.build_learner(spaces={"default_policy": (OBS, ACT)}).module["default_policy"].unwrapped()


def test_gaussian_noise_has_sigma_times_half_range_and_stays_in_bounds():
    torch.manual_seed(0)
    module = _module(noise="gaussian", sigma=0.1)
    obs = torch.zeros(20_000, 3)
    mean = module.forward_inference({Columns.OBS: obs[:1]})[Columns.ACTIONS]
    noisy = module.forward_exploration({Columns.OBS: obs}, t=10)[Columns.ACTIONS]
    assert noisy.std(dim=0).tolist() == pytest.approx([0.2, 0.2], rel=0.05)   # 0.1 x half-range 2
    assert torch.allclose(noisy.mean(dim=0), mean[0], atol=0.01)
    assert noisy.min() >= -2 and noisy.max() <= 2


def test_initial_random_steps_act_uniformly_then_the_actor_takes_over():
    torch.manual_seed(0)
    module = _module(noise="none", initial_random_steps=100)
    obs = torch.zeros(10_000, 3)
    warm = module.forward_exploration({Columns.OBS: obs}, t=99)[Columns.ACTIONS]
    assert warm.mean().item() == pytest.approx(0.0, abs=0.05) and warm.std().item() == pytest.approx(4 / 12 ** 0.5,
                                                                                                       rel=0.03)
    after = module.forward_exploration({Columns.OBS: obs[:2]}, t=100)[Columns.ACTIONS]
    assert torch.equal(after, module.forward_inference({Columns.OBS: obs[:2]})[Columns.ACTIONS])


def test_ornstein_uhlenbeck_noise_is_mean_reverting_and_correlated():
    noise = OrnsteinUhlenbeckNoise(sigma=0.3, theta=0.15, dt=1e-2)
    gen = torch.Generator().manual_seed(0)
    path = torch.stack([noise(torch.Size([256]), gen) for _ in range(2000)])   # [time, chains]
    lag1 = torch.corrcoef(torch.stack([path[1000:-1].flatten(), path[1001:].flatten()]))[0, 1]
    assert lag1 > 0.95                                                          # strongly autocorrelated
    # stationary std: sigma sqrt(dt) / sqrt(1 - (1 - theta dt)^2) ~ sigma / sqrt(2 theta) (small dt)
    assert path[-1].std().item() == pytest.approx(0.3 * np.sqrt(1e-2 / (1 - (1 - 0.15e-2) ** 2)), rel=0.35)
    assert abs(path[-1].mean().item()) < 0.1
