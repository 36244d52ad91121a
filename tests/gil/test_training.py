"""Policies, trainer, placeholders, batch sampling, GIL-D's D, tasks, baselines and the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gapray.cli import COMMAND_MODULES
from gapray.data.dataset import DatasetError
from gapray.gil import cli as gil_cli
from gapray.gil.baselines import build_imputer, impute_task
from gapray.gil.datasets import as_sequences, digits_task, mar_mask, physionet_task
from gapray.gil.methods import METHODS
from gapray.gil.policies import get_policy
from gapray.gil.predictors import resolve_placeholder
from gapray.gil.rewards import distributional_difference, gil_reward
from gapray.gil.training import BatchSampler, GILTrainer, TrainingConfig

FAST = TrainingConfig(steps=60, batch_size=32, hidden_sizes=(32, 32), lstm_hidden_size=8, eval_every=20)


@pytest.fixture(scope="module")
def digits() -> object:
    return digits_task(missing_rate=0.3, seed=0)


def test_policies_ones_mask_random() -> None:
    x, m = torch.randn(4, 3), torch.tensor([[1.0, 0.0, 1.0]]).repeat(4, 1)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(get_policy("ones")(x, m, generator), torch.ones(4, 3))
    assert torch.equal(get_policy("mask")(x, m, generator), m)
    a = get_policy("random")(x, m, generator)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1 and a.std() > 0
    with pytest.raises(ValueError, match="unknown policy 'gil'"):
        get_policy("gil")


def test_trainer_learns_digits_far_above_chance(digits: object) -> None:
    result = GILTrainer(TrainingConfig(steps=200, batch_size=64, hidden_sizes=(64, 64), eval_every=50)).fit(
        digits, "mask")
    assert result.test["accuracy"] > 0.6  # chance 0.1
    assert result.best_step in (50, 100, 150, 200) and len(result.history) == 4


def test_gil_h_with_zero_placeholder_is_exactly_zero_imputation(digits: object) -> None:
    """x * m = x when missing entries are 0, so a = m changes no gradient (Eq. 4)."""
    config = TrainingConfig(steps=20, batch_size=32, hidden_sizes=(16,), placeholder="zero", eval_every=0)
    ones, mask = GILTrainer(config).fit(digits, "ones"), GILTrainer(config).fit(digits, "mask")
    for name, value in ones.predictor.state_dict().items():
        torch.testing.assert_close(mask.predictor.state_dict()[name], value, rtol=0, atol=0)
    other = GILTrainer(TrainingConfig(**{**config.__dict__, "placeholder": 1.0})).fit(digits, "mask")
    assert not torch.equal(other.predictor.encoder.weight, ones.predictor.encoder.weight)


def test_trainer_is_deterministic_under_its_seed(digits: object) -> None:
    first, second = GILTrainer(FAST).fit(digits, "random"), GILTrainer(FAST).fit(digits, "random")
    assert first.test == second.test


def test_lstm_trainer_runs_on_sequences(digits: object) -> None:
    config = TrainingConfig(steps=150, batch_size=64, lstm_hidden_size=16, eval_every=50)
    result = GILTrainer(config).fit(as_sequences(digits, 8), "ones")
    assert set(result.test) == {"accuracy", "auc", "ap"} and result.test["auc"] > 0.75


def test_placeholder_resolution() -> None:
    values = np.array([[-2.0, np.nan, 5.0]])
    assert resolve_placeholder("auto", "mlp", values) == 0.0
    assert resolve_placeholder("auto", "lstm", values) == 15.0  # reference: 3 x max(train)
    assert resolve_placeholder(-1.5, "lstm", values) == -1.5
    with pytest.raises(ValueError, match="unknown placeholder 'max'"):
        resolve_placeholder("max", "mlp", values)


def test_balanced_sampler_gives_half_per_label_and_plain_sampler_covers_an_epoch() -> None:
    labels = np.array([0] * 30 + [1] * 6)
    batch = BatchSampler(labels, 8, np.random.default_rng(0), balanced=True).next()
    np.testing.assert_array_equal(labels[batch], [0, 0, 0, 0, 1, 1, 1, 1])
    sampler = BatchSampler(labels, 12, np.random.default_rng(0))
    assert sorted(np.concatenate([sampler.next() for _ in range(3)])) == list(range(36))
    with pytest.raises(ValueError, match="batch size 40 is larger than the training data"):
        BatchSampler(labels, 40, np.random.default_rng(0))


def test_distributional_difference_on_a_crafted_batch() -> None:
    """Eq. 43 with F+ rows [1, 1], [3, 3] (b/4 = 1 row per half) and F- rows [0, 0], [0, 2]."""
    features = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, 3.0]])
    labels = torch.tensor([0, 1, 0, 1])
    # MSE(F+[0], F-[0]) = 1; MSE(F+[1], F-[1]) = (9 + 1) / 2 = 5
    # MSE(F+[0], F+[1]) = 4;  MSE(F-[0], F-[1]) = (0 + 4) / 2 = 2
    assert float(distributional_difference(features, labels)) == pytest.approx(1 + 5 - 4 - 2)
    separated = torch.cat([torch.zeros(4, 3), torch.ones(4, 3)])
    assert float(distributional_difference(separated, torch.tensor([0] * 4 + [1] * 4))) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="b/2 samples per label"):
        distributional_difference(features, torch.tensor([0, 0, 0, 1]))
    assert gil_reward(0.5) == -0.5 and gil_reward(0.5, 0.25, 10.0) == pytest.approx(2.0)


def test_digits_task_split_and_mcar_rate(digits: object) -> None:
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1077, 360, 360)
    assert digits.train.X.shape[1:] == (1, 64) and digits.kind == "mlp" and digits.n_classes == 10
    assert digits.train.missing_rate == pytest.approx(0.3, abs=0.01)


def test_mar_mask_keeps_the_top_observed_and_hits_the_rate() -> None:
    X = np.random.default_rng(0).random((500, 40))
    missing = mar_mask(X, 0.3, seed=1)
    assert not missing[:, :20].any() and missing.mean() == pytest.approx(0.3, abs=0.01)
    with pytest.raises(DatasetError, match="MAR rate"):
        mar_mask(X, 0.6)


def test_physionet_task_is_48_by_35_z_scored(data_dir: Path) -> None:
    task = physionet_task(data_dir)
    assert task.kind == "lstm" and task.train.X.shape[1:] == (48, 35)
    assert len(task.train) + len(task.val) + len(task.test) == 4000
    assert abs(float(np.nanmean(task.train.X))) < 0.05
    assert 0.1 < task.test.y.mean() < 0.2  # ~14 % in-hospital deaths, stratified


def test_mean_and_brits_imputation_fill_every_missing_value(digits: object) -> None:
    mean = impute_task(digits, build_imputer("mean"))
    observed = ~np.isnan(digits.train.X)
    feature_mean = np.nanmean(digits.train.X[:, 0], axis=0)
    assert not np.isnan(mean.test.X).any()
    np.testing.assert_allclose(mean.test.X[:, 0][np.isnan(digits.test.X[:, 0])],
                               np.broadcast_to(feature_mean, digits.test.X[:, 0].shape)[np.isnan(digits.test.X[:, 0])],
                               rtol=1e-5)
    np.testing.assert_array_equal(mean.train.X[observed], digits.train.X[observed])
    brits = impute_task(as_sequences(digits, 8), build_imputer("brits", epochs=1, hidden_size=8))
    assert not np.isnan(brits.train.X).any() and brits.train.X.shape == (1077, 8, 8)
    assert {"zero-impute (ones)", "mean-impute", "deari-impute"} <= set(METHODS)


def _gil_parser() -> argparse.ArgumentParser:
    """Only this area's commands (``gapray.cli.build_parser`` imports every area's modules)."""
    parser = argparse.ArgumentParser(prog="gapray")
    gil_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_prints_scores_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert "gapray.gil.cli" in COMMAND_MODULES
    args = _gil_parser().parse_args(["gil", "evaluate", "--policy", "mask", "--dataset", "digits", "--steps", "20",
                                     "--hidden-sizes", "16", "--eval-every", "0"])
    assert args.handler(args) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["method"] == "mask" and {"accuracy", "auc", "ap"} <= set(scores)
    args = _gil_parser().parse_args(["gil", "evaluate", "--dataset", "mnist", "--data-dir", "/nonexistent"])
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        args.handler(args)


@pytest.mark.parametrize("flush", [True, False])
def test_a_cpu_session_flushes_denormals_unless_told_not_to(digits: object, flush: bool) -> None:
    # a saturated LSTM (reference 3max placeholder) fills its gates with denormals, 5x slower on x86
    from gapray.gil.training import PredictorSession, seeded_predictor, to_tensors

    config = TrainingConfig(steps=1, hidden_sizes=(8,), flush_denormal=flush)
    torch.set_flush_denormal(False)
    try:
        train = to_tensors(digits.train, "mlp", 0.0)
        PredictorSession(seeded_predictor(digits, config, 0), train, config)
        tiny = torch.tensor([1e-39], dtype=torch.float32)  # a denormal float32
        assert ((tiny * 1.0).item() == 0.0) is flush
    finally:
        torch.set_flush_denormal(False)


def _encoder_after(digits: object, importance_of: object, steps: int = 15) -> torch.Tensor:
    """Encoder weight after ``steps`` Adam updates of one seeded MLP on fixed batches, with
    ``importance_of(step, batch_input)`` as the GIL importance."""
    from gapray.gil.training import PredictorSession, seeded_predictor, to_tensors

    config = TrainingConfig(batch_size=32, hidden_sizes=(16,), placeholder="zero")
    train = to_tensors(digits.train, digits.kind, 0.0)
    session = PredictorSession(seeded_predictor(digits, config, 0), train, config)
    sampler = BatchSampler(train.y.numpy(), config.batch_size, np.random.default_rng(0))
    for step in range(steps):
        pending = session.forward_for_update(sampler.next())
        session.update(pending, importance_of(step, pending.deferred.input))
    return session.predictor.encoder.weight.detach().clone()


def test_adam_cancels_an_importance_that_is_constant_per_input_column(digits: object) -> None:
    """Adam divides each weight's step by its own gradient RMS, so scaling input column j's
    gradient by a fixed a_j (Eq. 4 with a state-independent policy) leaves the updates as
    plain back-propagation's; importance that varies from row to row does not cancel. This is
    why a learned policy whose importance barely depends on the state ties zero imputation."""
    columns = torch.rand(digits.n_features, generator=torch.Generator().manual_seed(1)) * 0.95 + 0.05
    rows = torch.Generator().manual_seed(2)
    plain = _encoder_after(digits, lambda step, x: torch.ones_like(x))
    constant = _encoder_after(digits, lambda step, x: columns.expand_as(x).clone())
    varying = _encoder_after(digits, lambda step, x: torch.rand(x.shape, generator=rows) * 0.95 + 0.05)
    moved = (plain - _encoder_after(digits, lambda step, x: torch.ones_like(x), steps=0)).norm()
    assert (constant - plain).norm() < 0.01 * moved        # measured 0.002 (Adam's eps on tiny gradients)
    assert (varying - plain).norm() > 0.1 * moved          # measured 0.24
