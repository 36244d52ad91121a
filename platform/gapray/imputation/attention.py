"""The transformer encoders of DEARI (Eqs. 15-18 attention initial state, Eq. 19 ``f_SA``), and their fast path.

Both encoders are PyTorch's default ``nn.TransformerEncoderLayer(hidden, heads, feedforward)``
stacks (feed-forward 2048 and dropout 0.1 by default: the paper's parameter count pins them).
On a CPU they are most of a DEARI-3 training step: the feed-forward block over 49 tokens, and
drawing dropout masks over the ``[B, 49, 2048]`` activations (measured:
``benchmarks/deari_speed.py``). ``fast=True`` runs them

- under bfloat16 autocast (matmuls in bf16 with fp32 accumulation; layer norms, softmax, the
  residual stream's output, the recurrent network, the losses and the master weights stay fp32),
- with :class:`FastDropout`: the same inverted dropout, with masks drawn 16 bits at a time
  (4 mask entries per 64-bit random number instead of one call per entry).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

#: Resolution of :class:`FastDropout`'s drop probability: it is rounded to a multiple of 2^-16.
FAST_DROPOUT_LEVELS = 1 << 16


def fast_dropout_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """A boolean keep-mask with ``P(keep) = 1 - round(p * 2^16) / 2^16``, 16 random bits per entry.

    Draws ``ceil(n / 4)`` uniform 64-bit integers and reads each as four signed 16-bit lanes
    (uniform on ``[-2^15, 2^15)``); an entry is dropped when its lane is below the threshold.
    """
    n = 1
    for size in shape:
        n *= int(size)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:n]
    threshold = round(p * FAST_DROPOUT_LEVELS) - FAST_DROPOUT_LEVELS // 2
    return (lanes >= threshold).view(shape)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (inverted: kept entries scaled by ``1 / (1 - p)``) with :func:`fast_dropout_mask`."""

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if not self.training or self.p == 0.0:
            return input
        keep = 1.0 - round(self.p * FAST_DROPOUT_LEVELS) / FAST_DROPOUT_LEVELS
        mask = fast_dropout_mask(input.shape, self.p, input.device)
        return input * mask * (1.0 / keep)


def transformer_encoder(hidden_size: int, n_heads: int, feedforward: int, n_layers: int,
                        fast: bool = False) -> nn.TransformerEncoder:
    """``n_layers`` of ``nn.TransformerEncoderLayer(hidden_size, n_heads, feedforward, batch_first=True)``.

    PyTorch defaults otherwise (ReLU, dropout 0.1, post-norm): 492,044 parameters per layer for
    hidden 108, 4 heads, feed-forward 2048 (DEARI sec. 5.5). ``fast`` swaps the three dropout
    modules of each layer for :class:`FastDropout` (the attention-weight dropout inside
    ``self_attn`` is small and stays PyTorch's).
    """
    layer = nn.TransformerEncoderLayer(hidden_size, n_heads, feedforward, batch_first=True)
    encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
    if fast:
        for block in encoder.layers:
            for name in ("dropout", "dropout1", "dropout2"):
                setattr(block, name, FastDropout(getattr(block, name).p))
    return encoder


@contextlib.contextmanager
def attention_precision(fast: bool, device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on ``device`` when ``fast`` (CPU or CUDA), else nothing."""
    if not fast:
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield
