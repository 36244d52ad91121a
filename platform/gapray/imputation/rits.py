"""RITS: the recurrent imputation of one direction (DEARI Sec. 3.1, Eqs. 1-10).

:class:`RITS` is a bank of ``n_directions`` independent RITS with their own weights, run in one
recurrence: BRITS uses ``n_directions=2`` (forward, and backward on the time-reversed series),
so both directions cost one set of batched kernels per step. Everything that does not depend
on the hidden state (Eq. 1, Eq. 6, Eq. 7, ``m*x``, ``1-m``) is computed for all steps before
the loop; the loop does Eqs. 2-5, 8-10 only, and the loss is one reduction afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gapray.imputation.bayesian import BayesianConfig
from gapray.imputation.layers import (
    CombinationWeight,
    FeatureRegression,
    HistoryRegression,
    TemporalDecay,
    combine_estimates,
    complement,
    decay_hidden_state,
    make_rnn_cell,
    reconstruction_loss,
)


@dataclass
class RITSOutput:
    """Outputs of a RITS bank, each with a leading direction axis, in each direction's time order.

    imputation: ``C_t`` (Eq. 9) ``[n_dir, B, T, D]``.
    reconstruction: ``x_c`` (Eq. 8) ``[n_dir, B, T, D]``.
    hidden_states: ``h_1..h_T`` after each update (Eq. 10) ``[n_dir, B, T, H]``.
    loss: masked reconstruction loss per direction ``[n_dir]`` (see ``layers.reconstruction_loss``).
    """

    imputation: Tensor
    reconstruction: Tensor
    hidden_states: Tensor
    loss: Tensor


class RITS(nn.Module):
    """A bank of RITS directions (one RITS when ``n_directions=1``).

    Parameters per direction with D features, hidden H and an LSTM cell: temporal decay
    ``D*H + H``, input decay ``D*D + D``, history regression ``H*D + D``, feature regression
    ``D*D + D``, combination weight ``2D*D + D``, ``LSTMCell(2D, H)``; 90,468 for D=35, H=108.
    """

    def __init__(self, n_features: int, hidden_size: int, cell: str = "lstm", n_directions: int = 2,
                 combination_sigmoid: bool = True, bayesian: BayesianConfig | None = None) -> None:
        super().__init__()
        self.n_features, self.hidden_size, self.cell_kind = n_features, hidden_size, cell
        self.n_directions = n_directions
        self.temporal_decay_h = TemporalDecay(n_directions, n_features, hidden_size, diagonal=False)
        self.temporal_decay_x = TemporalDecay(n_directions, n_features, n_features, diagonal=True)
        self.history_regression = HistoryRegression(n_directions, hidden_size, n_features)
        self.feature_regression = FeatureRegression(n_directions, n_features)
        self.combination_weight = CombinationWeight(n_directions, n_features, sigmoid=combination_sigmoid)
        self.cell = make_rnn_cell(cell, 2 * n_features, hidden_size, n_directions, bayesian)  # Eq. 10 / 25

    def forward(self, values: Tensor, mask: Tensor, deltas: Tensor, initial_hidden: Tensor | None = None) -> RITSOutput:
        """Run the recurrence.

        Args:
            values: ``[n_dir, B, T, D]`` with missing entries set to 0 (only ``m * x`` is used).
            mask: ``[n_dir, B, T, D]`` observation mask.
            deltas: ``[n_dir, B, T, D]`` time gaps (each direction's own).
            initial_hidden: ``h_0`` ``[n_dir, B, H]``; zeros when None (DEARI footnote 2).
        """
        n_dir, batch, n_steps, _ = values.shape
        gamma_h = self.temporal_decay_h(deltas)  # Eq. 1, all steps
        gamma_x = self.temporal_decay_x(deltas)  # Eq. 6
        beta = self.combination_weight(gamma_x, mask)  # Eq. 7

        def time_major(t: Tensor) -> Tensor:
            return t.permute(2, 0, 1, 3).contiguous()

        x_tm, m_tm = time_major(values), time_major(mask)
        observed = x_tm * m_tm
        missing = 1.0 - m_tm
        gamma_h_steps = time_major(gamma_h).unbind(0)
        beta_steps = time_major(beta).unbind(0)
        observed_steps, missing_steps, mask_steps = observed.unbind(0), missing.unbind(0), m_tm.unbind(0)

        if initial_hidden is None:
            h = values.new_zeros(n_dir, batch, self.hidden_size)
        else:
            h = initial_hidden
        c = values.new_zeros(n_dir, batch, self.hidden_size)
        is_lstm = self.cell_kind == "lstm"

        history, feature, combined, imputed, hiddens = [], [], [], [], []
        for t in range(n_steps):
            h = decay_hidden_state(h, gamma_h_steps[t])  # Eq. 2
            x_hat = self.history_regression(h)  # Eq. 3
            x_hc = complement(observed_steps[t], missing_steps[t], x_hat)  # Eq. 4
            x_fc = self.feature_regression(x_hc)  # Eq. 5
            x_c = combine_estimates(beta_steps[t], x_fc, x_hat)  # Eq. 8
            c_t = complement(observed_steps[t], missing_steps[t], x_c)  # Eq. 9
            step_input = torch.cat([c_t, mask_steps[t]], dim=-1)  # [C_t o m_t]
            if is_lstm:
                h, c = self.cell(step_input, (h, c))  # Eq. 10
            else:
                h = self.cell(step_input, h)
            history.append(x_hat)
            feature.append(x_fc)
            combined.append(x_c)
            imputed.append(c_t)
            hiddens.append(h)

        estimates = torch.stack([torch.stack(history), torch.stack(feature), torch.stack(combined)])
        loss = reconstruction_loss(estimates, x_tm, m_tm)

        def batch_major(steps: list[Tensor]) -> Tensor:
            return torch.stack(steps, dim=2)  # [n_dir, B, T, *]

        return RITSOutput(
            imputation=batch_major(imputed),
            reconstruction=estimates[2].permute(1, 2, 0, 3),
            hidden_states=batch_major(hiddens),
            loss=loss,
        )
