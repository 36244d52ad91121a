"""The DEARI module (DEARI Sec. 4.1, Eqs. 14-18): stacked BRITS layers with attention initialisation.

Layer 1 starts from ``h_0 = 0``. Layer ``l > 1`` of each direction starts from
``h_0^l = f([h_1^{l-1}, ..., h_T^{l-1}])`` (Eq. 14), computed by :func:`cls_initial_state`
(Eqs. 15-18), and reads the residual raw input ``m * x + (1 - m) * C^{l-1}``. The loss is the
mean of the layer losses and the imputation the mean of the layer imputations (reference port
``joseph-arulraj/PyPOTS@DEARI``). With ``n_layers = 1`` this is exactly :class:`BRITSCore`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gapray.imputation.attention import attention_precision, transformer_encoder
from gapray.imputation.brits.core import (
    Batch,
    BidirectionalLayer,
    CoreOutput,
    LayerOutput,
    kl_term,
    make_metric_learning_head,
    metric_learning_term,
    total_loss,
)
from gapray.imputation.config import DEARIConfig
from gapray.imputation.layers import complement, encode_at


def cls_initial_state(hidden_states: Tensor, encoder: nn.TransformerEncoder, mode: str,
                      cls_token: Tensor | None = None) -> Tensor:
    """DEARI Eqs. 15-18: ``h_0^l`` from the previous layer's hidden sequence ``[B, T, H]``.

    ``cls``: prepend the learnable token (Eq. 15), encode with the transformer encoder (MSA,
    FFN, residuals and layer norms, Eqs. 16-17) and take the token's output (Eq. 18).
    ``last`` / ``mean``: the last position / the mean of the encoded sequence (no token).
    ``cls`` and ``last`` read one position, so the encoder's last layer runs for that position
    only (:func:`~gapray.imputation.layers.encode_at`).
    """
    if mode == "cls":
        if cls_token is None:
            raise ValueError("mode 'cls' needs a cls_token")
        tokens = torch.cat([cls_token.expand(hidden_states.shape[0], -1, -1), hidden_states], dim=1)
        return encode_at(encoder, tokens, 0)
    if mode == "last":
        return encode_at(encoder, hidden_states, -1)
    if mode == "mean":
        return encoder(hidden_states).mean(dim=1)
    raise ValueError(f"attention_init must be 'cls', 'last' or 'mean', got {mode!r}")


class AttentionInitialState(nn.Module):
    """Parameters of :func:`cls_initial_state` for one direction of one layer transition.

    ``attention_layers`` ``nn.TransformerEncoderLayer(hidden, heads)`` with PyTorch defaults
    (feed-forward 2048, dropout 0.1): 492,044 parameters each for hidden 108 and 4 heads.
    ``fast``: bf16 autocast and 16-bit dropout masks (:mod:`gapray.imputation.attention`); the
    initial state is returned in the hidden states' dtype.
    """

    def __init__(self, hidden_size: int, mode: str, n_layers: int, n_heads: int, feedforward: int = 2048,
                 fast: bool = False) -> None:
        super().__init__()
        self.mode, self.fast = mode, fast
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden_size)) if mode == "cls" else None
        self.encoder = transformer_encoder(hidden_size, n_heads, feedforward, n_layers, fast=fast)

    def forward(self, hidden_states: Tensor) -> Tensor:
        with attention_precision(self.fast, hidden_states.device):
            initial = cls_initial_state(hidden_states, self.encoder, self.mode, self.cls_token)
        return initial.to(hidden_states.dtype)


class DEARICore(nn.Module):
    """``n_layers`` bidirectional RITS layers; ``initial_states[l-1]`` feeds layer ``l`` (two directions)."""

    def __init__(self, n_features: int, config: DEARIConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(BidirectionalLayer(n_features, config) for _ in range(config.n_layers))
        self.initial_states = nn.ModuleList(
            nn.ModuleList(
                AttentionInitialState(config.hidden_size, config.attention_init, config.attention_layers,
                                      config.attention_heads, config.attention_feedforward, config.fast_attention)
                for _direction in range(2)
            )
            for _ in range(config.n_layers - 1)
        )
        self.metric_learning = make_metric_learning_head(config)

    def forward(self, batch: Batch, with_loss: bool = True, kl_coefficient: float = 0.0) -> CoreOutput:
        outputs: list[LayerOutput] = []
        values, initial_hidden = batch.values, None
        observed, missing = batch.values * batch.mask, 1.0 - batch.mask
        for index, layer in enumerate(self.layers):
            if index > 0:
                previous = outputs[-1]
                # residual raw input: observed values come back, missing ones carry C^{l-1}
                values = complement(observed, missing, previous.imputation)
                attention: nn.ModuleList = self.initial_states[index - 1]  # type: ignore[assignment]
                initial_hidden = torch.stack([attention[d](previous.hidden_states[d]) for d in range(2)])
            outputs.append(layer(values, batch, initial_hidden))
        imputation = outputs[0].imputation if len(outputs) == 1 else \
            torch.stack([o.imputation for o in outputs]).mean(dim=0)
        if not with_loss:
            return CoreOutput(imputation, imputation.new_zeros(()), {}, outputs)
        extra = metric_learning_term(self.metric_learning, outputs, self.config, batch.n_samples)
        loss, terms = total_loss(outputs, self.config, {**extra, **kl_term(self, kl_coefficient)})
        return CoreOutput(imputation, loss, terms, outputs)
