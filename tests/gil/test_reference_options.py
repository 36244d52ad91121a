"""The reference code's choices offered as options (docs/gil_reproduction.md): each option's effect,
against hand-computed values, and the selection protocols."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gapray.gil.datasets import digits_task
from gapray.gil.predictors import MLPPredictor, SlimBatchNorm, build_predictor
from gapray.gil.selection import Checkpoint, select_checkpoint
from gapray.gil.training import PredictorSession, TaskTensors, TrainingConfig, seeded_predictor, to_tensors


@pytest.fixture(scope="module")
def digits() -> object:
    return digits_task(missing_rate=0.3, seed=0)


def test_reference_init_draws_every_mlp_weight_from_u_0001_001_with_zero_biases() -> None:
    torch.manual_seed(0)
    reference = MLPPredictor(64, 10, (32, 16), init="reference")
    for layer in (reference.encoder, *reference.hidden, reference.output):
        w = layer.weight.detach()
        assert 0.001 <= float(w.min()) and float(w.max()) <= 0.01
        assert float(w.min()) < 0.0015 and float(w.max()) > 0.0095   # spread over the range (uniform)
        assert torch.count_nonzero(layer.bias) == 0
    default = MLPPredictor(64, 10, (32, 16))
    assert float(default.encoder.weight.detach().min()) < 0.0          # PyTorch's init is centred


def test_slim_batch_norm_centres_without_scale_and_moves_its_averages_by_0001() -> None:
    torch.manual_seed(1)
    norm = SlimBatchNorm(3)
    with torch.no_grad():
        norm.beta.copy_(torch.tensor([0.5, -1.0, 2.0]))
    h = torch.randn(64, 3) * 4.0 + 7.0
    out = norm(h)
    mean, var = h.mean(0), h.var(0, unbiased=False)
    torch.testing.assert_close(out, (h - mean) / torch.sqrt(var + 1e-3) + norm.beta, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.norm.running_mean, 1e-3 * mean)    # slim's decay 0.999
    assert [name for name, _ in norm.named_parameters()] == ["beta"]    # slim's scale=False: no gamma
    mlp = MLPPredictor(5, 2, (4, 3), batch_norm=True)
    assert mlp.encoder.bias is None and all(layer.bias is None for layer in mlp.hidden)


def test_scoring_and_the_reward_forward_leave_batch_norm_averages_alone(digits: object) -> None:
    config = TrainingConfig(batch_size=32, hidden_sizes=(16, 8), mlp_batch_norm=True)
    train = to_tensors(digits.train, "mlp", 0.0)
    session = PredictorSession(seeded_predictor(digits, config, 0), train, config)
    pending = session.forward_for_update(np.arange(32))
    session.update(pending, torch.ones_like(pending.x))
    norm = session.predictor.norms[0].norm
    averages = [norm.running_mean.clone(), norm.running_var.clone()]
    loss, _ = session.evaluate_batch(pending)                          # the paper's reward: loss after the update
    whole = session.predict_proba(train)
    assert session.predictor.training                                  # scoring switched eval mode back off
    torch.testing.assert_close(norm.running_mean, averages[0], rtol=0, atol=0)
    torch.testing.assert_close(norm.running_var, averages[1], rtol=0, atol=0)
    # eval mode: a row's prediction does not depend on the other rows scored with it
    alone = session.predict_proba(TaskTensors(train.x[:5], train.m[:5], train.y[:5], None))
    np.testing.assert_allclose(alone, whole[:5], rtol=1e-5, atol=1e-6)
    assert np.isfinite(loss)


def _mlp_session(digits: object, l2: float) -> PredictorSession:
    config = TrainingConfig(batch_size=32, hidden_sizes=(16, 8), l2=l2, mlp_batch_norm=True, mlp_init="reference")
    session = PredictorSession(seeded_predictor(digits, config, 0), to_tensors(digits.train, "mlp", 0.0), config)
    with torch.no_grad():  # non-zero values everywhere, so that a missing or extra decay shows
        session.predictor.output.bias.copy_(torch.linspace(-0.4, 0.5, 10))
        for norm in session.predictor.norms:
            norm.beta.fill_(0.2)
    return session


def test_l2_adds_exactly_the_reference_decay_to_each_regularised_gradient(digits: object) -> None:
    """slim's l2_regularizer(0.02) per tensor, tf.reduce_mean over the 3 tensors, added to every
    sample's loss before its gradient is weighted: the encoder's decay is scaled per input column
    by the batch's mean importance; BatchNorm offsets and the output weight get none."""
    plain, decayed = _mlp_session(digits, 0.0), _mlp_session(digits, 0.02)
    importance = torch.rand(32, 64, generator=torch.Generator().manual_seed(5))
    before = {name: p.detach().clone() for name, p in decayed.predictor.named_parameters()}
    regularised = [before["encoder.weight"], before["hidden.0.weight"], before["output.bias"]]
    assert decayed.l2_penalty() == pytest.approx(0.02 * np.mean([float(t.pow(2).sum()) / 2 for t in regularised]))
    for session in (plain, decayed):
        session.update(session.forward_for_update(np.arange(32)), importance.clone())
    coefficient = 0.02 / 3
    expected = {"encoder.weight": coefficient * before["encoder.weight"] * importance.mean(dim=0),
                "hidden.0.weight": coefficient * before["hidden.0.weight"],
                "output.bias": coefficient * before["output.bias"]}
    plain_grads = dict(plain.predictor.named_parameters())
    for name, parameter in decayed.predictor.named_parameters():
        difference = parameter.grad - plain_grads[name].grad
        torch.testing.assert_close(difference, expected.get(name, torch.zeros_like(difference)), rtol=1e-4, atol=1e-9)


