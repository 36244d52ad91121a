"""Roll out a DDPG module's deterministic policy (``_forward_inference``) on a Gymnasium env."""

from __future__ import annotations

from typing import cast

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule


def module_action_to_env(action: np.ndarray, space: gym.spaces.Box, normalized: bool) -> np.ndarray:
    """Unsquash a module action from ``[-1, 1]`` to the Box bounds (when ``normalized``), then clip."""
    if normalized:
        action = space.low + (action + 1.0) * 0.5 * (space.high - space.low)
    return np.clip(action, space.low, space.high).astype(space.dtype)


def evaluate_policy(module: RLModule, env_id: str, episodes: int = 10, seed: int = 0,
                    normalize_actions: bool = True, env_config: dict | None = None) -> list[float]:
    """Undiscounted returns of ``episodes`` episodes with the deterministic action."""
    env = gym.make(env_id, **(env_config or {}))
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                out = module.forward_inference({Columns.OBS: torch.as_tensor(obs, dtype=torch.float32)[None]})
            action = module_action_to_env(out[Columns.ACTIONS][0].numpy(), cast(gym.spaces.Box, env.action_space),
                                          normalize_actions)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def random_policy_returns(env_id: str, episodes: int = 10, seed: int = 0,
                          env_config: dict | None = None) -> list[float]:
    """Undiscounted returns of uniformly random actions (the baseline to beat)."""
    env = gym.make(env_id, **(env_config or {}))
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns
