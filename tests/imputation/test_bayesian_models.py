"""Bayesian BRITS/DEARI end to end: frozen == deterministic, sampling steps train the posterior,
Monte Carlo prediction (batched), intervals widen in a long gap, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gapray.data.dataset import TimeSeriesDataset
from gapray.data.masking import remove_observed_per_sample
from gapray.imputation import BRITS, DEARI, BRITSConfig, DEARIConfig
from gapray.imputation.base import monte_carlo_records_per_pass
from gapray.imputation.bayesian import BayesianRecurrentCell, load_deterministic_state, sampled_weights, split_samples
from gapray.imputation.rits import RITS
from gapray.imputation.training import prepare
from gapray.imputation.uncertainty import gap_groups

TINY = {"hidden_size": 8, "batch_size": 16, "seed": 0}


def _sines(n: int = 48, steps: int = 20, features: int = 3, seed: int = 0) -> TimeSeriesDataset:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :, None]
    x = np.sin(0.35 * t + rng.uniform(0, 6, (n, 1, features))) + 0.05 * rng.normal(size=(n, steps, features))
    x[rng.random(x.shape) < 0.2] = np.nan
    return remove_observed_per_sample(TimeSeriesDataset(X=x.astype(np.float32), name="sines"), 0.1, seed)


@pytest.mark.parametrize(("model_class", "kind"), [(DEARI, "lstm"), (BRITS, "gru")])
def test_frozen_bayesian_model_equals_deterministic_model_with_the_same_means(model_class: type, kind: str) -> None:
    if model_class is DEARI:
        config = DEARIConfig(
            n_layers=2, attention_layers=1, attention_heads=2, cell=kind, dml=True, dml_attention_heads=2, **TINY
        )
    else:
        config = BRITSConfig(cell=kind, dml=True, dml_attention_heads=2, **TINY)
    deterministic, bayesian = model_class(config), model_class(config.replace(bayesian=True, unfreeze_every=3))
    deterministic._build(3)
    bayesian._build(3)
    n_layers = getattr(config, "n_layers", 1)
    assert sum(isinstance(m, BayesianRecurrentCell) for m in bayesian.core.modules()) == n_layers
    load_deterministic_state(bayesian.core, deterministic.core.state_dict())
    test = _sines(n=10)
    expected = deterministic.predict(test)["imputation"]
    assert np.array_equal(bayesian.predict(test, n_samples=0)["imputation"], expected)
    batch = prepare(test, "brits", torch.device("cpu")).batch(slice(0, 10))
    deterministic.core.eval()
    bayesian.core.eval()
    torch.manual_seed(0)
    expected_loss = deterministic.core(batch).loss
    torch.manual_seed(0)
    assert torch.equal(bayesian.core(batch).loss, expected_loss)


def test_sampling_steps_train_the_posterior_spread_and_add_the_kl_term() -> None:
    train, val = _sines(n=32), _sines(n=16, seed=1)
    model = BRITS(BRITSConfig(bayesian=True, unfreeze_every=2, n_samples=3, epochs=1, kl_weight=5.0, **TINY))
    model._build(3)
    rho_before = {n: p.detach().clone() for n, p in model.core.named_parameters() if n.endswith(".rho")}
    model.fit(train, val)  # 2 steps per epoch: step 1 samples
    rho_after = dict(model.core.named_parameters())
    assert all(not torch.equal(rho_after[n], rho_before[n]) for n in rho_before)
    deterministic_steps = BRITS(BRITSConfig(bayesian=True, unfreeze_every=3, n_samples=3, epochs=1, **TINY))
    deterministic_steps.fit(train, val)  # steps 0 and 1 are frozen: rho gets no gradient
    assert all(torch.all(p == -6.0) for n, p in deterministic_steps.core.named_parameters() if n.endswith(".rho"))
    batch = prepare(train, "brits", torch.device("cpu")).batch(slice(0, 8))
    assert "kl" in model.core(batch, kl_coefficient=1e-3).terms
    assert "kl" not in model.core(batch).terms


def test_monte_carlo_prediction_keys_and_invariants(tmp_path: Path) -> None:
    model = BRITS(BRITSConfig(bayesian=True, unfreeze_every=1, epochs=1, cell="gru", **TINY))
    model.fit(_sines(n=32), _sines(n=16, seed=1))
    test = _sines(n=12, seed=2)
    torch.manual_seed(0)
    prediction = model.predict(test, n_samples=5, level=0.8, return_samples=True)
    assert set(prediction) == {"imputation", "std", "epistemic_std", "aleatoric_std", "lower", "upper",
                               "calibrated_std", "samples"}  # fitted with validation data: calibrated
    assert prediction["samples"].shape == (5, *test.X.shape)
    observed = ~np.isnan(test.X)
    for key in ("std", "epistemic_std", "aleatoric_std", "calibrated_std"):
        assert np.all(prediction[key][observed] == 0.0)  # observed values are kept in every sample
    assert np.all(prediction["std"][~observed] > 0.0)
    assert np.allclose(prediction["std"], np.hypot(prediction["epistemic_std"], prediction["aleatoric_std"]))
    assert np.all(prediction["lower"] <= prediction["imputation"])
    assert np.all(prediction["imputation"] <= prediction["upper"])
    # default point estimate: the posterior-mean pass, not the samples' mean (they differ here)
    assert np.array_equal(prediction["imputation"], model.predict(test, n_samples=0)["imputation"])
    assert not np.allclose(prediction["imputation"], prediction["samples"].mean(0), atol=1e-6)
    # calibrated: mean +- q_gap * std with the validation multipliers; raw: mean +- z * std
    scaler = model.uncertainty.calibration.scaler(0.8)
    half = (scaler.multipliers(gap_groups(test.mask)) * prediction["std"])[~observed]
    assert np.allclose((prediction["upper"] - prediction["imputation"])[~observed], half, atol=1e-5)
    assert np.allclose(prediction["calibrated_std"][~observed] * 1.2816, half, rtol=1e-3)
    assert np.all(prediction["upper"][observed] == prediction["lower"][observed])
    torch.manual_seed(0)
    raw = model.predict(test, n_samples=5, level=0.8, calibrated=False)
    assert "calibrated_std" not in raw and np.allclose(raw["std"], prediction["std"])
    assert np.allclose(raw["upper"] - raw["imputation"], 1.2816 * raw["std"], rtol=1e-3)
    # save/load keeps weights, the aleatoric scale and the calibration
    again = BRITS.load(model.save(tmp_path / "bayes.pt"))
    frozen = model.predict(test, n_samples=0)["imputation"]
    assert np.array_equal(again.predict(test, n_samples=0)["imputation"], frozen)
    torch.manual_seed(0)
    reloaded = again.predict(test, n_samples=5, level=0.8)
    assert all(np.allclose(reloaded[k], prediction[k]) for k in ("imputation", "std", "lower", "upper"))
    unfitted = BRITS(BRITSConfig(bayesian=True, **TINY))
    unfitted._build(3)
    assert "calibrated_std" not in unfitted.predict(test, n_samples=2)  # no calibration yet: raw
    with pytest.raises(ValueError, match="no calibration"):
        unfitted.predict(test, n_samples=2, calibrated=True)
    deterministic = BRITS(BRITSConfig(epochs=1, **TINY))
    deterministic.fit(_sines(n=16))
    with pytest.raises(ValueError, match="not Bayesian"):
        deterministic.predict(test, n_samples=3)
    with pytest.raises(ValueError, match="point_estimate must be"):
        BRITSConfig(bayesian=True, point_estimate="median")


def test_a_loaded_finished_bayesian_run_fits_its_uncertainty_when_fit_is_called(tmp_path: Path) -> None:
    """Checkpoints are saved after every epoch, before ``fit`` ends with ``fit_uncertainty``: a
    finished run loaded from one (``--resume`` of a done row) must still get its calibration."""
    train, val = _sines(n=32), _sines(n=16, seed=1)
    model = BRITS(BRITSConfig(bayesian=True, unfreeze_every=1, epochs=1, cell="gru", **TINY))
    model.fit(train, val, checkpoint_path=tmp_path / "run.pt")
    loaded = BRITS.load(tmp_path / "run.pt")
    assert loaded.uncertainty is None  # saved at the end of the epoch
    assert loaded.fit(train, val) == []  # nothing left to train
    assert loaded.uncertainty is not None and loaded.uncertainty.calibration is not None
    torch.manual_seed(0)
    expected = model.predict(_sines(n=8, seed=2), n_samples=3)
    torch.manual_seed(0)
    got = loaded.predict(_sines(n=8, seed=2), n_samples=3)
    assert all(np.allclose(got[k], expected[k]) for k in ("imputation", "std", "lower", "upper"))


def _correlated_sines(n: int, seed: int, steps: int = 20, long_gaps: bool = False) -> TimeSeriesDataset:
    """Three features that are one sine (x, -x, x/2) plus noise; 10 % missing at random, and with
    ``long_gaps`` a stretch of 1-9 steps missing in all features of each record. ``X_ori`` is
    complete, so every missing entry is ground truth."""
    rng = np.random.default_rng(seed)
    base = np.sin(0.35 * np.arange(steps)[None, :, None] + rng.uniform(0, 6, (n, 1, 1)))
    full = (base * np.array([1.0, -1.0, 0.5]) + 0.05 * rng.normal(size=(n, steps, 3))).astype(np.float32)
    x = full.copy()
    x[rng.random(x.shape) < 0.1] = np.nan
    if long_gaps:
        for record in range(n):
            length = int(rng.integers(1, 10))
            start = int(rng.integers(1, steps - length))
            x[record, start : start + length] = np.nan
    return TimeSeriesDataset(X=x, X_ori=full, name="correlated-sines")


def test_intervals_widen_in_a_long_gap() -> None:
    """Isolated missing values are pinned down by the other features; in a 10-step gap of all
    features the predictive std grows (the aleatoric scale learned on the training records'
    gaps) and predict's calibrated intervals (fitted on validation during fit) widen."""
    train = _correlated_sines(48, 0, long_gaps=True)
    val = _correlated_sines(32, 1, long_gaps=True)
    model = BRITS(BRITSConfig(bayesian=True, unfreeze_every=1, n_samples=2, epochs=4, lr=0.02, **TINY))
    model.fit(train, val)
    assert model.uncertainty is not None and model.uncertainty.calibration is not None
    test = _correlated_sines(16, 3)
    x = test.X.copy()
    x[:, 5:15] = np.nan
    test = test.replace(X=x)
    torch.manual_seed(0)  # the Monte Carlo draws
    prediction = model.predict(test)
    width = prediction["upper"] - prediction["lower"]
    isolated = np.isnan(x[:, :4])
    inner_gap = (slice(None), slice(7, 13))
    assert prediction["std"][inner_gap].mean() > 1.3 * prediction["std"][:, :4][isolated].mean()
    assert width[inner_gap].mean() > 1.2 * width[:, :4][isolated].mean()


