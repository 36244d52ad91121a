"""The DEARI transformer encoders and their fast path (bf16 autocast, 16-bit dropout masks)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gapray.imputation import DEARIConfig
from gapray.imputation.attention import (
    FAST_DROPOUT_LEVELS,
    FastDropout,
    fast_dropout_mask,
    transformer_encoder,
)
from gapray.imputation.brits.core import Batch
from gapray.imputation.deari.core import DEARICore


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_fast_dropout_drops_each_lane_with_the_rounded_probability(p: float) -> None:
    torch.manual_seed(0)
    n = 400_000
    keep = fast_dropout_mask(torch.Size([n]), p, torch.device("cpu"))
    expected = round(p * FAST_DROPOUT_LEVELS) / FAST_DROPOUT_LEVELS
    sigma = math.sqrt(expected * (1 - expected) / (n / 4))
    # every one of the four 16-bit lanes of a 64-bit draw (a lane with a fixed sign bit would drop 0 % or 2p)
    for lane in range(4):
        assert abs((~keep[lane::4]).float().mean().item() - expected) < 5 * sigma, lane
    # and neighbouring entries are independent: drop-pairs occur at rate p^2
    pairs = (~keep[0::2] & ~keep[1::2]).float().mean().item()
    assert abs(pairs - expected**2) < 5 * math.sqrt(expected**2 / (n / 2))


def test_fast_dropout_scales_kept_entries_and_is_the_identity_in_eval_mode() -> None:
    torch.manual_seed(1)
    x = torch.rand(64, 49, 2048) + 0.5
    dropout = FastDropout(0.1)
    out = dropout(x)
    kept = out != 0
    keep_probability = 1 - round(0.1 * FAST_DROPOUT_LEVELS) / FAST_DROPOUT_LEVELS
    assert torch.allclose(out[kept], x[kept] / keep_probability)
    assert abs(kept.float().mean().item() - 0.9) < 0.002
    assert abs(out.mean().item() / x.mean().item() - 1) < 0.005  # inverted dropout keeps the mean
    dropout.eval()
    assert dropout(x) is x


def test_the_fast_encoder_has_the_paper_parameters_and_swaps_only_the_dropouts() -> None:
    torch.manual_seed(0)
    plain = transformer_encoder(108, 4, 2048, 2)
    torch.manual_seed(0)
    fast = transformer_encoder(108, 4, 2048, 2, fast=True)
    assert sum(p.numel() for p in plain.layers[0].parameters()) == 492_044  # DEARI sec. 5.5
    for a, b in zip(plain.state_dict().values(), fast.state_dict().values()):
        assert torch.equal(a, b)
    for layer in plain.layers:
        assert all(type(getattr(layer, n)) is nn.Dropout for n in ("dropout", "dropout1", "dropout2"))
    for layer in fast.layers:
        assert all(isinstance(getattr(layer, n), FastDropout) and getattr(layer, n).p == 0.1
                   for n in ("dropout", "dropout1", "dropout2"))


def _batch(seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(16, 12, 5, generator=g) < 0.6).float()
    values = torch.randn(16, 12, 5, generator=g) * mask
    return Batch(values=values, mask=mask, deltas=torch.rand(2, 16, 12, 5, generator=g) * 3)


def test_fast_deari_matches_fp32_in_eval_mode_up_to_bf16_rounding_and_trains_its_encoders() -> None:
    config = DEARIConfig(n_layers=3, hidden_size=16, attention_feedforward=64, device="cpu")
    torch.manual_seed(0)
    exact = DEARICore(5, config)
    torch.manual_seed(0)
    fast = DEARICore(5, config.replace(fast_attention=True))
    batch = _batch()
    exact.eval(), fast.eval()
    with torch.no_grad():
        a, b = exact(batch).imputation, fast(batch).imputation
    assert b.dtype == torch.float32
    difference = (a - b).abs().max().item()
    assert 0 < difference < 0.05  # bf16 changes the numbers, a little
    fast.train()
    out = fast(batch)
    out.loss.backward()
    assert out.loss.dtype == torch.float32
    grads = [p.grad for p in fast.initial_states.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.dtype == torch.float32 for g in grads)
    assert sum(g.abs().sum().item() for g in grads if g is not None) > 0


def test_fast_path_learns_as_well_as_fp32_on_a_small_problem() -> None:
    """80 Adam steps on one batch: both paths cut the loss by a similar factor."""
    config = DEARIConfig(n_layers=2, hidden_size=16, attention_feedforward=64, device="cpu", lr=5e-3)
    losses = {}
    for fast in (False, True):
        torch.manual_seed(0)
        core = DEARICore(5, config.replace(fast_attention=fast))
        optimizer = torch.optim.Adam(core.parameters(), lr=config.lr)
        g = torch.Generator().manual_seed(3)
        steps = torch.arange(12.0)[None, :, None]
        series = torch.sin(0.5 * steps + torch.rand(16, 1, 5, generator=g) * 6)  # learnable structure
        mask = (torch.rand(16, 12, 5, generator=g) < 0.6).float()
        batch = Batch(values=series * mask, mask=mask, deltas=torch.ones(2, 16, 12, 5))
        history = []
        for _ in range(80):
            optimizer.zero_grad()
            loss = core(batch).loss
            loss.backward()
            optimizer.step()
            history.append(loss.item())
        losses[fast] = history
    for fast, history in losses.items():
        assert history[-1] < 0.6 * history[0], (fast, history[0], history[-1])
    assert abs(losses[True][-1] - losses[False][-1]) < 0.1 * losses[False][-1]
