"""Users' tables: long and wide layouts onto a regular grid, and back (gapray.data.table, table_output)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapray.data import DatasetError, from_frame, read_table, to_frame, write_table
from gapray.data.loaders import AIR_FEATURES, PHYSIONET_FEATURES, load_beijing_air, load_physionet2012
from gapray.data.table import TableFormat

RECORDS = np.r_[0:249, 3147]
"""Records of set a (sorted by RecordID) in the round trip; 3147 (RecordID 140501) has no time-series row."""


def physionet_long_table(root: Path, records: np.ndarray) -> pd.DataFrame:
    """Record files of set a (positions by RecordID) as one long table, straight from the raw
    ``Time,Parameter,Value`` lines: time in minutes since admission, the 35 variables, -1 dropped;
    a record without any row gets one row with an empty value, so its id is declared."""
    frames = []
    with tarfile.open(root / "set-a.tar.gz") as archive:
        members = sorted((m for m in archive if m.name.endswith(".txt")), key=lambda m: int(Path(m.name).stem))
        for member in [members[i] for i in records]:
            handle = archive.extractfile(member)
            assert handle is not None
            rows = pd.read_csv(handle, dtype={"Time": str, "Parameter": str, "Value": float})
            rows = rows[rows["Parameter"].isin(PHYSIONET_FEATURES) & (rows["Value"] != -1)]
            hours, minutes = (rows["Time"].str.split(":", expand=True).astype(int).to_numpy().T
                              if len(rows) else (np.zeros(0, int), np.zeros(0, int)))
            frame = pd.DataFrame({"RecordID": int(Path(member.name).stem), "minutes": hours * 60 + minutes,
                                  "variable": rows["Parameter"].to_numpy(), "value": rows["Value"].to_numpy()})
            if frame.empty:
                frame = pd.DataFrame({"RecordID": [int(Path(member.name).stem)], "minutes": [0],
                                      "variable": ["HR"], "value": [np.nan]})
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def physionet_table(data_dir: Path) -> pd.DataFrame:
    return physionet_long_table(data_dir / "physionet2012", RECORDS)


def test_physionet_long_table_gives_the_native_loaders_arrays(physionet_table: pd.DataFrame, data_dir: Path) -> None:
    """Hour of hh:mm as the bin (minutes // 60), 48 bins from admission, later rows dropped, the last
    value in a bin (latest time, then file order): exactly what load_physionet2012 builds."""
    native = load_physionet2012(data_dir / "physionet2012", subset="a", progress=False)
    native = native.subset(RECORDS)
    assert (physionet_table["minutes"] >= 48 * 60).any()  # the rule that drops them is exercised
    dataset = from_frame(physionet_table, id_col="RecordID", time_col="minutes", freq=60, window=48, origin=0,
                         windows="first", variables=PHYSIONET_FEATURES)
    assert dataset.feature_names == native.feature_names
    np.testing.assert_array_equal(dataset.record_ids, native.record_ids)
    np.testing.assert_array_equal(dataset.times, native.times)
    np.testing.assert_array_equal(dataset.X, native.X)  # NaN where NaN, values bit for bit
    assert np.isnan(dataset.X).all(axis=(1, 2)).any()  # an all-missing record kept, as the native loader does


def test_beijing_air_wide_table_gives_the_native_per_station_arrays(data_dir: Path) -> None:
    """Station as id, the year/month/day/hour columns as one timestamp, hourly bins, 24-hour windows;
    rows shuffled: the grid does not depend on the row order."""
    archive = data_dir / "air" / "PRSA2017_Data_20130301-20170228.zip"
    native = load_beijing_air(archive, per_station=True)
    stations, days = ["Aotizhongxin", "Changping", "Dingling"], 20
    frames = []
    with zipfile.ZipFile(archive) as handle:
        for station in stations:
            name = next(n for n in handle.namelist() if f"PRSA_Data_{station}_" in n)
            rows = pd.read_csv(io.BytesIO(handle.read(name)), na_values=["NA"], keep_default_na=False)
            rows = rows.iloc[:24 * days]
            stamp = pd.to_datetime(rows[["year", "month", "day", "hour"]]).dt.strftime("%Y-%m-%d %H:%M")
            frames.append(pd.concat([rows[["station"]], stamp.rename("time"), rows[list(AIR_FEATURES)]], axis=1))
    table = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)
    dataset = from_frame(table, id_col="station", time_col="time", freq="1h", window=24)
    per_station = len(native) // len(native.extra["stations"])
    index = np.concatenate([native.extra["stations"].index(s) * per_station + np.arange(days) for s in stations])
    assert dataset.feature_names == AIR_FEATURES
    np.testing.assert_array_equal(dataset.X, native.X[index])
    np.testing.assert_array_equal(dataset.times, native.times[index])
    assert list(dataset.record_ids) == [s for s in stations for _ in range(days)]


def _small_long() -> pd.DataFrame:
    return pd.DataFrame({
        "stay": [7, 7, 7, 7, 3, 3, 3],
        "t": ["2024-01-01 00:10", "2024-01-01 00:50", "2024-01-01 02:05", "2024-01-01 00:20",
              "2024-01-01 05:00", "2024-01-01 06:40", "2024-01-01 06:30"],
        "variable": ["HR", "HR", "HR", "Temp", "HR", "Temp", "Temp"],
        "value": [80.1, 82.3, 90.7, 36.6, 70.2, 37.2, 37.0],
    })


def test_binning_last_and_mean_by_hand() -> None:
    """Series start at their first row's hour; 3-hour windows; stay 3's 06:40 row is the later one in its bin."""
    last = from_frame(_small_long(), id_col="stay", time_col="t", freq="1h", window=3)
    assert last.feature_names == ("HR", "Temp") and list(last.record_ids) == [3, 7]
    nan = np.nan
    expected = np.array([[[70.2, nan], [nan, 37.2], [nan, nan]],
                         [[82.3, 36.6], [nan, nan], [90.7, nan]]], dtype=np.float32)
    np.testing.assert_array_equal(last.X, expected)
    np.testing.assert_array_equal(last.lengths, [2, 3])  # stay 3 spans 05:00-06:59: one bin of padding
    mean = from_frame(_small_long(), id_col="stay", time_col="t", freq="1h", window=3, aggregate="mean")
    assert mean.X[1, 0, 0] == np.float32((80.1 + 82.3) / 2) and mean.X[0, 1, 1] == np.float32((37.2 + 37.0) / 2)


def test_long_series_split_into_windows_and_origin() -> None:
    """Numeric times, freq 2: 0-1 is bin 0; a series over 5 bins gives windows of 2, 2 and 1 (+1 padding)."""
    table = pd.DataFrame({"id": ["a"] * 5, "time": [0.0, 2.5, 4.0, 7.9, 9.0], "variable": "x",
                          "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    split = from_frame(table, id_col="id", time_col="time", freq=2, window=2)
    np.testing.assert_array_equal(split.X[..., 0], [[1, 2], [3, 4], [5, np.nan]])
    np.testing.assert_array_equal(split.lengths, [2, 2, 1])
    np.testing.assert_array_equal(split.extra["bin_start"], [0, 2, 4])
    first = from_frame(table, id_col="id", time_col="time", freq=2, window=2, windows="first", origin=-2)
    np.testing.assert_array_equal(first.X[..., 0], [[np.nan, 1]])  # bin 0 starts at the origin -2


def test_wide_categorical_one_hot_and_written_back() -> None:
    table = pd.DataFrame({"sensor": ["s1"] * 4, "time": [0, 1, 2, 3], "temp": [1.5, np.nan, 2.5, 3.0],
                          "weather": ["Rain", "Clear", None, "Rain"]})
    dataset = from_frame(table, id_col="sensor", time_col="time", freq=1, window=4, categorical=["weather"])
    assert dataset.feature_names == ("temp", "weather=Clear", "weather=Rain")
    np.testing.assert_array_equal(dataset.X[0, :, 1:], [[0, 1], [1, 0], [np.nan, np.nan], [0, 1]])
    prediction = {"imputation": np.nan_to_num(dataset.X, nan=0.25).astype(np.float64)}
    prediction["imputation"][0, 2, 1:] = [0.9, 0.1]
    out = to_frame(dataset, prediction)
    assert list(out["weather"]) == ["Rain", "Clear", "Clear", "Rain"]
    assert list(out["weather_imputed"]) == [False, False, True, False]
    assert list(out["temp_imputed"]) == [False, True, False, False] and out["temp"][1] == 0.25
    long = to_frame(dataset, prediction, layout="long")
    assert list(long["value"][long["variable"] == "weather"]) == ["Rain", "Clear", "Clear", "Rain"]
    assert [float(v) for v in long["value"][long["variable"] == "temp"]] == [1.5, 0.25, 2.5, 3.0]


def test_observed_values_come_back_bit_for_bit_in_both_layouts_and_files(tmp_path: Path) -> None:
    """Values that float32 cannot hold (0.1 + 1e-12 ...) are written back exactly, CSV and Parquet,
    with ids, bin times (time zone kept) and the long/wide layout of the input."""
    rng = np.random.default_rng(0)
    stamps = pd.date_range("2024-03-01", periods=30, freq="37min", tz="Europe/Paris")
    table = pd.DataFrame({"id": np.repeat(["a", "b"], 15), "time": stamps,
                          "x": rng.normal(size=30) + 1e-12, "y": rng.normal(size=30) * 1e6 + 0.1})
    dataset = from_frame(table, id_col="id", time_col="time", freq="1h", window=4)
    fmt = dataset.extra["table"]
    assert isinstance(fmt, TableFormat) and fmt.layout == "wide" and fmt.time_zone == "Europe/Paris"
    wide = to_frame(dataset)
    hour = table["time"].dt.tz_convert("UTC").dt.floor("1h")
    expected = table.assign(hour=hour).groupby(["id", "hour"]).last()  # the last row of every bin
    for suffix in (".parquet", ".csv"):
        written = write_table(wide, tmp_path / f"out{suffix}")
        back = pd.read_parquet(written) if suffix == ".parquet" else pd.read_csv(written, parse_dates=["time"])
        back = back[~back["x_imputed"]]
        assert len(back) == len(expected)
        key = pd.MultiIndex.from_arrays([back["id"], pd.to_datetime(back["time"], utc=True)])
        for name in ("x", "y"):
            np.testing.assert_array_equal(back[name].to_numpy(), expected[name].loc[key].to_numpy())
    assert str(wide["time"].dt.tz) == "Europe/Paris"
    long = to_frame(dataset, layout="long")
    assert list(long.columns) == ["id", "time", "variable", "value", "imputed", "std", "lower", "upper"]
    assert len(long) == 2 * len(wide)


def test_benchmark_dataset_written_as_a_table_reads_back_the_same(data_dir: Path) -> None:
    native = load_physionet2012(data_dir / "physionet2012", subset="a", progress=False).subset(np.arange(40))
    table = to_frame(native)[["id", "time", "variable", "value"]]
    back = from_frame(table, id_col="id", time_col="time", freq=1, window=48, origin=0, windows="first",
                      variables=native.feature_names)
    np.testing.assert_array_equal(back.X, native.X)
    np.testing.assert_array_equal(back.record_ids, native.record_ids)


def test_read_table_csv_and_parquet_agree(tmp_path: Path) -> None:
    table = _small_long()
    table.to_csv(tmp_path / "charts.csv", index=False)
    table.to_parquet(tmp_path / "charts.parquet", index=False)
    options = {"id_col": "stay", "time_col": "t", "freq": "1h", "window": 3}
    a, b = read_table(tmp_path / "charts.csv", **options), read_table(tmp_path / "charts.parquet", **options)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.extra["source"] == str(tmp_path / "charts.csv")


def test_write_table_leaves_nothing_half_written(tmp_path: Path) -> None:
    """A write that fails keeps an earlier file as it was and leaves no temporary file behind."""
    target = tmp_path / "imputed.parquet"
    target.write_bytes(b"earlier")
    unwritable = pd.DataFrame({"a": [object(), object()]})  # pyarrow cannot store arbitrary objects
    with pytest.raises(Exception, match="object"):
        write_table(unwritable, target)
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imputed.parquet"]
    with pytest.raises(DatasetError, match="unknown output type"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.xlsx")
