"""Imputation-free predictors of GIL: an MLP (paper Eq. 1) and an LSTM (Appendix A, Eq. 6-7).

Both split into an *encoder* whose weight ``W_enc`` receives importance-weighted gradients
(:mod:`gapray.gil.importance`) and *inference layers* trained by plain back-propagation:

* MLP: ``W_enc`` = the first layer's weight; ``zeta`` = its ReLU output.
* LSTM: ``W_enc`` = the input weights of the four gates ``W_i, W_f, W_g, W_o`` (one
  ``[4H, d]`` matrix, PyTorch gate order); the recurrent weights ``U`` and all biases train
  normally; ``zeta`` = the hidden state ``h_t`` per step (paper Sec. 2.3); the logits come from
  the last valid step of each sequence (variable lengths through ``lengths``).

Missing entries must be replaced by a placeholder before the forward pass
(:func:`resolve_placeholder`); the predictors never see NaN.

Reference options of the MLP (``gaoqitong/gradient-importance-learning`` at e086d4c,
``tabular_data/tabular_mlp_GIL_train.py`` 128-136; ``docs/gil_reproduction.md``):
``batch_norm=True`` (slim's ``batch_norm`` after every hidden linear layer: centred, not scaled,
decay 0.999, eps 1e-3; the linear layers before it have no bias) and ``init="reference"``
(every weight from U(0.001, 0.01), biases 0). The defaults are PyTorch's plain layers.
:meth:`MLPPredictor.regularized_parameters` / :meth:`LSTMPredictor.regularized_parameters` name
the tensors the reference's L2 regulariser covers (used by
:class:`gapray.gil.training.PredictorSession`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import NamedTuple, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gapray.gil.importance import split_forward_input, split_forward_weight


class PredictorOutput(NamedTuple):
    """What one forward pass yields.

    Attributes:
        logits: ``[B, C]`` class scores.
        zeta: encoder output per observation row: ``[B, e]`` (MLP) or ``[B, T, H]`` (LSTM).
        features: one feature vector per sample, ``[B, e]`` or the last valid ``h`` ``[B, H]``
            (used by GIL-D's distributional difference, Eq. 43).
    """

    logits: torch.Tensor
    zeta: torch.Tensor
    features: torch.Tensor


MLP_INITS = ("default", "reference")
REFERENCE_INIT_RANGE = (0.001, 0.01)
"""The reference's ``tf.random_uniform_initializer(0.001, 0.01)`` of every MLP weight."""


class SlimBatchNorm(nn.Module):
    """TF-slim's default ``batch_norm`` on ``[B, e]``: normalise with the batch statistics in
    training (running averages with decay 0.999 in eval mode), add a learned offset ``beta``,
    no learned scale (slim's ``scale=False``), ``eps = 1e-3``. The reference MLP's normaliser."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(width, eps=1e-3, momentum=1e-3, affine=False)
        self.beta = nn.Parameter(torch.zeros(width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h) + self.beta


class MLPPredictor(nn.Module):
    """``y = phi_out(W_out phi_k(... phi_1(W_1 x)))`` (GIL Eq. 1) with ``W_enc = W_1``.

    Args:
        n_features: input dimension ``d``.
        n_classes: number of classes ``C``.
        hidden_sizes: widths of the hidden layers (paper: 1000-1000 tabular, 500-500 MNIST);
            the first one is the encoder.
        batch_norm: :class:`SlimBatchNorm` between each hidden linear layer and its ReLU, the
            linear layer then without bias (reference: True; default False).
        init: ``"default"`` (PyTorch's) or ``"reference"`` (every weight from U(0.001, 0.01),
            every bias 0).
    """

    kind = "mlp"

    def __init__(self, n_features: int, n_classes: int, hidden_sizes: tuple[int, ...] = (500, 500),
                 batch_norm: bool = False, init: str = "default") -> None:
        super().__init__()
        if not hidden_sizes:
            raise ValueError("the MLP needs at least one hidden layer (the encoder)")
        if init not in MLP_INITS:
            raise ValueError(f"MLP init must be one of {MLP_INITS}, got {init!r}")
        self.n_features, self.n_classes, self.batch_norm = n_features, n_classes, batch_norm
        widths = list(hidden_sizes)
        self.encoder = nn.Linear(n_features, widths[0], bias=not batch_norm)
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=not batch_norm) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(SlimBatchNorm(w) if batch_norm else nn.Identity() for w in widths)
        self.output = nn.Linear(widths[-1], n_classes)
        if init == "reference":
            with torch.no_grad():
                for layer in (self.encoder, *self.hidden, self.output):
                    layer.weight.uniform_(*REFERENCE_INIT_RANGE)
                    if layer.bias is not None:
                        layer.bias.zero_()

    @property
    def encoder_weight(self) -> torch.Tensor:
        return self.encoder.weight

    def regularized_parameters(self) -> list[torch.Tensor]:
        """The tensors the reference's ``slim.l2_regularizer`` covers: every hidden weight (and
        hidden bias, when there is one, i.e. without BatchNorm) and the output layer's bias (the
        logits layer turns the weight regulariser off, not the bias one); the encoder weight first."""
        layers = [self.encoder, *(cast(nn.Linear, layer) for layer in self.hidden)]
        tensors: list[torch.Tensor] = [layer.weight for layer in layers]
        tensors += [layer.bias for layer in layers if layer.bias is not None]
        return [*tensors, self.output.bias]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                importance: torch.Tensor | None = None) -> PredictorOutput:
        """``x`` ``[B, d]`` (placeholder-filled); ``importance`` ``[B, d]`` switches on Eq. 4."""
        if importance is None:
            pre = self.encoder(x)
        else:
            pre = F.linear(split_forward_input(x, importance), split_forward_weight(self.encoder.weight),
                           self.encoder.bias)
        zeta = torch.relu(self.norms[0](pre))
        return PredictorOutput(self.step_logits(zeta), zeta, zeta)

    def step_logits(self, zeta: torch.Tensor) -> torch.Tensor:
        """Logits per observation row from ``zeta`` (for the MLP: one row per sample)."""
        h = zeta
        for layer, norm in zip(self.hidden, self.norms[1:]):
            h = torch.relu(norm(layer(h)))
        return self.output(h)


class LSTMPredictor(nn.Module):
    """One LSTM layer (Appendix A Eq. 6) and a dense output layer on the last valid ``h_t`` (Eq. 7).

    The LSTM runs through ``torch.lstm`` (the fused kernel behind ``nn.LSTM``) with our own
    parameters so the encoder weight can be split per Eq. 4 without leaving the kernel.

    Args:
        n_features: input dimension ``d`` per step.
        n_classes: number of classes ``C``.
        hidden_size: ``H`` (paper: 1024).
    """

    kind = "lstm"

    def __init__(self, n_features: int, n_classes: int, hidden_size: int = 1024) -> None:
        super().__init__()
        self.n_features, self.n_classes, self.hidden_size = n_features, n_classes, hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, n_features).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))
        self.output = nn.Linear(hidden_size, n_classes)

    @property
    def encoder_weight(self) -> torch.Tensor:
        return self.weight_ih

    def regularized_parameters(self) -> list[torch.Tensor]:
        """The tensors the reference's L2 regulariser covers: only the output layer's bias
        (``seq_lstm_GIL_train.py`` 196-206: the logits layer turns the weight regulariser off, and
        the LSTM cell has none)."""
        return [self.output.bias]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                importance: torch.Tensor | None = None) -> PredictorOutput:
        """``x`` ``[B, T, d]`` (placeholder-filled), ``lengths`` ``[B]`` (default ``T``);
        ``importance`` ``[B, T, d]`` switches on Eq. 4 (inputs ``[x*a, x*(1-a)]``, weights
        ``[W, W.detach()]``)."""
        batch, steps, _ = x.shape
        weight_ih: torch.Tensor
        if importance is None:
            inputs, weight_ih = x, self.weight_ih
        else:
            inputs, weight_ih = split_forward_input(x, importance), split_forward_weight(self.weight_ih)
        h0 = x.new_zeros(1, batch, self.hidden_size)
        # time-major, so that a DeferredImportance buffer is used (and saved) without a copy
        outputs, _, _ = torch.lstm(inputs.transpose(0, 1), (h0, h0),
                                   [weight_ih, self.weight_hh, self.bias_ih, self.bias_hh],
                                   True, 1, 0.0, self.training, False, False)
        outputs = outputs.transpose(0, 1)
        if lengths is None:
            last = outputs[:, -1]
        else:
            last = outputs[torch.arange(batch, device=x.device), lengths.to(x.device).long() - 1]
        return PredictorOutput(self.output(last), outputs, last)

    def step_logits(self, zeta: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[B, T, C]`` from the hidden states (Eq. 7 at every ``t``)."""
        return self.output(zeta)


