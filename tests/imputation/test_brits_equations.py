"""Each BRITS equation (DEARI Eqs. 1-11) against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gapray.imputation.layers import (
    CombinationWeight,
    DirectionalLinear,
    FeatureRegression,
    HistoryRegression,
    TemporalDecay,
    bidirectional_merge,
    combine_estimates,
    complement,
    consistency_loss,
    decay_hidden_state,
    encode_at,
    make_rnn_cell,
    reconstruction_loss,
    temporal_decay,
)


def test_temporal_decay_eq1_clips_negative_affine_terms_to_one() -> None:
    gamma = temporal_decay(torch.tensor([-1.0, 0.0, 2.0]))
    assert torch.allclose(gamma, torch.tensor([1.0, 1.0, math.exp(-2.0)]))


def test_hidden_decay_eq1_uses_full_matrix() -> None:
    decay = TemporalDecay(1, input_size=2, output_size=1)
    with torch.no_grad():
        decay.linear.weight.copy_(torch.tensor([[[0.5], [1.0]]]))  # [n_dir, in, out]
        decay.linear.bias.fill_(-1.0)
    delta = torch.tensor([[[2.0, 3.0]]])  # [n_dir=1, B=1, D=2]
    # W delta + b = 0.5*2 + 1*3 - 1 = 3
    assert torch.allclose(decay(delta), torch.tensor([[[math.exp(-3.0)]]]))


def test_input_decay_eq6_uses_only_the_diagonal() -> None:
    decay = TemporalDecay(1, input_size=2, output_size=2, diagonal=True)
    with torch.no_grad():
        decay.linear.weight.copy_(torch.tensor([[[0.5, 100.0], [100.0, 2.0]]]))
        decay.linear.bias.copy_(torch.tensor([[[0.0, -1.0]]]))
    delta = torch.tensor([[[[2.0, 1.0]]]])  # [1, 1, 1, 2]
    # feature 0: 0.5*2 + 0 = 1; feature 1: 2*1 - 1 = 1 (off-diagonal 100s ignored)
    assert torch.allclose(decay(delta), torch.full((1, 1, 1, 2), math.exp(-1.0)))


def test_decay_hidden_state_eq2() -> None:
    assert torch.equal(decay_hidden_state(torch.tensor([2.0, -4.0]), torch.tensor([0.5, 0.25])),
                       torch.tensor([1.0, -1.0]))


def test_history_regression_eq3() -> None:
    reg = HistoryRegression(1, hidden_size=2, n_features=1)
    with torch.no_grad():
        reg.weight.copy_(torch.tensor([[[2.0], [-1.0]]]))
        reg.bias.fill_(0.5)
    # 2*3 - 1*1 + 0.5 = 5.5
    assert torch.allclose(reg(torch.tensor([[[3.0, 1.0]]])), torch.tensor([[[5.5]]]))


def test_complement_eq4_eq9_keeps_observed_values() -> None:
    x = torch.tensor([1.0, 0.0, 3.0])  # 0 where missing
    m = torch.tensor([1.0, 0.0, 1.0])
    estimate = torch.tensor([9.0, 7.0, 9.0])
    assert torch.equal(complement(x * m, 1 - m, estimate), torch.tensor([1.0, 7.0, 3.0]))


def test_feature_regression_eq5_ignores_own_feature() -> None:
    reg = FeatureRegression(1, n_features=2)
    with torch.no_grad():
        reg.weight.copy_(torch.tensor([[[5.0, 2.0], [3.0, 5.0]]]))  # [in, out]; diagonal 5s must not act
        reg.bias.zero_()
    x = torch.tensor([[[1.0, 10.0]]])
    # out0 = W[1,0]*x1 = 3*10 = 30 ; out1 = W[0,1]*x0 = 2*1 = 2
    assert torch.allclose(reg(x), torch.tensor([[[30.0, 2.0]]]))


def test_feature_regression_diagonal_stays_zero_after_adam_steps() -> None:
    torch.manual_seed(0)
    reg = FeatureRegression(2, n_features=4)
    assert torch.count_nonzero(torch.diagonal(reg.weight, dim1=-2, dim2=-1)) == 0
    optimizer = torch.optim.Adam(reg.parameters(), lr=0.1, weight_decay=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        reg(torch.randn(2, 5, 4)).pow(2).sum().backward()
        assert torch.count_nonzero(torch.diagonal(reg.weight.grad, dim1=-2, dim2=-1)) == 0
        optimizer.step()
    assert torch.count_nonzero(torch.diagonal(reg.weight, dim1=-2, dim2=-1)) == 0
    assert torch.count_nonzero(reg.weight) == 2 * (16 - 4)  # off-diagonals did move


def test_combination_weight_eq7_is_sigmoid_of_decay_and_mask() -> None:
    comb = CombinationWeight(1, n_features=1)
    with torch.no_grad():
        comb.linear.weight.copy_(torch.tensor([[[2.0], [-1.0]]]))  # [gamma_x, m] -> 1
        comb.linear.bias.fill_(0.0)
    beta = comb(torch.tensor([[[0.5]]]), torch.tensor([[[1.0]]]))
    assert torch.allclose(beta, torch.sigmoid(torch.tensor([[[0.0]]])))  # 2*0.5 - 1 = 0 -> 0.5
    reference = CombinationWeight(1, n_features=1, sigmoid=False)
    reference.load_state_dict(comb.state_dict())
    assert torch.allclose(reference(torch.tensor([[[1.0]]]), torch.tensor([[[0.0]]])), torch.tensor([[[2.0]]]))


def test_combine_estimates_eq8() -> None:
    out = combine_estimates(torch.tensor([0.25]), torch.tensor([4.0]), torch.tensor([8.0]))
    assert torch.allclose(out, torch.tensor([0.25 * 4.0 + 0.75 * 8.0]))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_update_eq10_matches_torch_cells_per_direction(kind: str) -> None:
    torch.manual_seed(0)
    cell = make_rnn_cell(kind, 6, 5, n_directions=2)
    reference = [nn.LSTMCell(6, 5) if kind == "lstm" else nn.GRUCell(6, 5) for _ in range(2)]
    with torch.no_grad():
        for d, ref in enumerate(reference):
            ref.weight_ih.copy_(cell.weight_ih[d].T)
            ref.weight_hh.copy_(cell.weight_hh[d].T)
            ref.bias_ih.copy_(cell.bias_ih[d, 0])
            ref.bias_hh.copy_(cell.bias_hh[d, 0])
    x, h, c = torch.randn(2, 3, 6), torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    for d, ref in enumerate(reference):
        if kind == "lstm":
            ours = cell(x, (h, c))
            theirs = ref(x[d], (h[d], c[d]))
            assert torch.allclose(ours[0][d], theirs[0], atol=1e-6)
            assert torch.allclose(ours[1][d], theirs[1], atol=1e-6)
        else:
            assert torch.allclose(cell(x, h)[d], ref(x[d], h[d]), atol=1e-6)
    assert sum(p.numel() for p in cell.parameters()) == 2 * sum(p.numel() for p in reference[0].parameters())


def test_bidirectional_merge_eq11_and_consistency() -> None:
    f, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])
    assert torch.equal(bidirectional_merge(f, b), torch.tensor([2.0, 2.0]))
    assert consistency_loss(f, b).item() == pytest.approx(1.0)  # mean(|-2|, |0|)


def test_reconstruction_loss_is_per_step_masked_mae_summed_over_estimates() -> None:
    # K=2 estimates, T=2 steps, 1 direction, B=1, D=2
    target = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 1.0]]]])
    est = torch.stack([target + 1.0, target + torch.tensor([0.0, 3.0])])
    # estimate 0: step0 (1+1)/2 = 1, step1 1/1 = 1 -> mean 1; estimate 1: step0 3/2, step1 3/1 -> 2.25
    expected = (1.0 + 1.0) / 2 + (1.5 + 3.0) / 2
    assert reconstruction_loss(est, target, mask).item() == pytest.approx(expected, rel=1e-4)


def test_encode_at_equals_full_encoder_position() -> None:
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True), 2,
                                    enable_nested_tensor=False).eval()
    tokens = torch.randn(3, 7, 8)
    with torch.no_grad():
        full = encoder(tokens)
        assert torch.allclose(encode_at(encoder, tokens, 0), full[:, 0], atol=1e-5)
        assert torch.allclose(encode_at(encoder, tokens, -1), full[:, -1], atol=1e-5)


def test_reconstruction_loss_divides_by_the_observed_count_plus_1e_5() -> None:
    """BRITS reference: ``sum(|x - est| m) / (sum(m) + 1e-5)``; in float64 the 1e-5 shows."""
    target = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 4.0]]]], dtype=torch.float64)
    mask = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 1.0]]]], dtype=torch.float64)
    estimates = (target + 1.0).unsqueeze(0)  # one estimate, off by 1 everywhere
    expected = (2.0 / (2.0 + 1e-5) + 1.0 / (1.0 + 1e-5)) / 2  # mean over the two steps
    assert reconstruction_loss(estimates, target, mask).item() == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_a_diagonal_decay_of_two_sizes_is_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"^a diagonal decay needs input_size == output_size, got 3, 4$"):
        TemporalDecay(2, input_size=3, output_size=4, diagonal=True)


def test_the_cell_factory_builds_both_directions_by_default_and_refuses_unknown_kinds() -> None:
    """``make_rnn_cell(kind, in, hidden)`` is BRITS's forward and backward cell bank (two directions)."""
    for kind in ("lstm", "gru"):
        cell = make_rnn_cell(kind, 6, 5)
        x, h = torch.randn(2, 3, 6), torch.zeros(2, 3, 5)
        out = cell(x, (h, h.clone())) if kind == "lstm" else cell(x, h)
        assert (out[0] if kind == "lstm" else out).shape == (2, 3, 5)
    with pytest.raises(ValueError, match=r"^cell must be 'lstm' or 'gru', got 'rnn'$"):
        make_rnn_cell("rnn", 6, 5)


def test_weights_start_uniform_within_one_over_sqrt_fan_in() -> None:
    """BRITS reference init: ``U(-1/sqrt(n), 1/sqrt(n))``, ``n`` the input width of a linear map and the
    output width of a decay; over a thousand draws the largest one lies close to the bound."""
    torch.manual_seed(0)
    linear, single = DirectionalLinear(2, 16, 64), DirectionalLinear(2, 1, 512)  # one input feature: bound 1
    decay = TemporalDecay(2, input_size=64, output_size=9)
    for weights, fan_in in ((linear.weight, 16), (linear.bias, 16), (single.weight, 1), (decay.linear.weight, 9)):
        bound = 1.0 / math.sqrt(fan_in)
        largest = weights.detach().abs().max().item()
        assert 0.9 * bound < largest <= bound, (weights.shape, largest, bound)


def test_the_feature_regression_mask_is_not_saved_with_the_weights() -> None:
    """The zero-diagonal mask of Eq. 5 is rebuilt on construction, so checkpoints hold the weights only."""
    assert set(FeatureRegression(2, 3).state_dict()) == {"weight", "bias"}
