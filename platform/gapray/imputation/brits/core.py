"""The BRITS module and its loss (DEARI Sec. 3.1; Cao et al. 2018).

:class:`BidirectionalLayer` is one BRITS layer (a forward and a backward RITS in one batched
recurrence, Eq. 11 merge, consistency). DEARI stacks these layers. :func:`layer_loss` is the
single place where a layer's training loss is assembled; :func:`total_loss` combines the
layers and the extra terms (deep metric learning, and KL for Bayesian cells).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from gapray.imputation.bayesian import bayesian_config, kl_divergence, repeat_for_samples
from gapray.imputation.config import BRITSConfig
from gapray.imputation.dml import MetricLearningLoss
from gapray.imputation.layers import bidirectional_merge, consistency_loss
from gapray.imputation.rits import RITS, RITSOutput


@dataclass
class Batch:
    """Model inputs of one mini-batch, prepared once per dataset (see ``training.PreparedData``).

    values: ``[B, T, D]`` with 0 where missing. mask: ``[B, T, D]``.
    deltas: ``[2, B, T, D]``: forward deltas, and backward deltas in reversed time order.
    n_samples: the rows are this many sample-major copies of one batch, one per Bayesian weight
    sample (see :meth:`repeat` and :func:`gapray.imputation.bayesian.sampled_weights`).
    records: the batch before :meth:`repeat` (None if not repeated): its inputs-only terms are
    computed once and shared by the copies at inference (see :meth:`recurrence_inputs`).
    """

    values: Tensor
    mask: Tensor
    deltas: Tensor
    n_samples: int = 1
    records: Batch | None = None

    @cached_property
    def directional_mask(self) -> Tensor:
        """``[2, B, T, D]``: the mask, and the mask in reversed time order."""
        return torch.stack([self.mask, self.mask.flip(1)])

    def repeat(self, n_samples: int) -> Batch:
        """The batch repeated ``n_samples`` times, sample-major, for batched Monte Carlo passes."""
        return Batch(values=repeat_for_samples(self.values, n_samples), mask=repeat_for_samples(self.mask, n_samples),
                     deltas=self.deltas.repeat(1, n_samples, 1, 1), n_samples=self.n_samples * n_samples,
                     records=self)

    def recurrence_inputs(self, values: Tensor) -> tuple[Tensor, Tensor, Tensor, int]:
        """``(values, directional_mask, deltas, repeats)`` for :class:`~gapray.imputation.rits.RITS`.

        Without autograd (inference) a repeated batch hands over its records once with
        ``repeats = n_samples`` (and its own ``values`` per record too), so decay, combination
        weights, masks and ``m * x`` are computed per record, not per weight sample. With autograd
        every copy keeps its own graph (training gradients are exactly those of the repeated batch).
        """
        if self.records is not None and not torch.is_grad_enabled():
            repeats = self.n_samples // self.records.n_samples
            if values is self.values:
                values = self.records.values
            return values, self.records.directional_mask, self.records.deltas, repeats
        return values, self.directional_mask, self.deltas, 1


class LayerOutput:
    """One bidirectional layer: merged imputation ``[B, T, D]`` (Eq. 11), hidden states ``[2, B, T, H]``
    (backward in reversed time), reconstruction loss (both directions summed) and consistency.

    Hidden states and the loss terms are computed on first access (inference reads none of them).
    """

    def __init__(self, rits: RITSOutput, combined_only: bool = False) -> None:
        self._rits = rits
        self._combined_only = combined_only
        self._forward, self._backward = rits.imputation[0], rits.imputation[1].flip(1)
        self.imputation = bidirectional_merge(self._forward, self._backward)

    @property
    def hidden_states(self) -> Tensor:
        return self._rits.hidden_states

    @cached_property
    def reconstruction(self) -> Tensor:
        return (self._rits.combined_loss if self._combined_only else self._rits.loss).sum()

    @cached_property
    def consistency(self) -> Tensor:
        return consistency_loss(self._forward, self._backward)


@dataclass
class CoreOutput:
    """Forward pass of BRITS or DEARI: final imputation ``[B, T, D]``, training loss and its terms."""

    imputation: Tensor
    loss: Tensor
    terms: dict[str, Tensor]
    layers: list[LayerOutput]


class BidirectionalLayer(nn.Module):
    """A forward and a backward RITS sharing one recurrence; the backward one reads reversed time."""

    def __init__(self, n_features: int, config: BRITSConfig) -> None:
        super().__init__()
        self.rits = RITS(n_features, config.hidden_size, config.cell, n_directions=2,
                         combination_sigmoid=config.combination_sigmoid,
                         bayesian=bayesian_config(config) if config.bayesian else None)
        self.combined_only = config.reconstruction_terms == "combined"
        self.compile_recurrence = config.compile_recurrence
        self._compiled_rits: Callable[..., RITSOutput] | None = None  # built on first training call

    def forward(self, values: Tensor, batch: Batch, initial_hidden: Tensor | None = None) -> LayerOutput:
        values, mask, deltas, repeats = batch.recurrence_inputs(values)
        both = torch.stack([values, values.flip(1)])
        return LayerOutput(self.recurrence()(both, mask, deltas, initial_hidden, repeats), self.combined_only)

    def recurrence(self) -> Callable[..., RITSOutput]:
        """The RITS recurrence to call: compiled for training steps when ``compile_recurrence``."""
        if not (self.compile_recurrence and torch.is_grad_enabled()):
            return self.rits
        if self._compiled_rits is None:
            if next(self.rits.parameters()).device.type == "cpu" and not cpp_compiler_available():
                raise RuntimeError("compile_recurrence=True needs a C++ compiler for torch.compile on a CPU "
                                   "(none of $CXX, g++, c++, clang++ found): install one, or set "
                                   "compile_recurrence=False")
            self._compiled_rits = torch.compile(self.rits.forward)
        return self._compiled_rits

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Ray, ``copy.deepcopy``) without the compiled function; it is rebuilt on use."""
        state = super().__getstate__()
        state["_compiled_rits"] = None
        return state


