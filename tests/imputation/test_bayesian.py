"""Bayesian recurrent cells (DEARI Eqs. 22-26): KL, reparameterisation, frozen == deterministic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from gapray.imputation.bayesian import (
    BayesianConfig,
    BayesianGRUCell,
    BayesianLSTMCell,
    GaussianWeight,
    gaussian_kl,
    make_bayesian_cell,
    minibatch_kl_weight,
    monte_carlo_kl,
    repeat_for_samples,
    sample_gaussian_weight,
    sampled_weights,
    split_samples,
)
from gapray.imputation.bayesian import (
    kl_divergence as model_kl,
)
from gapray.imputation.layers import make_rnn_cell


def _hidden(kind: str, h: torch.Tensor, c: torch.Tensor):
    return (h, c) if kind == "lstm" else h


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def test_gaussian_kl_matches_hand_value_and_torch_distributions() -> None:
    # one entry by hand: mu=0.3, sigma=0.05, prior 0.1
    hand = math.log(0.1 / 0.05) + (0.05**2 + 0.3**2) / (2 * 0.1**2) - 0.5
    assert gaussian_kl(torch.tensor([0.3]), torch.tensor([0.05]), 0.1).item() == pytest.approx(hand, rel=1e-6)
    mu = torch.randn(7, 5, dtype=torch.float64)
    sigma = torch.rand(7, 5, dtype=torch.float64) + 0.01
    expected = kl_divergence(Normal(mu, sigma), Normal(torch.zeros_like(mu), 0.3 * torch.ones_like(mu))).sum()
    assert gaussian_kl(mu, sigma, 0.3).item() == pytest.approx(expected.item(), rel=1e-10)


def test_cell_kl_is_sum_over_its_four_weights_in_closed_form() -> None:
    cell = BayesianLSTMCell(3, 4, BayesianConfig(prior_sigma=0.2, rho_init=-3.0))
    expected = torch.stack(
        [
            kl_divergence(Normal(w.mu, w.sigma), Normal(torch.zeros_like(w.mu), torch.full_like(w.mu, 0.2))).sum()
            for w in cell.gaussian_weights()
        ]
    ).sum()
    assert cell.kl().item() == pytest.approx(expected.item(), rel=1e-5)
    gru = BayesianGRUCell(3, 4)
    wrapper = nn.ModuleDict({"a": cell, "b": gru})
    assert model_kl(wrapper).item() == pytest.approx(cell.kl().item() + gru.kl().item(), rel=1e-6)
    assert model_kl(nn.Linear(2, 2)).item() == 0.0


def test_monte_carlo_kl_converges_to_closed_form_for_a_gaussian_prior() -> None:
    torch.manual_seed(0)
    config = BayesianConfig(prior_sigma=0.1)
    mu = torch.randn(20, dtype=torch.float64) * 0.1
    rho = torch.full((20,), -2.0, dtype=torch.float64)
    sigma = torch.nn.functional.softplus(rho)
    w = sample_gaussian_weight(mu, rho, torch.randn(20000, 20, dtype=torch.float64))
    assert monte_carlo_kl(w, mu, sigma, config).item() == pytest.approx(gaussian_kl(mu, sigma, 0.1).item(), rel=0.02)


def test_scale_mixture_kl_is_finite_and_differentiable() -> None:
    weight = GaussianWeight((4, 3), BayesianConfig(prior="scale_mixture"))
    kl = weight.kl()
    kl.backward()
    assert torch.isfinite(kl) and weight.rho.grad is not None and torch.isfinite(weight.rho.grad).all()


def test_reparameterised_sample_has_the_posterior_moments() -> None:
    mu = torch.tensor([0.5, -1.0])
    rho = torch.tensor([-1.0, 0.5])
    w = sample_gaussian_weight(mu, rho, torch.randn(200000, 2, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(w.mean(0), mu, atol=0.01)
    assert torch.allclose(w.std(0), torch.log1p(torch.exp(rho)), atol=0.01)  # Eq. 22: log(1 + e^rho)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_reparameterised_gradient_matches_finite_differences(kind: str) -> None:
    torch.manual_seed(0)
    cell = make_bayesian_cell(kind, 3, 4, BayesianConfig(rho_init=-2.0)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 4, dtype=torch.float64)
    c0 = torch.randn(2, 4, dtype=torch.float64)
    with sampled_weights(cell, 2, generator=torch.Generator().manual_seed(3)):

        def loss() -> torch.Tensor:
            h = _hidden(kind, repeat_for_samples(h0, 2), repeat_for_samples(c0, 2))
            out = cell(repeat_for_samples(x, 2), h)
            out = cell(repeat_for_samples(x, 2), out)  # two steps, same draw
            return _first(out).pow(2).sum() + 1e-3 * cell.kl()

        value = loss()
        value.backward()
        for param in (cell.weight_ih.mu, cell.weight_ih.rho, cell.bias_hh.rho, cell.weight_hh.mu):
            assert param.grad is not None
            flat, grad = param.data.view(-1), param.grad.view(-1)
            for index in (0, 7, flat.numel() - 1):
                original = flat[index].item()
                flat[index] = original + 1e-6
                up = loss().item()
                flat[index] = original - 1e-6
                down = loss().item()
                flat[index] = original
                assert grad[index].item() == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_frozen_cell_equals_torch_cell_with_the_same_means(kind: str) -> None:
    torch.manual_seed(0)
    deterministic = nn.LSTMCell(5, 6) if kind == "lstm" else nn.GRUCell(5, 6)
    bayesian = make_bayesian_cell(kind, 5, 6)
    bayesian.load_means_from(deterministic)
    assert bayesian.frozen
    x, h, c = torch.randn(3, 5), torch.randn(3, 6), torch.randn(3, 6)
    for hx in (_hidden(kind, h, c), None):
        expected, got = deterministic(x, hx), bayesian(x, hx)
        if kind == "lstm":
            assert torch.allclose(expected[0], got[0], atol=1e-6) and torch.allclose(expected[1], got[1], atol=1e-6)
        else:
            assert torch.allclose(expected, got, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_frozen_directional_cell_is_bit_identical_to_the_deterministic_factory_cell(kind: str) -> None:
    torch.manual_seed(0)
    deterministic = make_rnn_cell(kind, 5, 6, n_directions=2)
    bayesian = make_bayesian_cell(kind, 5, 6, n_directions=2)
    bayesian.load_means_from(deterministic)
    x, h, c = torch.randn(2, 3, 5), torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    expected, got = deterministic(x, _hidden(kind, h, c)), bayesian(x, _hidden(kind, h, c))
    assert torch.equal(_first(expected), _first(got))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_batched_samples_equal_one_deterministic_cell_per_weight_sample(kind: str) -> None:
    torch.manual_seed(0)
    k, batch = 4, 3
    bayesian = make_bayesian_cell(kind, 5, 6, BayesianConfig(rho_init=-1.0), n_directions=2)
    x, h, c = torch.randn(2, batch, 5), torch.randn(2, batch, 6), torch.randn(2, batch, 6)
    with sampled_weights(bayesian, k):
        rep = lambda t: t.repeat(1, k, 1)  # noqa: E731  (batch axis is 1 for directional input)
        batched = _first(bayesian(rep(x), _hidden(kind, rep(h), rep(c))))
        assert batched.shape == (2, k * batch, 6)
        for s in range(k):
            single = make_rnn_cell(kind, 5, 6, n_directions=2)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(single, name).copy_(getattr(bayesian, name).samples()[s])
            expected = _first(single(x, _hidden(kind, h, c)))
            assert torch.allclose(batched[:, s * batch : (s + 1) * batch], expected, atol=1e-6)
        # the samples really differ from one another
        assert not torch.allclose(batched[:, :batch], batched[:, batch : 2 * batch])


def test_one_draw_per_context_and_frozen_again_afterwards() -> None:
    cell = BayesianGRUCell(3, 4, BayesianConfig(rho_init=0.0))
    x = torch.randn(5, 3)
    frozen_out = cell(x)
    with sampled_weights(cell, 1):
        first, second = cell(x), cell(x)
        assert torch.equal(first, second)  # same weights at every time step of a pass
        assert not torch.allclose(first, frozen_out)
    assert cell.frozen and torch.equal(cell(x), frozen_out)
    with sampled_weights(cell, 1):
        assert not torch.allclose(cell(x), first)  # a new pass draws new weights


def test_eps_is_not_saved_and_bad_batches_are_refused() -> None:
    cell = BayesianLSTMCell(3, 4)
    with sampled_weights(cell, 3):
        assert all("eps" not in key for key in cell.state_dict())
        with pytest.raises(ValueError, match="repeat the batch"):
            cell(torch.randn(4, 3))
    with pytest.raises(ValueError, match="input of shape"):
        cell(torch.randn(4, 5))
    with pytest.raises(ValueError, match="shape"):
        cell.load_means_from(nn.LSTMCell(3, 5))


def test_repeat_and_split_samples_round_trip() -> None:
    x = torch.arange(6.0).reshape(3, 2)
    repeated = repeat_for_samples(x, 4)
    assert repeated.shape == (12, 2) and torch.equal(repeated[3:6], x)
    assert torch.equal(split_samples(repeated, 4)[2], x)


def test_minibatch_kl_weights() -> None:
    assert minibatch_kl_weight(3, 8, "uniform") == pytest.approx(1 / 8)
    weights = [minibatch_kl_weight(i, 5, "blundell") for i in range(5)]
    assert weights[0] == pytest.approx(2**4 / (2**5 - 1))  # pi_1 = 2^(M-1) / (2^M - 1)
    assert weights[-1] == pytest.approx(1 / (2**5 - 1))
    assert sum(weights) == pytest.approx(1.0)
    assert minibatch_kl_weight(0, 5000, "blundell") == pytest.approx(0.5)  # no overflow
    with pytest.raises(ValueError):
        minibatch_kl_weight(5, 5)
