"""Predictive distribution of Bayesian BRITS/DEARI: masked (aleatoric) passes, the Laplace scale,
posterior learning settings, and informative calibrated intervals on real PhysioNet records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gapray.data.dataset import TimeSeriesDataset
from gapray.data.loaders import load_physionet2012
from gapray.data.masking import remove_observed_per_sample
from gapray.data.splits import imputation_split
from gapray.imputation import BRITS, BRITSConfig
from gapray.imputation.aleatoric import LaplaceScaleModel
from gapray.imputation.bayesian import optimizer_parameter_groups
from gapray.imputation.predictive import add_predictive_std, masked_copies, masked_passes, predictive_moments
from gapray.imputation.uncertainty import gap_groups, informativeness_scores

TINY = {"hidden_size": 8, "batch_size": 16, "seed": 0}


def _sines(n: int, seed: int = 0) -> TimeSeriesDataset:
    rng = np.random.default_rng(seed)
    t = np.arange(20)[None, :, None]
    x = np.sin(0.35 * t + rng.uniform(0, 6, (n, 1, 3))) + 0.05 * rng.normal(size=(n, 20, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    return remove_observed_per_sample(TimeSeriesDataset(X=x.astype(np.float32), name="sines"), 0.1, seed)


def _frozen_bayesian_brits() -> BRITS:
    """A Bayesian BRITS whose posterior has zero spread: every weight sample is the mean network."""
    model = BRITS(BRITSConfig(bayesian=True, cell="gru", **TINY))
    model._build(3)
    with torch.no_grad():
        for name, parameter in model.core.named_parameters():
            if name.endswith(".rho"):
                parameter.fill_(-200.0)
    return model


def test_masked_passes_are_the_network_on_independently_masked_copies() -> None:
    """Pass k is the frozen network's imputation of copy k (its own mask and recomputed deltas),
    with the dataset's observed values put back; copies differ, observed entries never move."""
    model = _frozen_bayesian_brits()
    data = _sines(12).replace(X_ori=None)
    passes = masked_passes(model.core, data, "brits", torch.device("cpu"), records_per_pass=5, n_passes=4,
                           rate=0.3, rng=np.random.default_rng(3)).numpy()
    assert passes.shape == (4, *data.X.shape)
    rng = np.random.default_rng(3)  # the same draws, chunk by chunk as masked_passes takes them
    chunks = [masked_copies(data.subset(np.arange(s, min(s + 5, 12))), 0.3, 4, rng) for s in range(0, 12, 5)]
    observed = ~np.isnan(data.X)
    for k in range(4):
        copy = TimeSeriesDataset(X=np.concatenate([chunk[k].X for chunk in chunks]), name="copy")
        assert (~np.isnan(copy.X)).sum() < observed.sum()  # this copy lost some observed values
        expected = np.where(observed, np.nan_to_num(data.X), model.predict(copy, n_samples=0)["imputation"])
        assert np.allclose(passes[k], expected, atol=1e-5)
    assert np.all(passes[:, observed] == data.X[observed])
    assert not np.allclose(passes[0], passes[1])


def test_predictive_moments_and_std_by_hand() -> None:
    weights = np.array([[1.0, 5.0], [3.0, 5.0]])[:, None, None, :]  # K=2 samples of a [1, 1, 2] dataset
    masking = np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])[:, None, None, :]
    moments = predictive_moments(weights, masking)
    assert moments["imputation"].ravel().tolist() == [2.0, 5.0]
    assert np.allclose(moments["epistemic_std"].ravel(), [np.sqrt(2.0), 0.0])
    assert np.allclose(moments["masking_spread"].ravel(), [2.0, 0.0])
    mask = np.array([0.0, 1.0]).reshape(1, 1, 2)
    both = add_predictive_std(moments, mask, "masking")
    assert np.allclose(both["std"].ravel(), [np.sqrt(6.0), 0.0]) and both["aleatoric_std"].ravel()[1] == 0.0
    assert np.allclose(add_predictive_std(moments, mask, "none")["std"].ravel(), [np.sqrt(2.0), 0.0])
    with pytest.raises(ValueError, match="LaplaceScaleModel"):
        add_predictive_std(moments, mask, "laplace")


