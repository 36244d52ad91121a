"""Importance policies that need no RL: ``ones``, ``mask`` (GIL-H) and ``random``.

A policy maps the placeholder-filled inputs ``x`` and the missing indicators ``m`` (1 =
observed) of a batch to the importance ``a in [0, 1]`` of the same shape (GIL Eq. 4).
The RL policies (GIL, GIL-D) live in :mod:`gapray.rl` and act through the GIL environment.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Policy = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def ones_policy(x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``a = 1``: plain back-propagation (with a zero placeholder: the zero-imputation baseline)."""
    return torch.ones_like(x)


def mask_policy(x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """GIL-H: ``a = m``, gradients from missing entries are dropped (paper Sec. 2.3, 4.1)."""
    return mask


def random_policy(x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``a ~ U(0, 1)`` element-wise."""
    return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)


POLICIES: dict[str, Policy] = {"ones": ones_policy, "mask": mask_policy, "random": random_policy}


def get_policy(name: str) -> Policy:
    """The policy registered as ``name`` in :data:`POLICIES`."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}: expected one of {', '.join(POLICIES)}") from None