def _bayesian_model(model_class: type, rho_init: float | None = None) -> BRITS | DEARI:
    if model_class is DEARI:
        model = DEARI(DEARIConfig(n_layers=2, attention_layers=1, attention_heads=2, bayesian=True, **TINY))
    else:
        model = BRITS(BRITSConfig(bayesian=True, cell="gru", **TINY))
    model._build(3)
    if rho_init is not None:
        with torch.no_grad():
            for name, parameter in model.core.named_parameters():
                if name.endswith(".rho"):
                    parameter.fill_(rho_init)
    return model


@pytest.mark.parametrize("model_class", [BRITS, DEARI])
def test_inference_pass_skips_the_loss_and_shares_input_terms_without_changing_the_imputation(
    model_class: type,
) -> None:
    """A Monte Carlo pass without autograd computes decay, combination weights and masks once per
    record and no loss; it gives the same samples (same draw) as the training path, which runs
    every copy with its own graph and builds the loss; the loss, read afterwards, agrees too."""
    model = _bayesian_model(model_class, rho_init=-2.0)  # wide posterior: samples differ clearly
    core = model.core.eval()
    batch = prepare(_sines(n=10), "brits", torch.device("cpu")).batch(slice(0, 10))
    k = 4
    with sampled_weights(core, k, torch.Generator().manual_seed(7)):
        training_path = core(batch.repeat(k))
        assert training_path.loss.requires_grad
    with torch.no_grad(), sampled_weights(core, k, torch.Generator().manual_seed(7)):
        repeated = batch.repeat(k)
        values, mask, _, repeats = repeated.recurrence_inputs(repeated.values)
        assert repeats == k and values is batch.values and mask.shape[1] == 10  # records shared by the copies
        inference_path = core(batch.repeat(k), with_loss=False)
        lazy_loss = core(batch.repeat(k)).loss
    samples = split_samples(inference_path.imputation, k)
    assert torch.allclose(samples, split_samples(training_path.imputation.detach(), k), atol=1e-6)
    assert not torch.allclose(samples[0], samples[1])
    assert torch.allclose(lazy_loss, training_path.loss.detach(), atol=1e-6)
    with torch.no_grad():  # frozen: the no-loss path is the loss path's imputation, bit for bit
        assert torch.equal(core(batch, with_loss=False).imputation, core(batch).imputation)


