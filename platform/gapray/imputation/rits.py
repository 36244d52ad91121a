"""RITS: the recurrent imputation of one direction (DEARI Sec. 3.1, Eqs. 1-10).

:class:`RITS` is a bank of ``n_directions`` independent RITS with their own weights, run in one
recurrence: BRITS uses ``n_directions=2`` (forward, and backward on the time-reversed series),
so both directions cost one set of batched kernels per step. Everything that does not depend
on the hidden state (Eq. 1, Eq. 6, Eq. 7, ``m*x``, ``1-m``) is computed for all steps before
the loop; the loop does Eqs. 2-5, 8-10 only, and the loss is one reduction afterwards, run only
when it is read (inference skips it). For batched Monte Carlo the recurrence runs over ``K``
copies of the batch while those input-only terms are computed once per record.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

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


class RITSOutput:
    """Outputs of a RITS bank, each with a leading direction axis, in each direction's time order.

    imputation: ``C_t`` (Eq. 9) ``[n_dir, B, T, D]``.
    reconstruction: ``x_c`` (Eq. 8) ``[n_dir, B, T, D]``.
    hidden_states: ``h_1..h_T`` after each update (Eq. 10) ``[n_dir, B, T, H]``.
    loss: masked reconstruction loss per direction ``[n_dir]`` (see ``layers.reconstruction_loss``).

    Only ``imputation`` is assembled eagerly; the others are stacked from the per-step tensors
    on first access, so inference (which reads the imputation only) never pays for the loss.
    The arithmetic is the same whenever it runs, so training values and gradients do not change.
    Built from the per-step lists of the recurrence and ``target``, which returns the loss's
    time-major ``(x, m)`` ``[T, n_dir, B, D]``.
    """

    def __init__(self, imputed: list[Tensor], hiddens: list[Tensor], history: list[Tensor],
                 feature: list[Tensor], combined: list[Tensor], target: Callable[[], tuple[Tensor, Tensor]]) -> None:
        self.imputation = _batch_major(imputed)
        self._hiddens, self._history, self._feature, self._combined = hiddens, history, feature, combined
        self._target = target

    @cached_property
    def hidden_states(self) -> Tensor:
        return _batch_major(self._hiddens)

    @cached_property
    def estimates(self) -> Tensor:
        """``x_hat``, ``x_fc``, ``x_c`` (Eqs. 3, 5, 8) time-major: ``[3, T, n_dir, B, D]``."""
        return torch.stack([torch.stack(self._history), torch.stack(self._feature), torch.stack(self._combined)])

    @cached_property
    def reconstruction(self) -> Tensor:
        return self.estimates[2].permute(1, 2, 0, 3)

    @cached_property
    def loss(self) -> Tensor:
        return reconstruction_loss(self.estimates, *self._target())

    @cached_property
    def combined_loss(self) -> Tensor:
        """:attr:`loss` of the combined estimate ``x_c`` (Eq. 8) alone ``[n_dir]``."""
        return reconstruction_loss(torch.stack(self._combined)[None], *self._target())


def _batch_major(steps: list[Tensor]) -> Tensor:
    return torch.stack(steps, dim=2)  # [n_dir, B, T, *]


def _time_major(t: Tensor, repeats: int = 1) -> Tensor:
    """``[n_dir, B, T, X] -> [T, n_dir, repeats * B, X]``, contiguous, copies sample-major."""
    t = t.permute(2, 0, 1, 3)
    return t.repeat(1, 1, repeats, 1) if repeats > 1 else t.contiguous()


def _repeat_rows(t: Tensor, repeats: int) -> Tensor:
    """Time-major ``[T, n_dir, B, X] -> [T, n_dir, repeats * B, X]``, copies sample-major."""
    return t.repeat(1, 1, repeats, 1) if repeats > 1 else t


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

    def forward(self, values: Tensor, mask: Tensor, deltas: Tensor, initial_hidden: Tensor | None = None,
                repeats: int = 1) -> RITSOutput:
        """Run the recurrence.

        Args:
            values: ``[n_dir, B, T, D]`` with missing entries set to 0 (only ``m * x`` is used),
                or already ``[n_dir, repeats * B, T, D]``.
            mask: ``[n_dir, B, T, D]`` observation mask.
            deltas: ``[n_dir, B, T, D]`` time gaps (each direction's own).
            initial_hidden: ``h_0`` ``[n_dir, repeats * B, H]``; zeros when None (DEARI footnote 2).
            repeats: run the recurrence over this many sample-major copies of the ``B`` records
                (batched Monte Carlo: one copy per Bayesian weight sample). What depends on the
                inputs only (Eqs. 1, 6, 7, ``m``, ``1-m``, and ``m*x`` when ``values`` has ``B``
                rows) is computed once per record and then repeated; outputs have
                ``repeats * B`` rows.
        """
        n_dir, records, n_steps, _ = mask.shape
        batch = repeats * records
        if values.shape[1] not in (records, batch) or deltas.shape[1] != records:
            raise ValueError(f"RITS: values {tuple(values.shape)}, mask {tuple(mask.shape)} and deltas "
                             f"{tuple(deltas.shape)} do not describe {repeats} copies of {records} records")
        gamma_h = self.temporal_decay_h(deltas)  # Eq. 1, all steps
        gamma_x = self.temporal_decay_x(deltas)  # Eq. 6
        beta = self.combination_weight(gamma_x, mask)  # Eq. 7

        m_records = _time_major(mask)
        m_tm = _repeat_rows(m_records, repeats)
        x_tm = _time_major(values)
        # m * x: per copy when the values differ between copies (DEARI layers > 1), else per record
        observed = x_tm * m_tm if x_tm.shape[2] == batch else _repeat_rows(x_tm * m_records, repeats)
        missing = 1.0 - m_tm
        gamma_h_steps = _time_major(gamma_h, repeats).unbind(0)
        beta_steps = _time_major(beta, repeats).unbind(0)
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

        def target() -> tuple[Tensor, Tensor]:
            return (x_tm if x_tm.shape[2] == batch else _repeat_rows(x_tm, repeats)), m_tm

        return RITSOutput(imputed, hiddens, history, feature, combined, target)
