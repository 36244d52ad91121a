"""PhysioNet 2012 loader on the real set-a/set-b archives: figures, grid rules, cache."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from gapray.data import TimeSeriesDataset
from gapray.data.loaders import PHYSIONET_FEATURES, load_physionet2012
from gapray.data.loaders.physionet import _Record, parse_physionet_records


@pytest.fixture(scope="session")
def physionet_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty cache of its own, so the first load below is cold whatever ran before."""
    return tmp_path_factory.mktemp("physionet-cache")


@pytest.fixture(scope="session")
def cold_load(data_dir: Path, physionet_cache: Path) -> tuple[TimeSeriesDataset, float]:
    """Set a parsed once per session from the archive into an empty cache, with its wall time."""
    start = time.perf_counter()
    dataset = load_physionet2012(data_dir / "physionet2012", "a", cache_dir=physionet_cache, progress=False)
    return dataset, time.perf_counter() - start


def test_set_a_has_the_published_shape_missing_rate_and_positives(cold_load) -> None:
    dataset, _ = cold_load
    assert dataset.X.shape == (4000, 48, 35)
    assert dataset.X.dtype == np.float32
    assert abs(dataset.missing_rate - 0.805) <= 0.002
    assert dataset.y is not None and dataset.y.dtype == np.int64
    assert int(dataset.y.sum()) == 554
    assert dataset.feature_names == PHYSIONET_FEATURES
    assert dataset.feature_names[:3] == ("DiasABP", "HR", "Na") and dataset.feature_names[-1] == "ALP"
    assert dataset.times is not None and np.array_equal(dataset.times[0], np.arange(48))
    assert dataset.record_ids is not None and np.all(np.diff(dataset.record_ids) > 0)


def test_second_load_reads_the_cache_without_parsing(cold_load, data_dir: Path, physionet_cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache hit returns the same arrays and never parses the records again (wall times of the
    cold parse and the cache hit: ``benchmarks/timings.py``)."""
    dataset, _ = cold_load

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the records were parsed again instead of read from the cache")

    monkeypatch.setattr("gapray.data.loaders.physionet.parse_physionet_records", no_parsing)
    cached = load_physionet2012(data_dir / "physionet2012", "a", cache_dir=physionet_cache, progress=False)
    np.testing.assert_array_equal(cached.X, dataset.X)
    np.testing.assert_array_equal(cached.y, dataset.y)
    np.testing.assert_array_equal(cached.record_ids, dataset.record_ids)
    assert cached.feature_names == dataset.feature_names
    assert len(list((physionet_cache / "arrays").glob("physionet2012-a-*.npz"))) == 1
    assert not list((physionet_cache / "arrays").glob("*.tmp"))


def test_first_record_matches_its_file_hour_by_hour(cold_load, data_dir: Path) -> None:
    """Record 132539: HR at 00:07 (73) and 00:37 (77) share bin 0, the last one wins."""
    dataset, _ = cold_load
    with tarfile.open(data_dir / "physionet2012" / "set-a.tar.gz") as archive:
        handle = archive.extractfile("set-a/132539.txt")
        assert handle is not None
        lines = handle.read().decode().splitlines()[1:]
    row = int(np.flatnonzero(dataset.record_ids == 132539)[0])
    hr = PHYSIONET_FEATURES.index("HR")
    expected: dict[int, float] = {}
    for line in lines:
        stamp, parameter, value = line.split(",")
        hour = int(stamp.split(":")[0])
        if parameter == "HR" and hour < 48 and float(value) != -1:
            expected[hour] = float(value)
    assert expected[0] == 77.0
    for hour in range(48):
        got = dataset.X[row, hour, hr]
        assert (np.isnan(got) and hour not in expected) or got == pytest.approx(expected[hour])
    assert dataset.extra["static"][row, 0] == 54.0  # Age


def test_records_without_time_series_stay_all_missing(cold_load) -> None:
    dataset, _ = cold_load
    empty = np.isnan(dataset.X).all(axis=(1, 2))
    assert int(empty.sum()) == 3


def test_set_b_has_568_positives(data_dir: Path, tmp_path: Path) -> None:
    dataset = load_physionet2012(data_dir / "physionet2012", "b", cache_dir=tmp_path, progress=False)
    assert dataset.X.shape == (4000, 48, 35)
    assert int(dataset.y.sum()) == 568  # 14.20 %
    assert int(np.isnan(dataset.X).all(axis=(1, 2)).sum()) == 7


def _record(text: str, record_id: int = 1) -> _Record:
    return _Record(f"{record_id}.txt", record_id, text.encode())


def test_grid_rules_last_or_mean_drop_minus_one_and_hours_past_48() -> None:
    text = ("Time,Parameter,Value\n00:00,RecordID,1\n00:00,Age,60\n"
            "00:10,HR,80\n00:50,HR,90\n00:55,HR,-1\n01:59,HR,70\n"
            "47:59,Temp,37\n48:00,Temp,38\n50:00,HR,100\n00:30,MechVent,1\n")
    hr, temp = PHYSIONET_FEATURES.index("HR"), PHYSIONET_FEATURES.index("Temp")
    X_last, static, ids = parse_physionet_records([_record(text)], "last")
    X_mean, _, _ = parse_physionet_records([_record(text)], "mean")
    assert X_last.shape == (1, 48, 35)
    assert X_last[0, 0, hr] == 90.0 and X_mean[0, 0, hr] == 85.0
    assert X_last[0, 1, hr] == 70.0
    assert X_last[0, 47, temp] == 37.0
    assert int((~np.isnan(X_last)).sum()) == 3  # HR bins 0 and 1, Temp bin 47
    assert static[0, 0] == 60.0 and ids.tolist() == [1]


def test_set_c_without_files_is_a_clear_error(data_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="set c is not in the shared data"):
        load_physionet2012(data_dir / "physionet2012", "c", use_cache=False)


def test_an_extracted_folder_parses_like_the_archive(cold_load, data_dir: Path, tmp_path: Path) -> None:
    dataset, _ = cold_load
    root = tmp_path / "physionet2012"
    (root / "set-a").mkdir(parents=True)
    with tarfile.open(data_dir / "physionet2012" / "set-a.tar.gz") as archive:
        for member in archive:
            if member.isfile():
                handle = archive.extractfile(member)
                assert handle is not None
                (root / member.name).write_bytes(handle.read())
            if len(list((root / "set-a").iterdir())) == 50:
                break
    (root / "Outcomes-a.txt").write_bytes((data_dir / "physionet2012" / "Outcomes-a.txt").read_bytes())
    folder = load_physionet2012(root, "a", cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(folder.record_ids, dataset.record_ids[:50])
    np.testing.assert_array_equal(folder.X, dataset.X[:50])
    np.testing.assert_array_equal(folder.y, dataset.y[:50])


def test_crlf_blank_lines_and_a_missing_final_newline_parse_alike() -> None:
    text = "Time,Parameter,Value\n00:00,RecordID,1\n00:10,HR,80\n\n01:59,HR,70\n02:00,Temp,37"
    crlf = text.replace("\n", "\r\n")
    X, _, ids = parse_physionet_records([_record(text, 1), _record(crlf, 2)])
    np.testing.assert_array_equal(X[0], X[1])
    assert int((~np.isnan(X[0])).sum()) == 3 and ids.tolist() == [1, 2]