def test_lstm_l2_covers_only_the_output_bias() -> None:
    lstm = build_predictor("lstm", 3, 2, lstm_hidden_size=4)
    assert [id(t) for t in lstm.regularized_parameters()] == [id(lstm.output.bias)]


def _sequences(n: int = 8, steps: int = 5, d: int = 3) -> TaskTensors:
    x = torch.randn(n, steps, d, generator=torch.Generator().manual_seed(6))
    return TaskTensors(x, torch.ones_like(x), torch.arange(n) % 2, torch.full((n,), steps))


def test_the_reference_lstm_schedule_keeps_its_learning_rate_at_step_10000() -> None:
    reference = TrainingConfig(lstm_learning_rate=5e-4, lstm_lr_decay_rate=1.0)
    rates = {}
    for name, config, kind in (("lstm reference", reference, "lstm"), ("lstm default", TrainingConfig(), "lstm"),
                               ("mlp", reference, "mlp")):
        if kind == "lstm":
            predictor, data = build_predictor("lstm", 3, 2, lstm_hidden_size=4), _sequences()
        else:
            predictor = build_predictor("mlp", 3, 2, hidden_sizes=(4,))
            data = TaskTensors(_sequences().x[:, 0], torch.ones(8, 3), torch.arange(8) % 2, None)
        session = PredictorSession(predictor, data, config)
        for _ in range(10_000):
            session.optimizer.step()      # no gradients: only the schedule moves
            session.scheduler.step()
        rates[name] = session.optimizer.param_groups[0]["lr"]
    assert rates["lstm reference"] == 5e-4                                      # constant, exactly
    assert rates["lstm default"] == pytest.approx(1e-3 * 0.9 ** (10_000 / 750), rel=1e-6)
    assert rates["mlp"] == pytest.approx(1e-3 * 0.9 ** (10_000 / 750), rel=1e-6)   # the LSTM fields leave the MLP


def test_reference_choices_reach_the_env_predictor_and_the_ddpg_config() -> None:
    from gapray.rl.gil_training import SMOKE_TEST, GILDDPGSettings, build_ddpg_config, probe_env
    from gapray_envs.gil_env import GILEnvConfig

    settings = GILDDPGSettings(**SMOKE_TEST).with_reference_choices()
    env = probe_env(settings)
    env.reset(seed=0)
    predictor = env.session.predictor
    assert isinstance(predictor.norms[0], SlimBatchNorm) and 0.001 <= float(predictor.encoder.weight.detach().min())
    assert env.training.l2 == 0.02 and env.config.reward_timing == "before_update"
    config = build_ddpg_config(settings)
    assert config.critic_l2 == 0.01 and config.critic_join == "post_activation"
    assert config.behaviour_policy.random_share_at_one == 1.0 and config.actor_lr == 1e-4
    gil_d = dataclasses.replace(GILDDPGSettings(**SMOKE_TEST), reward="gil-d").with_reference_choices()
    assert (gil_d.predictor_l2, gil_d.actor_lr, gil_d.d_coefficient) == (0.1, 5e-5, 10.0)
    lstm = GILDDPGSettings(dataset="physionet2012").with_reference_choices()
    assert (lstm.actor_lr, lstm.critic_lr, lstm.d_coefficient, lstm.random_share_at_one) == (5e-4, 1e-4, 5.0, 0.5)
    training = GILEnvConfig.from_dict(lstm.env_config()).training_config()
    assert training.schedule("lstm") == (5e-4, 1.0, 750) and training.l2 == 0.005


def test_a_cuda_predictor_asks_tune_for_a_gpu_and_fails_clearly_without_one() -> None:
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    from gapray.rl.gil_training import GILDDPGSettings, with_predictor_gpu

    resources = PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}])
    assert with_predictor_gpu(resources, "cpu", 0) is resources
    with pytest.raises(ValueError, match="needs a GPU, but the Ray cluster has 0"):
        with_predictor_gpu(resources, "cuda", 0)
    gpu = with_predictor_gpu(resources, "cuda:0", 2)
    assert gpu.bundles == [{"CPU": 1.0, "GPU": 1.0}, {"CPU": 1.0}]
    with pytest.raises(ValueError, match="num_env_runners=0"):
        GILDDPGSettings(device="cuda", num_env_runners=1)


def _checkpoint(step: int, val_auc: float, test_accuracy: float) -> Checkpoint:
    return Checkpoint(step, {"accuracy": 0.5, "auc": val_auc, "ap": 0.3},
                      {"accuracy": test_accuracy, "auc": step / 100, "ap": 0.2})


def test_reference_selection_reports_the_first_best_test_accuracy_and_validation_never_reads_test() -> None:
    run = [_checkpoint(10, 0.70, 0.80), _checkpoint(20, 0.71, 0.86), _checkpoint(30, 0.71, 0.86),
           _checkpoint(40, 0.74, 0.82), _checkpoint(50, 0.74, 0.79)]
    assert select_checkpoint(run, "reference").step == 20          # first maximum of the test accuracy
    assert select_checkpoint(run, "reference").test["auc"] == 0.20  # that step's AUC, as the scripts report
    assert select_checkpoint(run, "validation").step == 40          # first maximum of the validation AUC
    assert select_checkpoint(run, "validation", every=30).step == 30
    shuffled_test = [dataclasses.replace(c, test={**c.test, "accuracy": 1.0 - c.test["accuracy"]}) for c in run]
    assert select_checkpoint(shuffled_test, "validation").step == 40
    with pytest.raises(ValueError, match="protocol must be one of"):
        select_checkpoint(run, "test")
    with pytest.raises(ValueError, match="no checkpoint to select from"):
        select_checkpoint(run, "validation", every=100)
