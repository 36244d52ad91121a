"""Models carry their preprocessing: scaler and variable names saved with them, results in original units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gapray.data import DatasetError, Standardizer, TimeSeriesDataset, from_frame, to_frame
from gapray.data.loaders import load_physionet2012
from gapray.imputation import BRITS, DEARI, BRITSConfig, DEARIConfig
from gapray.imputation.preprocessing import (
    Preprocessing,
    fit_in_original_units,
    impute_frame,
    predict_in_original_units,
)

TINY_DEARI = DEARIConfig(n_layers=2, hidden_size=8, attention_feedforward=16, epochs=1, device="cpu")


@pytest.fixture(scope="module")
def physionet(data_dir: Path) -> TimeSeriesDataset:
    return load_physionet2012(data_dir / "physionet2012", subset="a", progress=False).subset(np.arange(120))


@pytest.fixture(scope="module")
def fitted(physionet: TimeSeriesDataset) -> tuple[DEARI, object]:
    model = DEARI(TINY_DEARI)
    return model, fit_in_original_units(model, physionet, val_fraction=0.2, seed=0, show_progress=False)


def test_scaler_is_fitted_on_the_training_series_only(physionet: TimeSeriesDataset, fitted: tuple) -> None:
    model, result = fitted
    assert len(result.val_index) == 24 and len(result.train_index) == 96
    assert not set(result.train_index) & set(result.val_index)
    expected = Standardizer.fit(physionet.subset(result.train_index))
    np.testing.assert_array_equal(model.preprocessing.standardizer.mean, expected.mean)
    np.testing.assert_array_equal(model.preprocessing.standardizer.std, expected.std)
    assert not np.array_equal(expected.mean, Standardizer.fit(physionet).mean)  # the held-out series are left out
    assert model.preprocessing.feature_names == physionet.feature_names
    assert np.isfinite(result.val_mae) and result.val_mae > 0


def test_predictions_come_back_in_original_units_observed_values_bit_for_bit(
        physionet: TimeSeriesDataset, fitted: tuple) -> None:
    model, _ = fitted
    scaler = model.preprocessing.standardizer
    raw = physionet.subset(np.arange(100, 120))
    z = model.predict(scaler.transform(raw))["imputation"]
    result = predict_in_original_units(model, raw)["imputation"]
    observed = ~np.isnan(raw.X)
    assert np.array_equal(result[observed], raw.X[observed])  # exactly the values given
    np.testing.assert_array_equal(result[~observed], (z * scaler.std + scaler.mean)[~observed])
    heart_rate = raw.feature_names.index("HR")
    assert 40 < np.mean(result[..., heart_rate][~observed[..., heart_rate]]) < 140  # beats per minute, not z-scores
    np.testing.assert_array_equal(predict_in_original_units(model, raw.X)["imputation"], result)  # a raw array too


def test_save_and_load_keep_scaler_names_and_table_format(physionet: TimeSeriesDataset, tmp_path: Path) -> None:
    table = to_frame(physionet.subset(np.arange(60)))[["id", "time", "variable", "value"]]
    dataset = from_frame(table, id_col="id", time_col="time", freq=1, window=48, origin=0, windows="first")
    model = BRITS(BRITSConfig(hidden_size=8, epochs=1, device="cpu"))
    fit_in_original_units(model, dataset, show_progress=False)
    loaded = BRITS.load(model.save(tmp_path / "model.pt"))
    assert loaded.preprocessing is not None and model.preprocessing is not None
    assert loaded.preprocessing.feature_names == model.preprocessing.feature_names == dataset.feature_names
    assert loaded.preprocessing.table == model.preprocessing.table == dataset.extra["table"]
    np.testing.assert_array_equal(loaded.preprocessing.standardizer.std, model.preprocessing.standardizer.std)
    before, after = impute_frame(model, table), impute_frame(loaded, table)
    assert before.equals(after)
    observed = ~table["value"].isna()
    merged = table[observed].merge(after, on=["id", "time", "variable"], suffixes=("_in", ""))
    assert len(merged) == int(observed.sum()) and not merged["imputed"].any()
    assert np.array_equal(merged["value"].to_numpy(), merged["value_in"].to_numpy())


def test_other_variables_are_refused_naming_missing_and_unexpected(physionet: TimeSeriesDataset,
                                                                    fitted: tuple) -> None:
    model, _ = fitted
    names = list(physionet.feature_names)
    renamed = physionet.replace(feature_names=tuple(["Lactate2" if n == "Lactate" else n for n in names]))
    with pytest.raises(DatasetError, match=r"missing \['Lactate'\], unexpected \['Lactate2'\]"):
        predict_in_original_units(model, renamed)
    order = np.r_[1, 0, 2:len(names)]
    swapped = physionet.replace(X=physionet.X[..., order], feature_names=tuple(names[i] for i in order))
    with pytest.raises(DatasetError, match="in another order"):
        predict_in_original_units(model, swapped)
    with pytest.raises(DatasetError, match=r"expected an \[N, T, 35\] array"):
        predict_in_original_units(model, physionet.X[..., :34])
    with pytest.raises(DatasetError, match="carries no preprocessing"):
        predict_in_original_units(DEARI(TINY_DEARI), physionet)


def test_intervals_and_spreads_map_back_by_hand() -> None:
    """``x = z * std + mean`` for values and interval ends, ``s * std`` for spreads; observed entries exact."""
    scaler = Standardizer(mean=np.array([10.0, -2.0], dtype=np.float32), std=np.array([4.0, 0.5], dtype=np.float32))
    preprocessing = Preprocessing(("a", "b"), scaler)
    X = np.array([[[12.345678, np.nan], [np.nan, -1.0]]], dtype=np.float32)
    dataset = TimeSeriesDataset(X=X, feature_names=("a", "b"))
    z = np.array([[[0.5, 1.0], [-1.0, 2.0]]], dtype=np.float32)
    out = preprocessing.to_original_units({"imputation": z, "std": np.full_like(z, 0.25), "lower": z - 0.5,
                                           "upper": z + 0.5, "samples": np.stack([z, z + 1.0])}, dataset)
    x = X[0, 0, 0]  # observed entries: the float32 value given, whatever the model said

    def expect(rows: list[list[float]]) -> np.ndarray:
        return np.array([rows], dtype=np.float32)

    np.testing.assert_array_equal(out["imputation"], expect([[x, -1.5], [6.0, -1.0]]))
    np.testing.assert_array_equal(out["std"], expect([[0.0, 0.125], [1.0, 0.0]]))
    np.testing.assert_array_equal(out["lower"], expect([[x, -1.75], [4.0, -1.0]]))
    np.testing.assert_array_equal(out["upper"], expect([[x, -1.25], [8.0, -1.0]]))
    np.testing.assert_array_equal(out["samples"][1], expect([[x, -1.0], [10.0, -1.0]]))


def test_bayesian_model_gives_intervals_in_original_units(physionet: TimeSeriesDataset) -> None:
    model = BRITS(BRITSConfig(hidden_size=8, epochs=1, bayesian=True, n_samples=3, unfreeze_every=1, device="cpu"))
    fit_in_original_units(model, physionet.subset(np.arange(60)), show_progress=False)
    raw = physionet.subset(np.arange(100, 110))
    scaler = model.preprocessing.standardizer
    torch.manual_seed(0)
    z = model.predict(scaler.transform(raw), n_samples=3)
    torch.manual_seed(0)
    out = predict_in_original_units(model, raw, n_samples=3)
    missing = np.isnan(raw.X)
    np.testing.assert_allclose(out["std"][missing], (z["std"] * scaler.std)[missing], rtol=1e-6)
    assert (out["lower"][missing] <= out["imputation"][missing]).all()
    assert (out["imputation"][missing] <= out["upper"][missing]).all()
    assert (out["std"][~missing] == 0).all()