Predictor = MLPPredictor | LSTMPredictor


def build_predictor(kind: str, n_features: int, n_classes: int, hidden_sizes: tuple[int, ...] = (500, 500),
                    lstm_hidden_size: int = 1024, *, mlp_batch_norm: bool = False,
                    mlp_init: str = "default") -> Predictor:
    """An :class:`MLPPredictor` (``kind="mlp"``, with ``mlp_batch_norm`` / ``mlp_init``) or
    :class:`LSTMPredictor` (``kind="lstm"``)."""
    if kind == "mlp":
        return MLPPredictor(n_features, n_classes, tuple(hidden_sizes), batch_norm=mlp_batch_norm, init=mlp_init)
    if kind == "lstm":
        return LSTMPredictor(n_features, n_classes, lstm_hidden_size)
    raise ValueError(f"unknown predictor kind {kind!r}: expected 'mlp' or 'lstm'")


@contextlib.contextmanager
def frozen_batch_statistics(module: nn.Module) -> Iterator[None]:
    """Inside, BatchNorm layers in training mode still normalise with the batch's statistics
    but leave their running averages unchanged (momentum 0): for extra forward passes, such
    as the reward's loss after an update, that are not training steps."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` inside (BatchNorm with its running averages), the previous mode after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def resolve_placeholder(spec: str | float, kind: str, observed_train_values: np.ndarray) -> float:
    """The value that replaces missing entries before the forward pass (GIL Appendix D).

    ``spec``: a number; ``"zero"``; ``"3max"`` (3 x the largest observed training value, the
    reference LSTM choice); or ``"auto"`` = the reference default per predictor (0 for the
    MLP, ``3max`` for the LSTM).
    """
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        if not math.isfinite(float(spec)):
            raise ValueError(f"placeholder must be finite, got {spec}")
        return float(spec)
    if spec == "auto":
        spec = "zero" if kind == "mlp" else "3max"
    if spec == "zero":
        return 0.0
    if spec == "3max":
        finite = observed_train_values[np.isfinite(observed_train_values)]
        return 3.0 * float(finite.max()) if finite.size else 0.0
    raise ValueError(f"unknown placeholder {spec!r}: expected a number, 'zero', '3max' or 'auto'")
