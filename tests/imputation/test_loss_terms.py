"""The deep-metric-learning term (DEARI Sec. 4.2) and the KL term (Eq. 26) inside the total loss,
at their configured weights, against values computed here from the model's own pieces."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_wiring_brits import D, H, make_batch
from torch import nn

from gapray.imputation import BRITSConfig, DEARIConfig
from gapray.imputation.bayesian import gaussian_weights
from gapray.imputation.brits.core import Batch, BRITSCore
from gapray.imputation.deari.core import DEARICore
from gapray.imputation.schedule import FreezeSchedule
from gapray.imputation.training import PreparedData, train_one_epoch

DML = {"hidden_size": H, "dml": True, "dml_attention_heads": 2, "attention_feedforward": 16, "dml_margin": 1.0}


def _core(kind: str, dml_weight: float) -> nn.Module:
    torch.manual_seed(0)
    if kind == "brits":
        return BRITSCore(D, BRITSConfig(**DML, dml_weight=dml_weight)).eval()
    return DEARICore(D, DEARIConfig(**DML, dml_weight=dml_weight, n_layers=3, attention_heads=2)).eval()


@pytest.mark.parametrize("kind", ["brits", "deari"])
def test_dml_term_is_the_weighted_multi_similarity_loss_of_the_layer_mean_hidden_states(kind: str) -> None:
    """``terms['dml'] = dml_weight * MS(f_r(f_SA(mean_l H_F^l)), f_r(f_SA(mean_l H_B^l)))`` and the
    loss is the imputation term plus it; the imputation term does not depend on the weight."""
    batch = make_batch(seed=5)
    outputs = {}
    for weight in (0.5, 0.125):
        core = _core(kind, weight)
        out = core(batch)
        hidden = torch.stack([layer.hidden_states for layer in out.layers]).mean(dim=0)  # [2, B, T, H]
        unweighted = core.metric_learning(hidden[0], hidden[1])
        assert unweighted > 0.05  # margin 1.0: pairs are mined, the term is not trivially zero
        torch.testing.assert_close(out.terms["dml"], weight * unweighted)
        torch.testing.assert_close(out.loss, out.terms["imputation"] + weight * unweighted)
        outputs[weight] = out
    torch.testing.assert_close(outputs[0.5].terms["imputation"], outputs[0.125].terms["imputation"])
    torch.testing.assert_close(outputs[0.5].terms["dml"], 4 * outputs[0.125].terms["dml"])
    if kind == "deari":  # three layers, all squeezed into one pair: not layer 1's or the last layer's alone
        core = _core(kind, 0.5)
        out = core(batch)
        for layer in (out.layers[0], out.layers[-1]):
            alone = core.metric_learning(layer.hidden_states[0], layer.hidden_states[1])
            assert not torch.allclose(out.terms["dml"], 0.5 * alone)


@pytest.mark.parametrize("kind", ["brits", "deari"])
def test_dml_mines_within_each_monte_carlo_copy(kind: str) -> None:
    """With the batch repeated for Monte Carlo passes, another copy of the same record is no
    negative: with identical copies (frozen weights) the term equals the single batch's."""
    batch = make_batch(seed=9)
    core = _core(kind, 0.5)
    single = core(batch).terms["dml"]
    repeated = core(batch.repeat(3)).terms["dml"]
    assert single > 0.01
    torch.testing.assert_close(repeated, single)


def test_dml_gradient_reaches_the_recurrent_weights_scaled_by_its_weight() -> None:
    """The DML term's gradient on a recurrent weight is ``dml_weight`` times the unweighted one."""
    batch = make_batch(seed=6)
    grads = []
    for weight in (1.0, 0.25):
        core = _core("brits", weight)
        out = core(batch)
        (grad,) = torch.autograd.grad(out.terms["dml"], [core.layer.rits.cell.weight_hh])
        grads.append(grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], 0.25 * grads[0])


def _hand_kl(model: nn.Module, prior_sigma: float) -> torch.Tensor:
    """``sum log(s_p / s) + (s^2 + mu^2) / (2 s_p^2) - 1/2`` over every Gaussian weight, ``s = softplus(rho)``."""
    total = torch.zeros((), dtype=torch.float64)
    for weight in gaussian_weights(model):
        mu, sigma = weight.mu.double(), F.softplus(weight.rho.double())
        total = total + (math.log(prior_sigma) - sigma.log() + (sigma**2 + mu**2) / (2 * prior_sigma**2) - 0.5).sum()
    return total


