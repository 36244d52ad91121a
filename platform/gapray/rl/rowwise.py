"""Row-wise actor-critic for matrix observations (GIL decision, DESIGN.md sec. 4).

A GIL environment step observes ``[B, F]`` (one row per sample of the predictor's
mini-batch) and acts with ``[B, d]`` (one importance vector per row). The GIL reference
stores the step as ``B`` transitions ``(s_i, a_i, r, s'_i)`` that share the batch reward
``r`` and take row ``i`` of the next observation as ``s'_i``. Here the replay buffer keeps
whole env steps; the module folds the row dimension into the training batch, and the
learner broadcasts the step's reward over the rows. For a flat environment (Pendulum)
an observation ``[F]`` is one row: the same code path with ``rows == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch


@dataclass(frozen=True)
class RowLayout:
    """How one environment observation/action splits into rows."""

    rows: int
    """Rows per env step (``B`` for GIL, 1 for a flat env)."""
    state_dim: int
    """Width ``F`` of one state row."""
    action_dim: int
    """Width ``d`` of one action row."""
    matrix: bool
    """True when the env's spaces are ``[B, F]`` / ``[B, d]`` (rows folded), False when flat."""

    @classmethod
    def from_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> RowLayout:
        """Reads the layout from two Box spaces; raises naming both shapes when they disagree."""
        if not isinstance(observation_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"DDPG needs Box observation and action spaces, got {observation_space} "
                             f"and {action_space}")
        obs_shape, act_shape = tuple(observation_space.shape), tuple(action_space.shape)
        if len(obs_shape) == 1 and len(act_shape) == 1:
            return cls(rows=1, state_dim=obs_shape[0], action_dim=act_shape[0], matrix=False)
        if len(obs_shape) == 2 and len(act_shape) == 2:
            if obs_shape[0] != act_shape[0]:
                raise ValueError(f"row-wise DDPG: observation shape {obs_shape} and action shape {act_shape} "
                                 "must have the same number of rows")
            return cls(rows=obs_shape[0], state_dim=obs_shape[1], action_dim=act_shape[1], matrix=True)
        raise ValueError(f"DDPG supports observation/action shapes [F]/[d] or [B, F]/[B, d]; got {obs_shape} "
                         f"and {act_shape}")

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, B, W]`` (or ``[N, W]`` for a flat env) -> ``[N * B, W]``: one row per transition."""
        return x.reshape(-1, x.shape[-1])

    def unfold(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Inverse of :meth:`fold` for per-row outputs: ``[N * B, ...]`` -> ``[N, B, ...]``
        (or ``[N, ...]`` for a flat env)."""
        if self.matrix:
            return x.reshape(n, self.rows, *x.shape[1:])
        return x.reshape(n, *x.shape[1:])

    @staticmethod
    def per_row(values: torch.Tensor, n: int) -> torch.Tensor:
        """Per-row values ``[N * R]`` -> ``[N, R]`` (``R`` = rows kept per step; 1 for a flat env)."""
        return values.reshape(n, -1)


def shared_td_target(rewards: torch.Tensor, terminateds: torch.Tensor, q_next: torch.Tensor,
                     discount: torch.Tensor | float) -> torch.Tensor:
    """One-step (or n-step) TD target ``y = r + gamma^n (1 - done) Q'(s', mu'(s'))`` per row.

    Args:
        rewards: ``[N]`` reward of each env step, shared by all of its rows.
        terminateds: ``[N]`` terminal flags of each env step.
        q_next: ``[N, R]`` target critic at each row of the next observation.
        discount: ``gamma ** n_step``, a float or ``[N]``.

    Returns:
        ``[N, R]`` targets (no gradient).
    """
    discount_t = torch.as_tensor(discount, dtype=q_next.dtype, device=q_next.device)
    if discount_t.ndim == 1:
        discount_t = discount_t.unsqueeze(-1)
    not_done = 1.0 - terminateds.to(q_next.dtype).unsqueeze(-1)
    return (rewards.to(q_next.dtype).unsqueeze(-1) + discount_t * not_done * q_next).detach()
