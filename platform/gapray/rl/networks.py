"""DDPG actor and critic networks (Lillicrap et al. 2015; GIL reference layout).

The GIL reference (``gaoqitong/gradient-importance-learning``, ``qnetwork.py``) uses

* actor: ``state -> 400 -> 300`` (BatchNorm, ReLU) ``-> action`` (sigmoid), last layer
  initialised from N(0, 1e-3);
* critic: ``state -> 400 -> 300`` and ``action -> 300`` (BatchNorm, ReLU), the two
  300-wide branches summed, ``-> 1`` with the last layer from N(0, 1e-3). The sum after
  the ReLUs makes that critic additive in state and action (see :class:`Critic`); by
  default we join before the activation as Lillicrap et al. do.

Both act on one row ``[N, F]`` (state) / ``[N, d]`` (action): the row-wise folding of GIL
observations happens in :mod:`gapray.rl.rowwise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

ACTOR_OUTPUTS = ("tanh", "sigmoid")


def _block(in_dim: int, out_dim: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_dim))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _init_last(layer: nn.Linear, std: float | None) -> None:
    """Initialise the output layer from N(0, std) with a zero bias (reference: std 1e-3)."""
    if std is not None:
        nn.init.normal_(layer.weight, 0.0, std)
        nn.init.zeros_(layer.bias)


class Actor(nn.Module):
    """Deterministic policy ``mu(s)`` mapping a state row to an action inside ``[low, high]``.

    ``output="tanh"`` rescales ``tanh`` to the bounds, ``output="sigmoid"`` rescales the
    sigmoid (the GIL reference: bounds ``[0, 1]``, so the plain sigmoid).
    """

    low: torch.Tensor  # buffers registered in __init__
    high: torch.Tensor

    def __init__(self, state_dim: int, action_dim: int, hiddens: Sequence[int], *, batch_norm: bool,
                 output: str, low: torch.Tensor, high: torch.Tensor, last_init_std: float | None) -> None:
        super().__init__()
        if output not in ACTOR_OUTPUTS:
            raise ValueError(f"actor output must be one of {ACTOR_OUTPUTS}, got {output!r}")
        dims = [state_dim, *hiddens]
        self.body = nn.Sequential(*[_block(a, b, batch_norm) for a, b in zip(dims[:-1], dims[1:])])
        self.out = nn.Linear(dims[-1], action_dim)
        _init_last(self.out, last_init_std)
        self.output = output
        self.register_buffer("low", low.clone().float(), persistent=False)
        self.register_buffer("high", high.clone().float(), persistent=False)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        z = self.out(self.body(state))
        return self._to_bounds(torch.sigmoid(z) if self.output == "sigmoid" else 0.5 * (torch.tanh(z) + 1.0))

    def _to_bounds(self, unit: torch.Tensor) -> torch.Tensor:
        return self.low + unit * (self.high - self.low)

    @torch.no_grad()
    def act(self, state: torch.Tensor) -> torch.Tensor:
        """``mu(s)`` for action selection: BatchNorm with its running statistics (Lillicrap et
        al. 2015: batch statistics in training, running averages when acting), so a row's action
        does not depend on the other rows of its batch, whatever mode the module is in.

        Each BatchNorm is folded into the linear layer before it
        (``W' = diag(gamma / sqrt(var + eps)) W``, ``b' = (b - mean) gamma / sqrt(var + eps) + beta``)
        and the activations run in place: one ``addmm`` per layer, the same values as
        ``eval()`` + ``forward`` up to float rounding, about 1.4x faster on the 6,144 rows of
        a PhysioNet GIL step."""
        h = state
        for block in self.body:
            layers = cast(nn.Sequential, block)
            linear = cast(nn.Linear, layers[0])
            weight: torch.Tensor = linear.weight
            bias: torch.Tensor = linear.bias
            norm = layers[1]
            if isinstance(norm, nn.BatchNorm1d):  # _block's: affine, with running statistics
                mean, var = cast(torch.Tensor, norm.running_mean), cast(torch.Tensor, norm.running_var)
                scale = norm.weight * torch.rsqrt(var + norm.eps)
                weight, bias = weight * scale[:, None], (bias - mean) * scale + norm.bias
            h = torch.addmm(bias, h, weight.t()).relu_()
        z = torch.addmm(self.out.bias, h, self.out.weight.t())
        return self._to_bounds(z.sigmoid_() if self.output == "sigmoid" else z.tanh_().add_(1.0).mul_(0.5))


CRITIC_JOINS = ("pre_activation", "post_activation")


class Critic(nn.Module):
    """Action value ``Q(s, a)``: the state runs through ``hiddens[:-1]``; the action joins
    the last hidden layer.

    ``join="pre_activation"`` (Lillicrap et al. 2015, default): ``h = relu(W h_s + W_a a + b)``,
    ``Q = w h``. ``join="post_activation"`` (the GIL reference's ``qnetwork.py``): both
    branches pass their own ReLU before the sum, ``Q = w relu(W h_s) + w relu(W_a a)``,
    which is additive in ``s`` and ``a``: ``dQ/da`` cannot depend on the state, so the
    actor can only learn a state-independent action. Kept for reproducing the reference.
    """

    def __init__(self, state_dim: int, action_dim: int, hiddens: Sequence[int], *, batch_norm: bool,
                 last_init_std: float | None, join: str = "pre_activation") -> None:
        super().__init__()
        if len(hiddens) < 1:
            raise ValueError("critic needs at least one hidden layer (the one the action joins)")
        if join not in CRITIC_JOINS:
            raise ValueError(f"critic join must be one of {CRITIC_JOINS}, got {join!r}")
        self.join = join
        if join == "pre_activation":
            dims = [state_dim, *hiddens[:-1]]
            self.state_body = nn.Sequential(*[_block(a, b, batch_norm) for a, b in zip(dims[:-1], dims[1:])])
            self.state_join = nn.Linear(dims[-1], hiddens[-1])
            self.action_branch: nn.Module = nn.Linear(action_dim, hiddens[-1], bias=False)
        else:
            dims = [state_dim, *hiddens]
            self.state_body = nn.Sequential(*[_block(a, b, batch_norm) for a, b in zip(dims[:-1], dims[1:])])
            self.action_branch = _block(action_dim, hiddens[-1], batch_norm)
        self.out = nn.Linear(hiddens[-1], 1)
        _init_last(self.out, last_init_std)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Returns ``[N]`` Q-values for ``state [N, F]`` and ``action [N, d]``."""
        if self.join == "pre_activation":
            hidden = torch.relu(self.state_join(self.state_body(state)) + self.action_branch(action))
        else:
            hidden = self.state_body(state) + self.action_branch(action)
        return self.out(hidden).squeeze(-1)

    def regularized_parameters(self) -> list[torch.Tensor]:
        """The tensors the reference's slim ``l2_regularizer`` covers (``qnetwork.py`` 158-170):
        the weight of every hidden linear layer (state branch, join, action branch), the bias of
        those not followed by BatchNorm (slim creates no bias before a normaliser), and the output
        layer's bias (its weight regulariser is turned off, the bias one is inherited). Never the
        BatchNorm offsets and scales."""
        tensors: list[torch.Tensor] = []
        for module in self.modules():
            if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], nn.Linear):  # a _block
                linear = cast(nn.Linear, module[0])
                tensors.append(linear.weight)
                if linear.bias is not None and not isinstance(module[1], nn.BatchNorm1d):
                    tensors.append(linear.bias)
        if self.join == "pre_activation":
            tensors += [p for p in (self.state_join.weight, self.state_join.bias) if p is not None]
            tensors.append(cast(nn.Linear, self.action_branch).weight)
        tensors.append(self.out.bias)
        return tensors

    def l2_penalty(self) -> torch.Tensor:
        """``sum(w^2) / 2`` over :meth:`regularized_parameters` (slim's ``l2_regularizer`` per tensor,
        summed as the reference's critic loss does: ``qnetwork.py`` line 137). With
        ``DDPGConfig.training(critic_l2=0.01)`` (the reference's weight) the critic's gradient on
        each of these tensors grows by ``0.01 * w``."""
        return sum((p.pow(2).sum() for p in self.regularized_parameters()), torch.zeros(())) / 2.0
