"""BRITS building blocks, one per equation of DEARI Sec. 3.1 (BRITS, Cao et al. 2018).

Every block carries a leading *direction* axis of size ``n_directions``: the forward and the
backward RITS of one BRITS layer have separate weights but run in one batched recurrence
(``torch.baddbmm`` over the direction axis). With ``n_directions=1`` a block is exactly the
single-direction block of the paper. Shapes: inputs ``[n_directions, B, ...]``.

The pure functions (``temporal_decay``, ``decay_hidden_state``, ``complement``, ...) are the
equations; the modules hold their parameters and call them. Parameter shapes per direction
match ``torch.nn.Linear`` (``[out, in]`` stored transposed as ``[in, out]`` for ``baddbmm``)
and use its default initialisation ``U(-1/sqrt(in), 1/sqrt(in))``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from gapray.imputation.bayesian import BayesianConfig, make_bayesian_cell

CellKind = Literal["lstm", "gru"]


def _uniform_(tensor: Tensor, fan_in: int) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return nn.init.uniform_(tensor, -bound, bound)


class DirectionalLinear(nn.Module):
    """``y = x W + b`` with separate ``W`` ``[in, out]`` and ``b`` per direction.

    ``forward(x)`` takes ``[n_directions, rows, in]`` (any middle axes are flattened).
    """

    def __init__(self, n_directions: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(n_directions, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_directions, 1, out_features))
        _uniform_(self.weight, in_features)
        _uniform_(self.bias, in_features)

    def effective_weight(self) -> Tensor:
        return self.weight

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], -1, shape[-1])
        out = torch.baddbmm(self.bias, flat, self.effective_weight())
        return out.reshape(*shape[:-1], self.out_features)


# --- Eq. 1, 2, 6: temporal decay ---------------------------------------------------------------
def temporal_decay(linear_delta: Tensor) -> Tensor:
    """DEARI Eq. 1 and Eq. 6 (BRITS): ``gamma = exp(-max(0, W delta + b))``, in ``(0, 1]``.

    Takes the affine term ``W delta + b`` (full ``W`` for the hidden state, Eq. 1; diagonal
    ``W`` for the input, Eq. 6).
    """
    return torch.exp(-torch.relu(linear_delta))


class TemporalDecay(nn.Module):
    """Eq. 1 (``diagonal=False``: ``gamma_h``, D -> H) and Eq. 6 (``diagonal=True``: ``gamma_x``, D -> D).

    The diagonal variant keeps a full ``[D, D]`` parameter (as BRITS and PyPOTS do, so the
    parameter count is ``D*D + D``) but only its diagonal acts.
    """

    def __init__(self, n_directions: int, input_size: int, output_size: int, diagonal: bool = False) -> None:
        super().__init__()
        if diagonal and input_size != output_size:
            raise ValueError(f"a diagonal decay needs input_size == output_size, got {input_size}, {output_size}")
        self.diagonal = diagonal
        self.linear = DirectionalLinear(n_directions, input_size, output_size)
        # BRITS reference init (caow13/BRITS TemporalDecay, also PyPOTS): U(-1/sqrt(out), 1/sqrt(out))
        _uniform_(self.linear.weight, output_size)
        _uniform_(self.linear.bias, output_size)

    def forward(self, delta: Tensor) -> Tensor:
        if self.diagonal:
            diag = torch.diagonal(self.linear.weight, dim1=-2, dim2=-1)  # [n_dir, D]
            shape = [diag.shape[0]] + [1] * (delta.dim() - 2) + [diag.shape[1]]
            affine = delta * diag.reshape(shape) + self.linear.bias.reshape(shape)
        else:
            affine = self.linear(delta)
        return temporal_decay(affine)


def decay_hidden_state(hidden: Tensor, gamma_h: Tensor) -> Tensor:
    """DEARI Eq. 2: ``h_hat_{t-1} = h_{t-1} * gamma_h``."""
    return hidden * gamma_h


# --- Eq. 3: history regression -------------------------------------------------------------------
class HistoryRegression(DirectionalLinear):
    """DEARI Eq. 3: ``x_hat_t = W_x h_hat_{t-1} + b_x`` (H -> D)."""

    def __init__(self, n_directions: int, hidden_size: int, n_features: int) -> None:
        super().__init__(n_directions, hidden_size, n_features)


# --- Eq. 4 and 9: complement -----------------------------------------------------------------------
def complement(observed: Tensor, missing: Tensor, estimate: Tensor) -> Tensor:
    """DEARI Eq. 4 / Eq. 9: ``m * x + (1 - m) * estimate``.

    ``observed`` is ``m * x`` (zero where missing) and ``missing`` is ``1 - m``; both are
    computed once per batch, so a step costs one fused multiply-add.
    """
    return torch.addcmul(observed, missing, estimate)


# --- Eq. 5: feature regression ---------------------------------------------------------------------
class FeatureRegression(DirectionalLinear):
    """DEARI Eq. 5: ``x_fc = W_z x_hc + b_z`` with ``diag(W_z) = 0``.

    Each feature is estimated from the *other* features of the same step only. The diagonal is
    zeroed at initialisation and masked in :meth:`effective_weight`, so it gets no gradient
    and stays exactly zero under Adam (with or without weight decay).
    """

    off_diagonal: Tensor

    def __init__(self, n_directions: int, n_features: int) -> None:
        super().__init__(n_directions, n_features, n_features)
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n_features), persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.off_diagonal)

    def effective_weight(self) -> Tensor:
        return self.weight * self.off_diagonal


# --- Eq. 7: combination weight ---------------------------------------------------------------------
class CombinationWeight(nn.Module):
    """DEARI Eq. 7: ``beta_t = sigmoid(W_beta [gamma_x, m_t] + b_beta)`` (2D -> D).

    The paper applies a sigmoid; the DEARI reference port omits it (``sigmoid=False`` reproduces
    that).
    """

    def __init__(self, n_directions: int, n_features: int, sigmoid: bool = True) -> None:
        super().__init__()
        self.sigmoid = sigmoid
        self.linear = DirectionalLinear(n_directions, 2 * n_features, n_features)

    def forward(self, gamma_x: Tensor, mask: Tensor) -> Tensor:
        affine = self.linear(torch.cat([gamma_x, mask], dim=-1))
        return torch.sigmoid(affine) if self.sigmoid else affine


def combine_estimates(beta: Tensor, feature_estimate: Tensor, history_estimate: Tensor) -> Tensor:
    """DEARI Eq. 8: ``x_c = beta * x_fc + (1 - beta) * x_hat`` (one ``lerp``)."""
    return torch.lerp(history_estimate, feature_estimate, beta)


# --- Eq. 10: recurrent update ----------------------------------------------------------------------
class DirectionalLSTMCell(nn.Module):
    """DEARI Eq. 10 with an LSTM: ``nn.LSTMCell`` semantics, one weight set per direction.

    ``forward(input [n_dir, B, in], (h, c) [n_dir, B, H]) -> (h, c)``; gate order i, f, g, o and
    initialisation as ``torch.nn.LSTMCell``. Parameters per direction: ``4H(in + H) + 8H``.
    """

    def __init__(self, n_directions: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(n_directions, input_size, 4 * hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(n_directions, hidden_size, 4 * hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(n_directions, 1, 4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(n_directions, 1, 4 * hidden_size))
        for p in self.parameters():
            _uniform_(p, hidden_size)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:  # noqa: A002
        h, c = hx
        gates = torch.baddbmm(torch.baddbmm(self.bias_ih + self.bias_hh, input, self.weight_ih), h, self.weight_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.addcmul(torch.sigmoid(f) * c, torch.sigmoid(i), torch.tanh(g))
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class DirectionalGRUCell(nn.Module):
    """DEARI Eq. 10 with a GRU: ``nn.GRUCell`` semantics, one weight set per direction.

    ``forward(input [n_dir, B, in], h [n_dir, B, H]) -> h``; gate order r, z, n as
    ``torch.nn.GRUCell``. Parameters per direction: ``3H(in + H) + 6H``.
    """

    def __init__(self, n_directions: int, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(n_directions, input_size, 3 * hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(n_directions, hidden_size, 3 * hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(n_directions, 1, 3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(n_directions, 1, 3 * hidden_size))
        for p in self.parameters():
            _uniform_(p, hidden_size)

    def forward(self, input: Tensor, hx: Tensor) -> Tensor:  # noqa: A002
        gi = torch.baddbmm(self.bias_ih, input, self.weight_ih)
        gh = torch.baddbmm(self.bias_hh, hx, self.weight_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(torch.addcmul(i_n, r, h_n))
        return torch.lerp(n, hx, z)  # (1 - z) * n + z * h


def make_rnn_cell(kind: str, input_size: int, hidden_size: int, n_directions: int = 2,
                  bayesian: BayesianConfig | None = None) -> nn.Module:
    """The one factory for the recurrent cell of Eq. 10 (``lstm`` or ``gru``).

    The returned module is called like ``nn.LSTMCell`` / ``nn.GRUCell`` with a leading direction
    axis: LSTM ``cell(x, (h, c)) -> (h, c)``, GRU ``cell(x, h) -> h``; ``x`` is
    ``[n_directions, B, input_size]``. With ``bayesian`` set, the cell is the Bayesian cell of
    DEARI Eqs. 22-25 (:mod:`gapray.imputation.bayesian`), same call signature and layout.
    """
    if bayesian is not None:
        return make_bayesian_cell(kind, input_size, hidden_size, bayesian, n_directions)
    if kind == "lstm":
        return DirectionalLSTMCell(n_directions, input_size, hidden_size)
    if kind == "gru":
        return DirectionalGRUCell(n_directions, input_size, hidden_size)
    raise ValueError(f"cell must be 'lstm' or 'gru', got {kind!r}")


# --- Eq. 11 and the consistency loss ---------------------------------------------------------------
def bidirectional_merge(forward_imputation: Tensor, backward_imputation: Tensor) -> Tensor:
    """DEARI Eq. 11: ``C* = (C_F + C_B^T) / 2``; ``backward_imputation`` already in forward time order."""
    return (forward_imputation + backward_imputation) * 0.5


def consistency_loss(forward_imputation: Tensor, backward_imputation: Tensor) -> Tensor:
    """BRITS consistency loss ``mean |C_F - C_B^T|`` (both in forward time order, unweighted)."""
    return (forward_imputation - backward_imputation).abs().mean()


def reconstruction_loss(estimates: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """BRITS masked-MAE reconstruction loss of one RITS direction bank, in one reduction.

    ``estimates`` ``[K, T, n_dir, B, D]`` (K estimates per step: x_hat, x_fc, x_c), ``target``
    and ``mask`` ``[T, n_dir, B, D]``. Per step and estimate the error is
    ``sum(|x - est| m) / (sum(m) + 1e-5)`` over the batch (BRITS reference); the result is
    ``sum_k mean_t`` of that, per direction ``[n_dir]``.
    """
    errors = ((estimates - target).abs() * mask).sum(dim=(-2, -1))  # [K, T, n_dir]
    counts = mask.sum(dim=(-2, -1)) + 1e-5  # [T, n_dir]
    return (errors / counts).mean(dim=1).sum(dim=0)


# --- attention read-out (DEARI Eqs. 15-19) --------------------------------------------------------
def encode_at(encoder: nn.TransformerEncoder, tokens: Tensor, position: int) -> Tensor:
    """The output of ``encoder(tokens)[:, position]`` without computing the other positions' last layer.

    All layers but the last run on the whole sequence; the last one attends from ``position``
    only (keys and values from every token) and applies its feed-forward block to that one
    token. Same result as the full encoder (up to float rounding), at about half the cost for
    a 2-layer encoder. Supports ``torch.nn.TransformerEncoderLayer`` (post- or pre-norm).
    """
    layers = list(encoder.layers)
    for layer in layers[:-1]:
        tokens = layer(tokens)
    last = layers[-1]
    index = position if position >= 0 else tokens.shape[1] + position
    query = tokens[:, index:index + 1]
    if last.norm_first:
        normed = last.norm1(tokens)
        query = query + last.dropout1(last.self_attn(normed[:, index:index + 1], normed, normed,
                                                      need_weights=False)[0])
        query = query + last.dropout2(last.linear2(last.dropout(last.activation(last.linear1(last.norm2(query))))))
    else:
        query = last.norm1(query + last.dropout1(last.self_attn(query, tokens, tokens, need_weights=False)[0]))
        query = last.norm2(query + last.dropout2(last.linear2(last.dropout(last.activation(last.linear1(query))))))
    if encoder.norm is not None:
        query = encoder.norm(query)
    return query[:, 0]
