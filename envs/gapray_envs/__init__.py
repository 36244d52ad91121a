"""Gymnasium/RLlib environments of gapray.

Importing this package registers ``gapray/GIL-v0`` (:class:`~gapray_envs.gil_env.GILEnv`; the
``config`` dict picks the dataset and the MLP or LSTM predictor) with Gymnasium:
``gymnasium.make("gapray/GIL-v0", config={...})``. :func:`register_rllib_env` registers the
same creator with RLlib's ``register_env`` and returns the name to use as ``.environment(...)``
(``flatten=True``: 1-D observation/action spaces for RLlib's stock algorithms).
"""

from __future__ import annotations

from typing import Any

import gymnasium

GIL_ENV_ID = "gapray/GIL-v0"
GIL_FLAT_ENV_ID = "gapray/GIL-flat-v0"

if GIL_ENV_ID not in gymnasium.registry:
    gymnasium.register(id=GIL_ENV_ID, entry_point="gapray_envs.gil_env:GILEnv", disable_env_checker=False)


def make_gil_env(config: dict[str, Any] | None = None) -> Any:
    """The environment creator shared by Gymnasium and RLlib: ``GILEnv(dict(config))``."""
    from gapray_envs.gil_env import GILEnv

    return GILEnv(dict(config or {}))


def make_flat_gil_env(config: dict[str, Any] | None = None) -> Any:
    """:func:`make_gil_env` wrapped in :class:`~gapray_envs.gil_env.FlattenGILEnv` (1-D spaces)."""
    from gapray_envs.gil_env import FlattenGILEnv

    return FlattenGILEnv(make_gil_env(config))


def register_rllib_env(name: str = GIL_ENV_ID, flatten: bool = False) -> str:
    """Register the GIL env creator with ``ray.tune.registry.register_env`` and return ``name``.

    ``flatten=True`` registers the 1-D variant (:class:`~gapray_envs.gil_env.FlattenGILEnv`) for
    RLlib's stock algorithms, under ``name`` with ``-flat`` appended unless a name is given.
    """
    from ray.tune.registry import register_env

    if flatten and name == GIL_ENV_ID:
        name = GIL_FLAT_ENV_ID
    register_env(name, make_flat_gil_env if flatten else make_gil_env)
    return name


__all__ = ["GIL_ENV_ID", "GIL_FLAT_ENV_ID", "make_flat_gil_env", "make_gil_env", "register_rllib_env"]
