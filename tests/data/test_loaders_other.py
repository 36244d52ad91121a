"""Beijing air, traffic, MNIST, digits and synthetic loaders; the registry and data-dir lookup."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gapray.data import TimeSeriesDataset
from gapray.data.loaders import (
    AIR_FEATURES,
    DATASET_NAMES,
    load_beijing_air,
    load_dataset,
    load_digits,
    load_mnist,
    load_traffic,
    make_synthetic,
    resolve_data_dir,
)

TRAFFIC_HEADER = "holiday,temp,rain_1h,snow_1h,clouds_all,weather_main,weather_description,date_time,traffic_volume\n"


@pytest.fixture(scope="session")
def air(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TimeSeriesDataset:
    return load_beijing_air(data_dir / "air", cache_dir=tmp_path_factory.mktemp("air-cache"))


def test_air_stacks_12_stations_into_1461_daily_windows_with_1_56_percent_missing(air: TimeSeriesDataset) -> None:
    assert air.X.shape == (1461, 24, 132)
    assert round(100 * air.missing_rate, 2) == 1.56
    assert air.feature_names[0] == "Aotizhongxin/PM2.5"
    assert air.feature_names[-1] == "Wanshouxigong/WSPM"
    assert air.extra["window_start"][0] == "2013-03-01 00:00"
    assert air.extra["window_start"][-1] == "2017-02-28 00:00"


def test_air_first_hour_matches_the_csv(air: TimeSeriesDataset, data_dir: Path) -> None:
    with zipfile.ZipFile(data_dir / "air" / "PRSA2017_Data_20130301-20170228.zip") as archive:
        member = next(n for n in archive.namelist() if "Aotizhongxin" in n)
        header, first = archive.read(member).decode().splitlines()[:2]
    columns = [c.strip('"') for c in header.split(",")]
    values = dict(zip(columns, first.split(","), strict=True))
    expected = [float(values[f]) for f in AIR_FEATURES]
    np.testing.assert_allclose(air.X[0, 0, :11], expected, rtol=1e-6)


def test_air_per_station_layout_is_the_stacked_one_split_by_station(
        air: TimeSeriesDataset, data_dir: Path, tmp_path: Path) -> None:
    per_station = load_beijing_air(data_dir / "air", per_station=True, cache_dir=tmp_path)
    assert per_station.X.shape == (17532, 24, 11)
    assert per_station.feature_names == AIR_FEATURES
    station = 3
    np.testing.assert_array_equal(per_station.X[station * 1461:(station + 1) * 1461],
                                  air.X[:, :, station * 11:(station + 1) * 11])
    assert per_station.extra["station"][station * 1461] == station


def test_air_reads_the_extracted_folder_like_the_zip(air: TimeSeriesDataset, data_dir: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(data_dir / "air" / "PRSA2017_Data_20130301-20170228.zip") as archive:
        archive.extractall(tmp_path / "extracted")
    folder = load_beijing_air(tmp_path / "extracted" / "PRSA_Data_20130301-20170228", use_cache=False)
    np.testing.assert_array_equal(folder.X, air.X)


def test_traffic_sample_gives_73_windows_of_39_features(data_dir: Path) -> None:
    traffic = load_traffic(data_dir / "traffic", use_cache=False)
    assert traffic.X.shape == (73, 24, 39)
    assert traffic.feature_names[:5] == ("temp", "rain_1h", "snow_1h", "clouds_all", "traffic_volume")
    assert "holiday=None" in traffic.feature_names and "weather_main=Clouds" in traffic.feature_names
    assert int(traffic.extra["n_distinct_hours"]) == 1693
    missing_hours = np.isnan(traffic.X).all(axis=2)
    assert int(missing_hours.sum()) == 65
    assert np.array_equal(np.isnan(traffic.X).any(axis=2), missing_hours)  # whole hours are missing
    assert traffic.X[0, 0, 4] == 5545.0  # 2012-10-02 09:00


def test_traffic_merges_repeated_hours_and_marks_gaps(tmp_path: Path) -> None:
    rows = [
        "None,280.0,0.0,0.0,90,Rain,light rain,2013-01-01 00:00:00,100",
        "None,281.0,0.5,0.0,90,Mist,mist,2013-01-01 00:00:00,999",
        "None,282.0,0.0,0.0,20,Clear,sky is clear,2013-01-01 01:00:00,200",
        "New Years Day,283.0,0.0,0.0,20,Clear,sky is clear,2013-01-01 03:00:00,400",
    ]
    path = tmp_path / "Metro_Interstate_Traffic_Volume.csv.gz"
    path.write_bytes(gzip.compress((TRAFFIC_HEADER + "\n".join(rows) + "\n").encode()))
    traffic = load_traffic(path, window=2, use_cache=False)
    names = traffic.feature_names
    assert traffic.X.shape == (2, 2, 5 + 3 + 3 + 2)
    first = dict(zip(names, traffic.X[0, 0], strict=True))
    assert first["temp"] == 280.0 and first["traffic_volume"] == 100.0  # first row of the hour
    assert first["weather_main=Rain"] == 1.0 and first["weather_main=Mist"] == 1.0  # union of its rows
    assert first["weather_main=Clear"] == 0.0 and first["holiday=None"] == 1.0
    assert np.isnan(traffic.X[1, 0]).all()  # 02:00 has no row
    assert traffic.X[1, 1, names.index("holiday=New Years Day")] == 1.0



def test_traffic_drops_only_windows_with_no_row(tmp_path: Path) -> None:
    rows = [
        "None,280.0,0.0,0.0,90,Rain,light rain,2013-01-01 00:00:00,100",
        # 2013-01-01 02:00 to 05:00 has no row: the window [02:00, 04:00) is empty, [04:00, 06:00) is not
        "None,282.0,0.0,0.0,20,Clear,sky is clear,2013-01-01 05:00:00,200",
        "None,283.0,0.0,0.0,20,Clear,sky is clear,2013-01-01 06:00:00,300",
    ]
    path = tmp_path / "Metro_Interstate_Traffic_Volume.csv"
    path.write_text(TRAFFIC_HEADER + "\n".join(rows) + "\n")
    kept = load_traffic(path, window=2, use_cache=False)
    dropped = load_traffic(path, window=2, drop_empty_windows=True, use_cache=False)
    assert kept.X.shape[0] == 3 and np.isnan(kept.X[1]).all()
    assert dropped.X.shape[0] == 2
    np.testing.assert_array_equal(dropped.X, kept.X[[0, 2]])
    assert list(dropped.extra["window_start"]) == ["2013-01-01 00:00", "2013-01-01 04:00"]


def test_full_traffic_file_gives_the_papers_1860_samples_once_empty_windows_are_dropped(
        data_dir: Path, tmp_path: Path) -> None:
    """DEARI sec. 5.1 reports 1,860 samples (and 58 variables; the file's categories give 66)."""
    full = data_dir / "traffic" / "full"
    every = load_traffic(full, cache_dir=tmp_path)
    nonempty = load_traffic(full, drop_empty_windows=True, cache_dir=tmp_path)
    assert every.X.shape == (2189, 24, 66)
    assert nonempty.X.shape == (1859, 24, 66)
    assert int(every.extra["n_rows"]) == 48204
    assert not np.isnan(nonempty.X).all(axis=(1, 2)).any()

def test_mnist_test_set_has_10000_images_in_unit_range(data_dir: Path) -> None:
    mnist = load_mnist(data_dir / "mnist")
    assert mnist.X.shape == (10000, 1, 784)
    assert mnist.X.min() == 0.0 and mnist.X.max() == 1.0
    assert np.bincount(mnist.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.y[0] == 7


def test_digits_and_synthetic() -> None:
    digits = load_digits()
    assert digits.X.shape == (1797, 1, 64) and digits.X.max() == 1.0
    synthetic = make_synthetic(n_samples=400, n_steps=12, n_features=4, missing_rate=0.3, seed=1)
    assert synthetic.X.shape == (400, 12, 4)
    assert abs(synthetic.missing_rate - 0.3) < 0.02
    again = make_synthetic(n_samples=400, n_steps=12, n_features=4, missing_rate=0.3, seed=1)
    np.testing.assert_array_equal(synthetic.X, again.X)
    complete = synthetic.extra["X_complete"]
    observed = ~np.isnan(synthetic.X)
    np.testing.assert_array_equal(synthetic.X[observed], complete[observed])
    assert 0.3 < synthetic.y.mean() < 0.7
    correlation = np.corrcoef(complete.reshape(-1, 4).T)
    assert np.abs(correlation[np.triu_indices(4, 1)]).max() > 0.3  # features share latent sinusoids


def test_registry_and_data_dir_lookup(data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert set(DATASET_NAMES) == {"physionet2012", "beijing-air", "traffic", "mnist", "digits", "synthetic"}
    assert resolve_data_dir("mnist", data_dir) == data_dir / "mnist"
    assert resolve_data_dir("mnist", data_dir / "mnist") == data_dir / "mnist"
    monkeypatch.setenv("GAPRAY_DATA_DIR", str(data_dir))
    assert resolve_data_dir("beijing-air") == data_dir / "air"
    monkeypatch.setenv("GAPRAY_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("traffic", cache_dir=tmp_path / "cache") == tmp_path / "cache" / "data" / "traffic"
    assert load_dataset("mnist", data_dir).X.shape == (10000, 1, 784)
    assert load_dataset("synthetic", n_samples=5).X.shape[0] == 5
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_cache_is_keyed_by_options_and_survives_a_corrupt_entry(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gapray.data.cache import cache_root

    monkeypatch.setenv("GAPRAY_CACHE_DIR", str(tmp_path / "env-cache"))
    assert cache_root() == tmp_path / "env-cache"
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    first = load_traffic(data_dir / "traffic")
    entries = list((tmp_path / "env-cache" / "arrays").glob("traffic-*.npz"))
    assert len(entries) == 1
    load_traffic(data_dir / "traffic", window=12)
    assert len(list((tmp_path / "env-cache" / "arrays").glob("traffic-*.npz"))) == 2
    entries[0].write_bytes(b"not an npz file")
    again = load_traffic(data_dir / "traffic")
    np.testing.assert_array_equal(again.X, first.X)
    assert again.feature_names == first.feature_names
    assert entries[0].stat().st_size > 1000  # rewritten
