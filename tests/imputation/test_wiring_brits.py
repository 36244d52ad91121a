"""RITS and BRITS end to end against a slow reference written here from the equations.

The reference (:func:`reference_rits`, :func:`reference_brits`) is a plain loop over time steps
that follows DESIGN.md sec. 3 / DEARI Eqs. 1-11 and BRITS's loss, one direction at a time, with
textbook LSTM and GRU cells. It shares nothing with the library but the parameter tensors
(read through :func:`direction_parameters`, the one place that knows their layout), so values,
losses and gradients of the public forward passes (``RITS``, ``BRITSCore``) must match it
whatever a faster implementation does inside. Swapping ``x_hat`` and ``x_fc`` in Eq. 8, not
reversing the backward direction, giving it the forward deltas, or mixing up the gates all
fail here.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from gapray.imputation import BRITSConfig
from gapray.imputation.brits.core import Batch, BRITSCore
from gapray.imputation.rits import RITS

B, T, D, H = 4, 6, 3, 8
ATOL, RTOL = 1e-5, 1e-4


# --- inputs -------------------------------------------------------------------------------------------
def brits_deltas(mask: Tensor) -> Tensor:
    """BRITS time gaps along axis 1 (``d_0 = 1``, ``d_t = 1 + (1 - m_{t-1}) d_{t-1}``), by hand."""
    deltas = torch.ones_like(mask)
    for t in range(1, mask.shape[1]):
        deltas[:, t] = 1.0 + (1.0 - mask[:, t - 1]) * deltas[:, t - 1]
    return deltas


def make_batch(seed: int = 0, missing: float = 0.4) -> Batch:
    """Random values (0 where missing), a random mask and both directions' deltas.

    Every step keeps at least one observation and one feature stays fully observed in the first
    record, so every loss term is non-trivial; the backward deltas are computed on the reversed
    mask, so they are not the forward deltas reversed.
    """
    generator = torch.Generator().manual_seed(seed)
    mask = (torch.rand(B, T, D, generator=generator) > missing).float()
    mask[0, :, 0] = 1.0
    values = torch.randn(B, T, D, generator=generator) * mask
    deltas = torch.stack([brits_deltas(mask), brits_deltas(mask.flip(1))])
    assert not torch.equal(deltas[1], deltas[0].flip(1))
    return Batch(values=values, mask=mask, deltas=deltas)


# --- parameters (the one place that knows the library's layout) ----------------------------------
def direction_parameters(rits: RITS, d: int) -> dict[str, Tensor]:
    """Direction ``d``'s parameters as ``nn.Linear``-style ``[out, in]`` matrices and ``[out]`` biases.

    Views of the module's own parameters, so gradients of the reference reach them.
    """
    def linear(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        return weight[d].t(), bias[d, 0]

    p: dict[str, Tensor] = {}
    p["W_gamma_h"], p["b_gamma_h"] = linear(rits.temporal_decay_h.linear.weight, rits.temporal_decay_h.linear.bias)
    p["W_gamma_x"], p["b_gamma_x"] = linear(rits.temporal_decay_x.linear.weight, rits.temporal_decay_x.linear.bias)
    p["W_x"], p["b_x"] = linear(rits.history_regression.weight, rits.history_regression.bias)
    p["W_z"], p["b_z"] = linear(rits.feature_regression.weight, rits.feature_regression.bias)
    p["W_beta"], p["b_beta"] = linear(rits.combination_weight.linear.weight, rits.combination_weight.linear.bias)
    cell = rits.cell
    p["W_ih"], p["b_ih"] = linear(cell.weight_ih, cell.bias_ih)
    p["W_hh"], p["b_hh"] = linear(cell.weight_hh, cell.bias_hh)
    return p


# --- the reference ----------------------------------------------------------------------------------
def lstm_cell(p: dict[str, Tensor], u: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Textbook LSTM (gate order i, f, g, o as ``torch.nn.LSTMCell``)."""
    i, f, g, o = (u @ p["W_ih"].t() + p["b_ih"] + h @ p["W_hh"].t() + p["b_hh"]).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_cell(p: dict[str, Tensor], u: Tensor, h: Tensor) -> Tensor:
    """Textbook GRU (gate order r, z, n as ``torch.nn.GRUCell``)."""
    i_r, i_z, i_n = (u @ p["W_ih"].t() + p["b_ih"]).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ p["W_hh"].t() + p["b_hh"]).chunk(3, dim=-1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


def reference_rits(p: dict[str, Tensor], x: Tensor, m: Tensor, delta: Tensor, cell: str,
                   h0: Tensor | None = None, sigmoid: bool = True, terms: str = "all") -> dict[str, Tensor]:
    """One RITS direction, step by step (DEARI Eqs. 1-10), in its own time order.

    Returns the imputations ``C_t`` (Eq. 9), the reconstructions ``x_c`` (Eq. 8), the hidden
    states after each update ``[B, T, H]`` and the loss ``mean_t sum_{est} sum(|x - est| m) /
    (sum(m) + 1e-5)`` over ``est`` in ``x_hat, z_hat, x_c`` (``terms="all"``) or ``x_c`` alone
    (``terms="combined"``).
    """
    batch, steps, features = x.shape
    hidden = p["W_hh"].shape[1]
    h = torch.zeros(batch, hidden) if h0 is None else h0
    c = torch.zeros(batch, hidden)
    off_diagonal = 1.0 - torch.eye(features)
    imputations, reconstructions, hiddens, losses = [], [], [], []
    for t in range(steps):
        x_t, m_t, d_t = x[:, t], m[:, t], delta[:, t]
        gamma_h = torch.exp(-torch.relu(d_t @ p["W_gamma_h"].t() + p["b_gamma_h"]))  # Eq. 1
        h = h * gamma_h  # Eq. 2
        x_hat = h @ p["W_x"].t() + p["b_x"]  # Eq. 3
        x_hc = m_t * x_t + (1.0 - m_t) * x_hat  # Eq. 4
        z_hat = x_hc @ (p["W_z"] * off_diagonal).t() + p["b_z"]  # Eq. 5, diag(W_z) = 0
        gamma_x = torch.exp(-torch.relu(d_t * torch.diagonal(p["W_gamma_x"]) + p["b_gamma_x"]))  # Eq. 6
        beta = torch.cat([gamma_x, m_t], dim=-1) @ p["W_beta"].t() + p["b_beta"]  # Eq. 7
        if sigmoid:
            beta = torch.sigmoid(beta)
        x_c = beta * z_hat + (1.0 - beta) * x_hat  # Eq. 8
        c_t = m_t * x_t + (1.0 - m_t) * x_c  # Eq. 9
        u = torch.cat([c_t, m_t], dim=-1)
        if cell == "lstm":  # Eq. 10
            h, c = lstm_cell(p, u, h, c)
        else:
            h = gru_cell(p, u, h)
        observed = m_t.sum() + 1e-5
        estimates = (x_hat, z_hat, x_c) if terms == "all" else (x_c,)
        losses.append(sum(((x_t - e).abs() * m_t).sum() / observed for e in estimates))
        imputations.append(c_t)
        reconstructions.append(x_c)
        hiddens.append(h)
    return {"imputation": torch.stack(imputations, 1), "reconstruction": torch.stack(reconstructions, 1),
            "hidden": torch.stack(hiddens, 1), "loss": torch.stack(losses).mean()}


def reference_brits(rits: RITS, values: Tensor, batch: Batch, cell: str, config: BRITSConfig,
                     h0: Tensor | None = None) -> dict[str, Tensor]:
    """One BRITS layer: forward RITS on ``values``, backward RITS on the time-reversed series with
    the backward deltas, merge (Eq. 11), ``w_imp (L_F + L_B) + w_cons mean|C_F - C_B|``."""
    x, m = values, batch.mask
    forward = reference_rits(direction_parameters(rits, 0), x, m, batch.deltas[0], cell,
                             None if h0 is None else h0[0], config.combination_sigmoid, config.reconstruction_terms)
    backward = reference_rits(direction_parameters(rits, 1), x.flip(1), m.flip(1), batch.deltas[1], cell,
                              None if h0 is None else h0[1], config.combination_sigmoid, config.reconstruction_terms)
    c_f, c_b = forward["imputation"], backward["imputation"].flip(1)
    consistency = (c_f - c_b).abs().mean()
    loss = config.imputation_weight * (forward["loss"] + backward["loss"]) + config.consistency_weight * consistency
    return {"imputation": (c_f + c_b) / 2, "hidden": torch.stack([forward["hidden"], backward["hidden"]]),
            "reconstruction": forward["loss"] + backward["loss"], "consistency": consistency, "loss": loss}


def assert_same_gradients(module: torch.nn.Module, loss: Tensor, reference_loss: Tensor) -> None:
    """``d loss / d theta`` equals ``d reference_loss / d theta`` for every parameter of ``module``."""
    names, params = zip(*module.named_parameters())
    got = torch.autograd.grad(loss, params, allow_unused=True)
    want = torch.autograd.grad(reference_loss, params, allow_unused=True)
    checked = 0
    for name, g, w in zip(names, got, want):
        g = torch.zeros_like(params[names.index(name)]) if g is None else g
        w = torch.zeros_like(g) if w is None else w
        torch.testing.assert_close(g, w, atol=ATOL, rtol=RTOL, msg=lambda text, name=name: f"{name}: {text}")
        checked += int(w.abs().sum() > 0)
    assert checked >= 10  # the gradients reach (nearly) every parameter, so the check is not vacuous


# --- tests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_rits_direction_matches_the_step_by_step_reference(cell: str) -> None:
    """RITS (one direction) over a whole sequence: imputation, x_c, hidden states, loss and gradients."""
    torch.manual_seed(1)
    rits = RITS(D, H, cell, n_directions=1)
    batch = make_batch(seed=1)
    out = rits(batch.values[None], batch.mask[None], batch.deltas[:1])
    ref = reference_rits(direction_parameters(rits, 0), batch.values, batch.mask, batch.deltas[0], cell)
    torch.testing.assert_close(out.imputation[0], ref["imputation"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.reconstruction[0], ref["reconstruction"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.hidden_states[0], ref["hidden"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.loss[0], ref["loss"], atol=ATOL, rtol=RTOL)
    assert_same_gradients(rits, out.loss.sum(), ref["loss"])


def test_one_rits_step_from_a_given_hidden_state_matches_the_reference() -> None:
    """A single step (T = 1) from a non-zero ``h_0``: the decay of Eq. 2 acts on ``h_0``."""
    torch.manual_seed(2)
    rits = RITS(D, H, "lstm", n_directions=1)
    batch = make_batch(seed=2)
    values, mask, deltas = batch.values[:, :1], batch.mask[:, :1], 1.0 + 3.0 * torch.rand(1, B, 1, D)
    h0 = torch.randn(1, B, H)
    out = rits(values[None], mask[None], deltas, initial_hidden=h0)
    ref = reference_rits(direction_parameters(rits, 0), values, mask, deltas[0], "lstm", h0=h0[0])
    torch.testing.assert_close(out.imputation[0], ref["imputation"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.hidden_states[0], ref["hidden"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.loss[0], ref["loss"], atol=ATOL, rtol=RTOL)
    assert_same_gradients(rits, out.loss.sum(), ref["loss"])


@pytest.mark.parametrize(("cell", "sigmoid"), [("lstm", True), ("gru", True), ("lstm", False)])
def test_brits_forward_matches_the_reference_in_values_loss_and_gradients(cell: str, sigmoid: bool) -> None:
    """BRITSCore: merged imputation, both directions' hidden states (backward in reversed time),
    the loss terms and the gradients of every parameter."""
    torch.manual_seed(3)
    config = BRITSConfig(hidden_size=H, cell=cell, combination_sigmoid=sigmoid, imputation_weight=0.3,
                         consistency_weight=0.7)
    core = BRITSCore(D, config)
    batch = make_batch(seed=3)
    out = core(batch)
    ref = reference_brits(core.layer.rits, batch.values, batch, cell, config)
    torch.testing.assert_close(out.imputation, ref["imputation"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.layers[0].hidden_states, ref["hidden"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.layers[0].reconstruction, ref["reconstruction"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.layers[0].consistency, ref["consistency"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.terms["imputation"], ref["loss"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.loss, ref["loss"], atol=ATOL, rtol=RTOL)
    assert set(out.terms) == {"imputation"}
    assert ref["consistency"] > 1e-3  # the two directions disagree: the consistency term is exercised
    assert_same_gradients(core, out.loss, ref["loss"])



def test_the_combined_estimate_alone_in_the_loss_matches_the_reference_and_changes_only_the_loss() -> None:
    """``reconstruction_terms="combined"`` (the DEARI port and CSAI code): each step's loss is the
    masked MAE of ``x_c`` alone; the forward pass is unchanged, the loss and gradients follow."""
    torch.manual_seed(3)
    config = BRITSConfig(hidden_size=H, cell="gru", reconstruction_terms="combined", consistency_weight=0.7)
    core = BRITSCore(D, config)
    batch = make_batch(seed=3)
    out = core(batch)
    ref = reference_brits(core.layer.rits, batch.values, batch, "gru", config)
    torch.testing.assert_close(out.layers[0].reconstruction, ref["reconstruction"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out.loss, ref["loss"], atol=ATOL, rtol=RTOL)
    assert_same_gradients(core, out.loss, ref["loss"])
    everything = core.__class__(D, config.replace(reconstruction_terms="all"))
    everything.load_state_dict(core.state_dict())
    full = everything(batch)
    torch.testing.assert_close(full.imputation, out.imputation)
    assert full.layers[0].reconstruction > 1.5 * out.layers[0].reconstruction  # three estimates against one

def test_brits_imputation_keeps_observed_values_and_uses_both_directions() -> None:
    """Observed entries come back exactly; a missing entry depends on the future (backward RITS)."""
    torch.manual_seed(4)
    core = BRITSCore(D, BRITSConfig(hidden_size=H))
    batch = make_batch(seed=4)
    with torch.no_grad():
        out = core(batch, with_loss=False)
        assert out.terms == {} and float(out.loss) == 0.0 and len(out.layers) == 1  # inference: no loss terms
        torch.testing.assert_close(out.imputation, core(batch).imputation)
        observed = batch.mask.bool()
        assert torch.equal(out.imputation[observed], batch.values[observed])
        # change the last step's observed values: an earlier missing entry of the same record changes
        later = Batch(values=batch.values.clone(), mask=batch.mask, deltas=batch.deltas)
        later.values[:, -1] += batch.mask[:, -1] * 5.0
        changed = core(later, with_loss=False).imputation
    missing_early = (~observed)[:, :-1]
    assert missing_early.any()
    difference = (changed[:, :-1] - out.imputation[:, :-1]).abs()
    assert (difference[missing_early] > 1e-4).any()


@pytest.mark.parametrize("kind", ["brits", "deari"])
def test_a_repeated_batch_at_inference_gives_every_copy_the_single_batch_imputation(kind: str) -> None:
    """Without autograd a repeated batch (Monte Carlo copies) runs its recurrence over the copies
    while sharing the input-only terms per record; with the same (deterministic) weights every copy
    must equal the single batch's imputation, and with autograd (every copy its own graph) too."""
    from gapray.imputation import DEARIConfig
    from gapray.imputation.deari.core import DEARICore

    torch.manual_seed(5)
    core = BRITSCore(D, BRITSConfig(hidden_size=H)) if kind == "brits" else \
        DEARICore(D, DEARIConfig(hidden_size=H, n_layers=2, attention_heads=2, attention_feedforward=16))
    core.eval()
    batch = make_batch(seed=5)
    with torch.no_grad():
        single = core(batch, with_loss=False).imputation
        shared = core(batch.repeat(2), with_loss=False).imputation
        # the loss read afterwards on the shared path: identical copies, the single batch's loss
        torch.testing.assert_close(core(batch.repeat(2)).loss, core(batch).loss, atol=ATOL, rtol=RTOL)
    separate = core(batch.repeat(2)).imputation.detach()
    for copies in (shared, separate):
        assert copies.shape == (2 * B, T, D)
        for k in range(2):
            torch.testing.assert_close(copies[k * B:(k + 1) * B], single, atol=ATOL, rtol=RTOL)


def test_rits_refuses_values_or_deltas_that_are_not_copies_of_its_records() -> None:
    rits = RITS(3, 4, n_directions=1)
    mask, deltas = torch.ones(1, 2, 5, 3), torch.ones(1, 2, 5, 3)
    with pytest.raises(ValueError, match=r"^RITS: values \(1, 4, 5, 3\), mask \(1, 2, 5, 3\) and deltas "
                                         r"\(1, 2, 5, 3\) do not describe 3 copies of 2 records$"):
        rits(torch.zeros(1, 4, 5, 3), mask, deltas, repeats=3)
    with pytest.raises(ValueError, match=r"^RITS: values \(1, 6, 5, 3\), mask \(1, 2, 5, 3\) and deltas "
                                         r"\(1, 6, 5, 3\) do not describe 3 copies of 2 records$"):
        rits(torch.zeros(1, 6, 5, 3), mask, torch.ones(1, 6, 5, 3), repeats=3)


def test_a_repeated_batch_hands_its_records_once_at_inference_and_every_copy_with_autograd() -> None:
    """``Batch.repeat(n)`` keeps the records it copies: without autograd RITS gets them once with
    ``repeats = n`` (input-only terms per record, not per copy); with autograd it gets the n copies."""
    batch = make_batch(seed=6)
    copies = batch.repeat(3)
    assert copies.n_samples == 3 and copies.values.shape == (3 * B, T, D)
    with torch.no_grad():
        values, mask, deltas, repeats = copies.recurrence_inputs(copies.values)
    assert repeats == 3
    assert torch.equal(values, batch.values) and torch.equal(mask, batch.directional_mask)
    assert torch.equal(deltas, batch.deltas)
    values, mask, deltas, repeats = copies.recurrence_inputs(copies.values)
    assert repeats == 1 and values is copies.values and deltas.shape == (2, 3 * B, T, D)
    assert torch.equal(mask, torch.cat([batch.directional_mask] * 3, dim=1))


def test_rits_has_a_forward_and_a_backward_direction_by_default() -> None:
    """``RITS(D, H)`` is BRITS's pair of directions: it runs a ``[2, B, T, D]`` stack (forward, reversed)."""
    torch.manual_seed(7)
    batch = make_batch(seed=7)
    rits = RITS(D, H)
    out = rits(torch.stack([batch.values, batch.values.flip(1)]), batch.directional_mask, batch.deltas)
    assert rits.n_directions == 2 and RITS(D, H, n_directions=1).n_directions == 1
    assert out.imputation.shape == (2, B, T, D) and out.hidden_states.shape == (2, B, T, H)