def cpp_compiler_available() -> bool:
    """Whether inductor's CPU backend can find a C++ compiler (``$CXX``, ``g++``, ``c++``, ``clang++``)."""
    candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return any(shutil.which(name) for name in candidates if name)


def layer_loss(output: LayerOutput, config: BRITSConfig) -> Tensor:
    """Training loss of one bidirectional layer: ``w_imp * (L_F + L_B) + w_cons * consistency``."""
    return config.imputation_weight * output.reconstruction + config.consistency_weight * output.consistency


def total_loss(layers: list[LayerOutput], config: BRITSConfig,
               extra: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean of the layer losses (DEARI footnote 3) plus weighted extra terms; returns (loss, terms).

    ``extra`` maps a term name to an already weighted scalar (``dml``, ``kl``, ...).
    """
    per_layer = torch.stack([layer_loss(layer, config) for layer in layers])
    terms = {"imputation": per_layer.mean()}
    terms.update(extra or {})
    return torch.stack(list(terms.values())).sum(), terms


def metric_learning_term(head: MetricLearningLoss | None, layers: list[LayerOutput],
                         config: BRITSConfig, n_samples: int = 1) -> dict[str, Tensor]:
    """The weighted DML loss of Sec. 4.2 with all layers squeezed into one pair (empty if DML is off).

    With ``n_samples`` Monte Carlo copies in the batch, triplets are mined within each copy
    (another copy of the same record is no negative) and the losses averaged.
    """
    if head is None:
        return {}
    hidden = torch.stack([layer.hidden_states for layer in layers]).mean(dim=0)  # [2, B, T, H]
    chunks = zip(hidden[0].chunk(n_samples), hidden[1].chunk(n_samples))
    return {"dml": config.dml_weight * torch.stack([head(f, b) for f, b in chunks]).mean()}


def kl_term(core: nn.Module, coefficient: float) -> dict[str, Tensor]:
    """Bayes by Backprop's complexity term ``coefficient * KL(q || prior)`` (DEARI Eq. 26);
    empty when ``coefficient`` is 0 (frozen steps, deterministic models)."""
    if coefficient == 0.0:
        return {}
    return {"kl": coefficient * kl_divergence(core)}


def make_metric_learning_head(config: BRITSConfig) -> MetricLearningLoss | None:
    if not config.dml:
        return None
    return MetricLearningLoss(config.hidden_size, pooling=config.dml_pooling, margin=config.dml_margin,
                              alpha=config.dml_alpha, beta=config.dml_beta, base=config.dml_base,
                              attention_layers=config.dml_attention_layers,
                              attention_heads=config.dml_attention_heads,
                              attention_feedforward=config.attention_feedforward,
                              fast=config.fast_attention)


class BRITSCore(nn.Module):
    """BRITS: one :class:`BidirectionalLayer` from ``h_0 = 0``, plus the optional DML head."""

    def __init__(self, n_features: int, config: BRITSConfig) -> None:
        super().__init__()
        self.config = config
        self.layer = BidirectionalLayer(n_features, config)
        self.metric_learning = make_metric_learning_head(config)

    def forward(self, batch: Batch, with_loss: bool = True, kl_coefficient: float = 0.0) -> CoreOutput:
        out = self.layer(batch.values, batch)
        if not with_loss:
            return CoreOutput(out.imputation, out.imputation.new_zeros(()), {}, [out])
        extra = metric_learning_term(self.metric_learning, [out], self.config, batch.n_samples)
        loss, terms = total_loss([out], self.config, {**extra, **kl_term(self, kl_coefficient)})
        return CoreOutput(out.imputation, loss, terms, [out])