def test_rits_refuses_inputs_that_are_not_copies_of_its_records() -> None:
    rits = RITS(3, 4, n_directions=1)
    mask, deltas = torch.ones(1, 2, 5, 3), torch.ones(1, 2, 5, 3)
    assert rits(torch.zeros(1, 6, 5, 3), mask, deltas, repeats=3).imputation.shape == (1, 6, 5, 3)
    assert rits(torch.zeros(1, 2, 5, 3), mask, deltas, repeats=3).imputation.shape == (1, 6, 5, 3)
    with pytest.raises(ValueError, match="3 copies of 2 records"):
        rits(torch.zeros(1, 4, 5, 3), mask, deltas, repeats=3)


@pytest.mark.parametrize("model_class", [BRITS, DEARI])
def test_monte_carlo_prediction_is_seeded_and_collapses_to_the_frozen_network(model_class: type) -> None:
    test = _sines(n=40, seed=3)
    model = _bayesian_model(model_class, rho_init=-2.0)
    torch.manual_seed(0)
    first = model.predict(test, n_samples=5, return_samples=True)
    torch.manual_seed(0)
    again = model.predict(test, n_samples=5, return_samples=True)
    assert all(np.array_equal(first[key], again[key]) for key in first)
    frozen = model.predict(test, n_samples=0)["imputation"]
    assert np.array_equal(first["imputation"], frozen)  # point_estimate="posterior_mean"
    assert not np.allclose(first["samples"].mean(0), frozen, atol=1e-3)
    model.config = model.config.replace(point_estimate="mc_mean")
    torch.manual_seed(0)
    averaged = model.predict(test, n_samples=5, return_samples=True)
    assert np.allclose(averaged["imputation"], averaged["samples"].mean(0), atol=1e-6)
    assert np.array_equal(averaged["std"], first["std"])  # the spread does not depend on the point
    # a posterior with zero spread (softplus(-200) == 0): every weight sample is the frozen network;
    # the masked passes still move the missing entries (aleatoric part)
    collapsed = _bayesian_model(model_class, rho_init=-200.0)
    single = collapsed.predict(test, n_samples=1)
    frozen = collapsed.predict(test, n_samples=0)["imputation"]
    assert np.allclose(single["imputation"], frozen, atol=1e-6) and np.all(single["epistemic_std"] == 0.0)
    several = collapsed.predict(test, n_samples=3)
    assert np.allclose(several["imputation"], frozen, atol=1e-6) and np.all(several["epistemic_std"] == 0.0)
    assert np.all(several["std"] == several["aleatoric_std"]) and several["aleatoric_std"].max() > 1e-3
    collapsed.config = collapsed.config.replace(aleatoric="none")
    assert np.all(collapsed.predict(test, n_samples=3)["std"] == 0.0)


def test_monte_carlo_passes_split_the_records_evenly() -> None:
    assert monte_carlo_records_per_pass(400, 64, 10) == 58  # 7 passes of at most 64 records, not 6 x 64 + 16
    assert monte_carlo_records_per_pass(147, 64, 10) == 49  # 3 passes
    assert monte_carlo_records_per_pass(10, 64, 10) == 10
    assert monte_carlo_records_per_pass(64, 16, 10) == 32  # at least 32 records per pass
    assert monte_carlo_records_per_pass(1000, 64, 2) == 250  # 4 passes of at most 320