@pytest.mark.parametrize("model", ["brits", "deari"])
def test_kl_term_is_the_coefficient_times_the_closed_form_kl_of_every_bayesian_weight(model: str) -> None:
    torch.manual_seed(1)
    common = {"hidden_size": H, "bayesian": True, "prior_sigma": 0.3}
    core = BRITSCore(D, BRITSConfig(**common)) if model == "brits" else \
        DEARICore(D, DEARIConfig(**common, n_layers=2, attention_heads=2, attention_feedforward=16)).eval()
    n_weights = 4 * (1 if model == "brits" else 2)  # W, U, b_ih, b_hh per recurrent cell
    assert len(gaussian_weights(core)) == n_weights
    with torch.no_grad():  # spread the posteriors so the KL is far from its initial value
        for weight in gaussian_weights(core):
            weight.rho.uniform_(-3.0, 0.0)
    batch = make_batch(seed=7)
    frozen = core(batch)
    assert set(frozen.terms) == {"imputation"}  # coefficient 0: no KL term at all
    coefficient = 3e-4
    out = core(batch, kl_coefficient=coefficient)
    expected = coefficient * _hand_kl(core, 0.3)
    assert expected > 1e-3
    torch.testing.assert_close(out.terms["kl"].double(), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.loss, out.terms["imputation"] + out.terms["kl"])
    torch.testing.assert_close(out.terms["imputation"], frozen.terms["imputation"])  # same (frozen) weights
    (grad,) = torch.autograd.grad(out.terms["kl"], [gaussian_weights(core)[0].mu])
    mu = gaussian_weights(core)[0].mu.detach()
    torch.testing.assert_close(grad, coefficient * mu / 0.3**2)  # d/dmu of mu^2 / (2 s_p^2)


class _Recorder(nn.Module):
    """Wraps a core and records the ``kl_coefficient`` and batch size of every training call."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core
        self.calls: list[tuple[float, int]] = []

    def forward(self, batch: Batch, with_loss: bool = True, kl_coefficient: float = 0.0) -> object:
        self.calls.append((kl_coefficient, int(batch.values.shape[0])))
        return self.core(batch, with_loss=with_loss, kl_coefficient=kl_coefficient)


def test_training_passes_the_schedules_kl_coefficient_for_each_sampling_step() -> None:
    """A sampling step's loss gets the schedule's coefficient for that minibatch of the epoch and
    the training set's observed entries (its size is the schedule's to define, checked in
    test_schedule.py; the core multiplies it with the KL, checked above); frozen steps get none."""
    torch.manual_seed(2)
    batch = make_batch(seed=8)  # 4 records
    data = PreparedData(values=batch.values, mask=batch.mask, deltas=batch.deltas)
    recorder = _Recorder(BRITSCore(D, BRITSConfig(hidden_size=H, bayesian=True)))
    optimizer = torch.optim.SGD(recorder.parameters(), lr=0.0)
    schedule = FreezeSchedule(unfreeze_every=2, n_samples=3, kl_weight=5.0, kl_scheme="blundell")
    train_one_epoch(recorder, optimizer, data, batch_size=2, schedule=schedule, first_step=0)
    observed = int(batch.mask.sum())
    expected = schedule.kl_coefficient(1, 2, observed)  # minibatch 1 of 2, the observed training entries
    # Blundell's shares differ per minibatch, so a wrong index, batch count or size shows
    assert expected > 0 and expected != schedule.kl_coefficient(0, 2, observed)
    assert expected != schedule.kl_coefficient(1, 2, 1) and expected != schedule.kl_coefficient(1, 3, observed)
    # steps 0 (frozen, 2 records) and 1 (sampling: 3 copies of 2 records)
    assert recorder.calls == [(0.0, 2), (pytest.approx(expected, rel=1e-12), 6)]


@pytest.mark.parametrize(("pooling", "scales"), [("cls", None), ("last", None), ("mean", None),
                                                ("mean", (3.0, 20.0, 0.3))])
def test_metric_learning_loss_is_eq_19_to_21_with_the_library_defaults(
        pooling: str, scales: tuple[float, float, float] | None) -> None:
    """``R = f_r(f_SA(H))`` built here from the head's own encoder (full forward pass, CLS token
    prepended for ``cls``), then pytorch-metric-learning's miner and Multi-Similarity loss with
    its defaults (alpha 2, beta 50, base 0.5) or the given ones, and the margin as the miner's epsilon."""
    from pytorch_metric_learning import losses, miners

    from gapray.imputation.dml import MetricLearningLoss

    torch.manual_seed(3)
    alpha, beta, base = scales or (2.0, 50.0, 0.5)
    given = {} if scales is None else {"alpha": alpha, "beta": beta, "base": base}
    head = MetricLearningLoss(H, pooling=pooling, margin=0.7, attention_heads=2, attention_feedforward=16,
                              **given).eval()
    assert (head.cls_token is not None) == (pooling == "cls")
    forward, backward = torch.randn(6, 5, H), torch.randn(6, 5, H)

    def representation(hidden: torch.Tensor) -> torch.Tensor:
        if pooling == "cls":
            return head.encoder(torch.cat([head.cls_token.expand(len(hidden), -1, -1), hidden], dim=1))[:, 0]
        encoded = head.encoder(hidden)
        return encoded[:, -1] if pooling == "last" else encoded.mean(dim=1)

    with torch.no_grad():
        embeddings = torch.cat([representation(forward), representation(backward)])
        labels = torch.cat([torch.arange(6), torch.arange(6)])
        pairs = miners.MultiSimilarityMiner(epsilon=0.7)(embeddings, labels)
        expected = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)(embeddings, labels, pairs)
        assert expected > 0
        torch.testing.assert_close(head(forward, backward), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"^pooling must be 'cls', 'last' or 'mean', got 'max'$"):
        MetricLearningLoss(H, pooling="max")
