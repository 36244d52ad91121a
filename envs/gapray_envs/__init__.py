"""Gymnasium/RLlib environments of gapray.

Importing this package registers ``gapray/GIL-v0`` (:class:`~gapray_envs.gil_env.GILEnv`; the
``config`` dict picks the dataset and the MLP or LSTM predictor) with Gymnasium:
``gymnasium.make("gapray/GIL-v0", config={...})``. :func:`register_rllib_env` registers the
same creator with RLlib's ``register_env`` and returns the name to use as ``.environment(...)``.
"""

from __future__ import annotations

from typing import Any

import gymnasium

GIL_ENV_ID = "gapray/GIL-v0"

if GIL_ENV_ID not in gymnasium.registry:
    gymnasium.register(id=GIL_ENV_ID, entry_point="gapray_envs.gil_env:GILEnv", disable_env_checker=False)


def make_gil_env(config: dict[str, Any] | None = None) -> Any:
    """The environment creator shared by Gymnasium and RLlib: ``GILEnv(dict(config))``."""
    from gapray_envs.gil_env import GILEnv

    return GILEnv(dict(config or {}))


def register_rllib_env(name: str = GIL_ENV_ID) -> str:
    """Register :func:`make_gil_env` with ``ray.tune.registry.register_env`` under ``name``."""
    from ray.tune.registry import register_env

    register_env(name, make_gil_env)
    return name


__all__ = ["GIL_ENV_ID", "make_gil_env", "register_rllib_env"]
