"""Exploration noise for DDPG: Gaussian (Fujimoto et al. 2018) or Ornstein-Uhlenbeck
(Lillicrap et al. 2015, Sec. 7).

Noise is expressed in units of half the action range, so ``sigma = 0.1`` means 10 % of
the half-width whether the module works in ``[-1, 1]`` or in the env's own bounds.
"""

from __future__ import annotations

import torch

NOISE_TYPES = ("gaussian", "ou", "none")


def gaussian_noise(shape: torch.Size, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``N(0, sigma^2)`` noise of ``shape``."""
    return sigma * torch.randn(shape, generator=generator)


class OrnsteinUhlenbeckNoise:
    """Temporally correlated noise ``x <- x + theta (mu - x) dt + sigma sqrt(dt) N(0, 1)``.

    The state keeps the shape of the last call and restarts from ``mu`` when that shape
    changes. It is not reset at episode boundaries (RLlib's module does not see them).
    """

    def __init__(self, sigma: float, theta: float = 0.15, dt: float = 1e-2, mu: float = 0.0) -> None:
        self.sigma, self.theta, self.dt, self.mu = sigma, theta, dt, mu
        self.state: torch.Tensor | None = None

    def reset(self) -> None:
        self.state = None

    def __call__(self, shape: torch.Size, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.state is None or self.state.shape != shape:
            self.state = torch.full(shape, self.mu)
        drift = self.theta * (self.mu - self.state) * self.dt
        diffusion = self.sigma * (self.dt ** 0.5) * torch.randn(shape, generator=generator)
        self.state = self.state + drift + diffusion
        return self.state.clone()