def test_laplace_scale_model_recovers_known_scales() -> None:
    """Errors drawn from Laplace(0, b) with log b = 0.3 + a_feature + c_gap + 0.5 log(spread): the
    maximum-likelihood fit finds the exponent and the scales of fresh entries."""
    rng = np.random.default_rng(0)
    n, offsets, gap_offsets = 60000, np.array([0.0, 0.7, -0.5]), np.array([0.0, 0.0, 0.4, 0.8, 0.0, 0.0])
    features, gaps = rng.integers(0, 3, n), rng.integers(1, 4, n)
    spread = np.exp(rng.uniform(-5, -1, n))
    log_b = 0.3 + offsets[features] + gap_offsets[gaps] + 0.5 * np.log(spread + 1e-4)
    errors = np.abs(rng.laplace(0.0, np.exp(log_b)))
    model = LaplaceScaleModel.fit(errors, features, gaps, spread, n_features=3)
    assert model.coefficients[-1] == pytest.approx(0.5, abs=0.03)
    ratio = model.scale(features, gaps, spread) / np.exp(log_b)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.03) and np.percentile(np.abs(np.log(ratio)), 95) < 0.1
    again = LaplaceScaleModel.from_state(model.to_state())
    assert np.array_equal(again.scale(features[:9], gaps[:9], spread[:9]), model.scale(features[:9], gaps[:9],
                                                                                        spread[:9]))
    assert np.allclose(model.std(features[:9], gaps[:9], spread[:9]), np.sqrt(2) * model.scale(
        features[:9], gaps[:9], spread[:9]))
    # noise growing with the level: 0.4 |x| for variable 1 only, nothing for the others
    level = rng.normal(0.0, 1.5, n)
    log_b_level = log_b + 0.4 * np.abs(level) * (features == 1)
    errors = np.abs(rng.laplace(0.0, np.exp(log_b_level)))
    with_level = LaplaceScaleModel.fit(errors, features, gaps, spread, n_features=3, level=level)
    ratio = with_level.scale(features, gaps, spread, level) / np.exp(log_b_level)
    assert np.percentile(np.abs(np.log(ratio)), 95) < 0.1 and with_level.alpha == pytest.approx(0.5, abs=0.03)
    without = LaplaceScaleModel.fit(errors, features, gaps, spread, n_features=3)
    assert np.percentile(np.abs(np.log(without.scale(features, gaps, spread) / np.exp(log_b_level))), 95) > 0.3
    with pytest.raises(ValueError, match="with the level"):
        with_level.scale(features, gaps, spread)
    assert LaplaceScaleModel.from_state(with_level.to_state()).uses_level


def test_rho_init_and_the_posterior_learning_rate_reach_the_model() -> None:
    """rho starts at config.rho_init; Adam's first step moves every parameter by about its learning
    rate, so one sampling step moves rho by lr * posterior_lr_scale (default: unfreeze_every)."""
    train, val = _sines(32), _sines(16, seed=1)
    moves = {}
    for scale in (None, 1.0):
        model = BRITS(BRITSConfig(bayesian=True, unfreeze_every=2, n_samples=3, epochs=1, lr=1e-3, rho_init=-4.0,
                                  posterior_lr_scale=scale, masking_samples=0, aleatoric="none", **TINY))
        model._build(3)
        rho = {n: p.detach().clone() for n, p in model.core.named_parameters() if n.endswith(".rho")}
        assert all(torch.all(r == -4.0) for r in rho.values())
        groups = optimizer_parameter_groups(model.core, model.config)
        assert [g["lr"] for g in groups] == [1e-3, 1e-3 * (2 if scale is None else 1)]
        assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == len(rho)
        model.fit(train, val)  # 2 steps: step 1 samples
        after = {n: p.detach() for n, p in model.core.named_parameters()}
        moves[scale] = max(float((after[n] - r).abs().max()) for n, r in rho.items())
    assert moves[None] == pytest.approx(2e-3, rel=0.02) and moves[1.0] == pytest.approx(1e-3, rel=0.02)


@pytest.fixture(scope="module")
def physionet_split(data_dir: Path) -> object:
    dataset = load_physionet2012(data_dir / "physionet2012", "a", progress=False).subset(range(400))
    return imputation_split(dataset, protocol="deari", rate=0.1, seed=0, fold=0)


def test_bayesian_brits_std_ranks_errors_and_calibrated_intervals_cover_on_physionet(physionet_split: object,
                                                                                    tmp_path: Path) -> None:
    """Real PhysioNet records: after a short training the default predictive std (weight spread +
    learned Laplace scale) ranks the test errors far better than the weight spread alone, and
    predict's calibrated 90 % intervals (fitted on validation in fit) cover about 90 % of the test
    set's removed entries; the raw interval of the weight spread alone covers almost nothing."""
    split = physionet_split
    model = BRITS(BRITSConfig(bayesian=True, cell="gru", hidden_size=16, batch_size=32, epochs=4, lr=3e-3,
                              unfreeze_every=5, n_samples=4, masking_samples=4, seed=0))
    model.fit(split.train, split.val)
    torch.manual_seed(0)
    prediction = model.predict(split.test, level=0.9)
    target, removed = np.nan_to_num(split.test.X_ori), split.test.indicating_mask
    inside = (prediction["lower"] <= target) & (target <= prediction["upper"])
    assert 0.85 <= inside[removed > 0].mean() <= 0.95
    torch.manual_seed(1)
    val = model.predict(split.val, calibrated=False)
    arguments = lambda key: (val["imputation"], val[key], np.nan_to_num(split.val.X_ori),  # noqa: E731
                             split.val.indicating_mask, split.val.mask, prediction["imputation"], prediction[key],
                             target, removed, split.test.mask)
    default, weights = informativeness_scores(*arguments("std")), informativeness_scores(*arguments("epistemic_std"))
    assert default["spearman"] > 0.2 and default["spearman"] > weights["spearman"] + 0.1
    assert weights["raw_picp"] < 0.2
    assert default["gap_calibrated"]["crps"] < weights["gap_calibrated"]["crps"]
    assert set(np.unique(gap_groups(split.test.mask)[removed > 0])) >= {1, 2, 3}  # real gaps are in play
