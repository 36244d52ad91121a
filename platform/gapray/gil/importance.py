"""The importance-weighted encoder update of GIL (paper Eq. 3-4, Appendix A).

GIL replaces the encoder weight gradient ``sum_i Delta_i x_i^T / B`` of plain back-propagation
by ``sum_i Delta_i (x_i * a_i)^T / B`` (per sample ``i``; for the LSTM per sample and step),
where ``a_i in [0, 1]^d`` is the importance. Every other weight, and all biases, keep their
plain gradients. No per-sample gradient is ever materialised:

* :func:`split_forward_input` / :func:`split_forward_weight` give the *split forward*
  ``(x*a) W^T + (x*(1-a)) W.detach()^T``: its value is ``x W^T`` and its gradient w.r.t. ``W``
  is the importance-weighted one. Concatenating ``[x*a, x*(1-a)]`` with ``[W, W.detach()]``
  keeps one matrix product, so ``nn.LSTM``-style fused kernels (cuDNN) still apply.
* :class:`DeferredImportance` serves the RL loop, where the importance is only known *after*
  the forward pass that produced the observation: that same forward is reused for training.
  Autograd keeps the encoder input by reference for the weight gradient only (the forward
  *values* do not depend on ``a``), so scaling the input's storage by ``a`` before
  ``backward()`` yields exactly the gradient of the split forward. Both paths are tested
  against explicit per-sample gradients (``torch.func.vmap(grad)``).
"""

from __future__ import annotations

import torch


def split_forward_input(x: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    """``[x * a, x * (1 - a)]`` along the last axis (GIL Eq. 4, split forward)."""
    if importance.shape != x.shape:
        raise ValueError(f"importance has shape {tuple(importance.shape)}, the input {tuple(x.shape)}")
    return torch.cat([x * importance, x * (1.0 - importance)], dim=-1)


def split_forward_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[W, W.detach()]`` along the input axis: only the first half receives gradient (Eq. 4)."""
    return torch.cat([weight, weight.detach()], dim=1)


class DeferredImportance:
    """An encoder input whose importance (GIL Eq. 4) is applied after the forward pass.

    Usage: run the predictor on :attr:`input` (a private contiguous copy of ``x``), read its
    outputs (e.g. to build an RL observation), then call :meth:`apply` with the importance
    and only then ``loss.backward()``. The encoder weight gradient becomes
    ``sum_i Delta_i (x_i * a_i)^T / B``; nothing else changes, because ``x`` enters the
    forward only through ``x W^T`` and the weight gradient is the only consumer of the saved
    input. The rescaling goes through ``.data`` so autograd's version check, which guards
    against changes of *values* the backward relies on, is not triggered: here the changed
    values are exactly the ones the weight gradient should see.


    Sequences ``[B, T, d]`` are stored time-major (``input`` is a batch-first *view* of a
    contiguous ``[T, B, d]`` buffer): the LSTM kernel runs time-major, so it saves this very
    buffer instead of a transposed copy (checked on CPU by ``tests/gil/test_importance.py``).
    """

    def __init__(self, x: torch.Tensor) -> None:
        x = x.detach()
        if x.dim() == 3:
            self._storage = x.transpose(0, 1).contiguous()
            self.input = self._storage.transpose(0, 1)
        else:
            self._storage = x.clone(memory_format=torch.contiguous_format)
            self.input = self._storage
        self._applied = False

    def apply(self, importance: torch.Tensor) -> None:
        """Scale the saved encoder input by ``importance`` (same shape as the input), once."""
        if self._applied:
            raise RuntimeError("the importance of this forward pass was already applied")
        if importance.shape != self.input.shape:
            raise ValueError(f"importance has shape {tuple(importance.shape)}, the input {tuple(self.input.shape)}")
        if self._storage is not self.input:
            importance = importance.transpose(0, 1)
        self._storage.data.mul_(importance.to(self._storage.dtype))
        self._applied = True
