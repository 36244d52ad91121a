"""BRITS/DEARI public API: the 1-layer invariant, parameter counts, save/load/resume, determinism, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gapray.data import DatasetError, TimeSeriesDataset, remove_observed_per_sample
from gapray.imputation import BRITS, DEARI, BRITSConfig, DEARIConfig
from gapray.imputation.brits.core import BRITSCore
from gapray.imputation.deari.core import DEARICore
from gapray.imputation.rits import RITS
from gapray.imputation.training import prepare

TINY = {"hidden_size": 8, "batch_size": 8, "epochs": 2}


def _dataset(n: int = 24, t: int = 6, d: int = 3, seed: int = 0) -> TimeSeriesDataset:
    rng = np.random.default_rng(seed)
    base = np.sin(np.linspace(0, 3, t))[None, :, None] + rng.normal(scale=0.3, size=(n, t, d))
    X = base.astype(np.float32)
    X[rng.random(X.shape) < 0.3] = np.nan
    return remove_observed_per_sample(TimeSeriesDataset(X=X, name="toy"), 0.2, seed)


# --- parameter counts (DESIGN.md sec. 3, DEARI Sec. 5.5) -------------------------------------------
def test_one_rits_direction_has_the_papers_parameter_count() -> None:
    rits = RITS(35, 108, "lstm", n_directions=1)
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in rits.named_children()}
    assert counts == {"temporal_decay_h": 3888, "temporal_decay_x": 1260, "history_regression": 3815,
                      "feature_regression": 1260, "combination_weight": 2485, "cell": 77760}
    # 90,468; the paper's 90,577 adds a 109-parameter classification head we do not build
    assert sum(counts.values()) == 90_468


def test_each_extra_deari_layer_adds_two_rits_and_four_encoder_layers() -> None:
    encoder_layer = torch.nn.TransformerEncoderLayer(108, 4)
    assert sum(p.numel() for p in encoder_layer.parameters()) == 492_044
    sizes = [sum(p.numel() for p in DEARICore(35, DEARIConfig(n_layers=n)).parameters()) for n in (1, 2, 3)]
    assert sizes[0] == 2 * 90_468
    # + CLS token (108) per direction; the paper's 2,149,330 counts the head but not the token
    assert sizes[1] - sizes[0] == sizes[2] - sizes[1] == 2 * 90_468 + 4 * 492_044 + 2 * 108


# --- the 1-layer invariant ------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_deari_with_one_layer_is_brits(cell: str) -> None:
    data = prepare(_dataset(), "brits", torch.device("cpu"))
    brits = BRITSCore(3, BRITSConfig(hidden_size=8, cell=cell))
    deari = DEARICore(3, DEARIConfig(hidden_size=8, cell=cell, n_layers=1))
    assert len(deari.initial_states) == 0
    deari.layers[0].load_state_dict(brits.layer.state_dict())
    batch = data.batch(slice(0, 16))
    a, b = brits(batch), deari(batch)
    assert torch.equal(a.imputation, b.imputation)
    assert torch.equal(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(brits.layer.named_parameters(), deari.layers[0].parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_deari_layers_are_initialised_from_the_previous_layer() -> None:
    torch.manual_seed(0)
    data = prepare(_dataset(), "brits", torch.device("cpu"))
    core = DEARICore(3, DEARIConfig(hidden_size=8, n_layers=2, attention_heads=2)).eval()
    batch = data.batch(slice(0, 4))
    with torch.no_grad():
        out = core(batch)
        first, second = out.layers
        # the second layer's imputation depends on the CLS state: replacing the encoder changes it
        assert torch.allclose(out.imputation, (first.imputation + second.imputation) / 2)
        core.initial_states[0][0].cls_token.add_(1.0)
        assert not torch.allclose(core(batch).layers[1].imputation, second.imputation)
        assert torch.equal(core(batch).layers[0].imputation, first.imputation)


# --- fit / predict -----------------------------------------------------------------------------------
def test_predict_keeps_observed_values_and_fills_every_missing_one() -> None:
    ds = _dataset()
    model = DEARI(DEARIConfig(n_layers=2, attention_heads=2, **TINY))
    calls: list[tuple[int, dict[str, float]]] = []
    model.fit(ds, ds, epoch_callback=lambda e, m: calls.append((e, m)))
    assert [e for e, _ in calls] == [1, 2]
    assert set(calls[0][1]) == {"train_loss", "val_mae", "val_mre", "epoch_seconds", "samples_per_second"}
    imputed = model.predict(ds)["imputation"]
    observed = ~np.isnan(ds.X)
    assert imputed.shape == ds.X.shape and np.isfinite(imputed).all()
    np.testing.assert_array_equal(imputed[observed], ds.X[observed])
    np.testing.assert_array_equal(model.impute(ds.X), imputed)


def test_training_is_deterministic_on_cpu_under_a_seed() -> None:
    ds = _dataset()
    runs = [BRITS(BRITSConfig(seed=s, **TINY)) for s in (3, 3, 4)]
    for m in runs:
        m.fit(ds, ds)
    out = [m.impute(ds) for m in runs]
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], out[2])


def test_save_load_round_trip_and_resume_continue_the_same_run(tmp_path: Path) -> None:
    ds = _dataset()
    config = DEARIConfig(n_layers=2, attention_heads=2, dml=True, dml_attention_heads=2,
                         **{**TINY, "epochs": 4})
    straight = DEARI(config)
    straight.fit(ds, ds)

    checkpoint = tmp_path / "deari.pt"
    interrupted = DEARI(config)

    def save_at_two(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            interrupted.save(checkpoint)

    interrupted.fit(ds, ds, epoch_callback=save_at_two)
    resumed = DEARI.load(checkpoint)
    assert resumed.state.epoch == 2
    history = resumed.fit(ds, ds)
    assert len(history) == 2 and resumed.state.epoch == 4
    np.testing.assert_array_equal(resumed.impute(ds), straight.impute(ds))

    final = tmp_path / "final.pt"
    straight.save(final)
    loaded = DEARI.load(final)
    np.testing.assert_array_equal(loaded.impute(ds), straight.impute(ds))
    assert loaded.config == straight.config and loaded.state.best_epoch == straight.state.best_epoch
    with pytest.raises(ValueError, match="holds a DEARI model"):
        BRITS.load(final)


def test_a_mid_training_checkpoint_switches_to_its_best_weights_and_still_resumes(tmp_path: Path) -> None:
    ds = _dataset()
    config = BRITSConfig(**{**TINY, "epochs": 4, "lr": 0.05})
    straight = BRITS(config)
    straight.fit(ds, ds)
    checkpoint = tmp_path / "epoch3.pt"
    interrupted = BRITS(config)
    interrupted.fit(ds, ds, epoch_callback=lambda epoch, _: interrupted.save(checkpoint) if epoch == 3 else None)

    loaded = BRITS.load(checkpoint)
    latest = loaded.impute(ds)
    assert loaded.use_best_weights()
    best = loaded.core.state_dict()
    for name, value in loaded.state.best_weights.items():
        torch.testing.assert_close(best[name], value, rtol=0, atol=0)
    if loaded.state.best_epoch != 3:  # the best epoch is an earlier one: the weights really changed
        assert not np.array_equal(loaded.impute(ds), latest)
    loaded.fit(ds, ds)  # resumes from epoch 3's latest weights, not from the best ones
    np.testing.assert_array_equal(loaded.impute(ds), straight.impute(ds))
    without_validation = BRITS(config)
    without_validation.fit(ds)  # no validation data: the best weights are the latest ones
    before = without_validation.impute(ds)
    assert without_validation.use_best_weights()
    np.testing.assert_array_equal(without_validation.impute(ds), before)


def test_early_stopping_stops_after_patience_without_improvement() -> None:
    ds = _dataset()
    model = BRITS(BRITSConfig(hidden_size=8, batch_size=8, epochs=50, patience=1, lr=0.5))
    history = model.fit(ds, ds)
    assert model.state.stopped and len(history) < 50
    assert model.state.best_val_mae == min(h["val_mae"] for h in history)


# --- bad inputs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted() -> BRITS:
    model = BRITS(BRITSConfig(hidden_size=4, batch_size=8, epochs=1))
    model.fit(_dataset())
    return model


def test_inf_in_observed_values_is_rejected(fitted: BRITS) -> None:
    X = _dataset().X.copy()
    X[1, 2, 0] = np.inf
    with pytest.raises(DatasetError, match="infinite value at sample 1, step 2, feature 0"):
        fitted.predict(X)


def test_wrong_rank_is_rejected(fitted: BRITS) -> None:
    with pytest.raises(DatasetError, match=r"\[N, T, D\].*shape \(6, 3\)"):
        fitted.impute(np.zeros((6, 3), dtype=np.float32))


def test_feature_count_mismatch_with_fitted_model_is_rejected(fitted: BRITS) -> None:
    with pytest.raises(DatasetError, match="4 features, the model was fitted on 3"):
        fitted.predict(_dataset(d=4))
    with pytest.raises(DatasetError, match="4 features, the model was fitted on 3"):
        fitted.fit(_dataset(d=4))


def test_empty_dataset_is_rejected() -> None:
    empty = TimeSeriesDataset(X=np.zeros((0, 6, 3), dtype=np.float32), name="empty")
    with pytest.raises(DatasetError, match="empty"):
        BRITS(BRITSConfig(**TINY)).fit(empty)


def test_scoring_needs_removed_entries(fitted: BRITS) -> None:
    plain = TimeSeriesDataset(X=_dataset().X, name="plain")
    with pytest.raises(DatasetError, match="no artificially removed entries"):
        fitted.evaluate(plain)
    with pytest.raises(DatasetError, match="val .*no artificially removed entries"):
        BRITS(BRITSConfig(**TINY)).fit(_dataset(), plain)


def test_predict_before_fit_and_bad_config_fail_clearly() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        BRITS().predict(_dataset())
    with pytest.raises(ValueError, match="not divisible by attention_heads"):
        DEARIConfig(hidden_size=10, n_layers=2, attention_heads=4)
    with pytest.raises(TypeError, match="needs a DEARIConfig"):
        DEARI(BRITSConfig())
    with pytest.raises(ValueError, match="reconstruction_terms must be 'all' or 'combined', got 'x_c'"):
        BRITSConfig(reconstruction_terms="x_c")  # type: ignore[arg-type]
