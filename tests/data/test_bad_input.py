"""Broken inputs built in tmp_path from real records: each error names the file, line and field."""

from __future__ import annotations

import gzip
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gapray.data import DatasetError
from gapray.data.download import REMOTE_FILES, DownloadError, verify_file
from gapray.data.loaders import load_beijing_air, load_mnist, load_physionet2012, load_traffic

RECORDS = ("132539", "132540", "132541")


@pytest.fixture(scope="module")
def real_records(data_dir: Path) -> dict[str, bytes]:
    """The first three records of the real set-a archive."""
    contents: dict[str, bytes] = {}
    with tarfile.open(data_dir / "physionet2012" / "set-a.tar.gz") as archive:
        for member in archive:
            if Path(member.name).stem in RECORDS:
                handle = archive.extractfile(member)
                assert handle is not None
                contents[Path(member.name).stem] = handle.read()
            if len(contents) == len(RECORDS):
                break
    return contents


@pytest.fixture()
def physionet_copy(real_records: dict[str, bytes], data_dir: Path, tmp_path: Path) -> Path:
    """An extracted set-a/ with three real records and the real Outcomes-a.txt."""
    root = tmp_path / "physionet2012"
    (root / "set-a").mkdir(parents=True)
    for record, content in real_records.items():
        (root / "set-a" / f"{record}.txt").write_bytes(content)
    (root / "Outcomes-a.txt").write_bytes((data_dir / "physionet2012" / "Outcomes-a.txt").read_bytes())
    return root


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _load(root: Path):  # noqa: ANN202
    return load_physionet2012(root, "a", use_cache=False, progress=False)


def test_the_copy_loads(physionet_copy: Path) -> None:
    dataset = _load(physionet_copy)
    assert dataset.X.shape == (3, 48, 35) and dataset.record_ids.tolist() == [132539, 132540, 132541]


def test_broken_header_names_file_and_line_1(physionet_copy: Path) -> None:
    _edit_line(physionet_copy / "set-a" / "132540.txt", 1, "Time;Parameter;Value")
    with pytest.raises(DatasetError, match=r"132540\.txt: line 1: expected header 'Time,Parameter,Value'"):
        _load(physionet_copy)


def test_non_numeric_value_names_file_line_and_field(physionet_copy: Path) -> None:
    path = physionet_copy / "set-a" / "132539.txt"
    assert path.read_text().splitlines()[8] == "00:07,HR,73"
    _edit_line(path, 9, "00:07,HR,seventy")
    with pytest.raises(DatasetError, match=r"132539\.txt: line 9: field Value of 'HR': not a number: 'seventy'"):
        _load(physionet_copy)


def test_malformed_time_and_extra_field_name_the_line(physionet_copy: Path) -> None:
    path = physionet_copy / "set-a" / "132541.txt"
    original = path.read_text()
    _edit_line(path, 10, "7h,HR,80")
    with pytest.raises(DatasetError, match=r"132541\.txt: line 10: field Time: expected hh:mm, got '7h'"):
        _load(physionet_copy)
    path.write_text(original)
    _edit_line(path, 12, "00:10,HR,80,extra")
    with pytest.raises(DatasetError, match=r"132541\.txt: line 12: expected 3 fields"):
        _load(physionet_copy)


def test_a_second_header_line_inside_a_record_is_reported(physionet_copy: Path) -> None:
    _edit_line(physionet_copy / "set-a" / "132540.txt", 20, "Time,Parameter,Value")
    with pytest.raises(DatasetError, match=r"132540\.txt: line 20: a second header line"):
        _load(physionet_copy)


def test_unknown_parameter_warns_once_and_is_ignored(physionet_copy: Path) -> None:
    clean = _load(physionet_copy)
    for record in RECORDS[:2]:
        with open(physionet_copy / "set-a" / f"{record}.txt", "a") as handle:
            handle.write("01:00,Lactose,3\n02:00,Lactose,4\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = _load(physionet_copy)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "4 line(s) with unknown parameter(s): 'Lactose' first at" in messages[0]
    assert "132539.txt: line" in messages[0]
    np.testing.assert_array_equal(dataset.X, clean.X)


def test_outcomes_missing_a_record_names_the_record(physionet_copy: Path) -> None:
    outcomes = physionet_copy / "Outcomes-a.txt"
    outcomes.write_text("".join(line for line in outcomes.read_text().splitlines(keepends=True)
                                if not line.startswith("132540,")))
    with pytest.raises(DatasetError, match=r"Outcomes-a\.txt: no row for RecordID 132540 \(record .*132540\.txt\)"):
        _load(physionet_copy)


def test_outcomes_with_a_bad_label_names_the_line(physionet_copy: Path) -> None:
    _edit_line(physionet_copy / "Outcomes-a.txt", 3, "132540,16,8,8,-1,yes")
    with pytest.raises(DatasetError, match=r"Outcomes-a\.txt: line 3: .*In-hospital_death 'yes' must be 0 or 1"):
        _load(physionet_copy)


def test_truncated_archive_is_reported(data_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "physionet2012"
    root.mkdir()
    real = data_dir / "physionet2012"
    (root / "set-a.tar.gz").write_bytes((real / "set-a.tar.gz").read_bytes()[:2_000_000])
    (root / "Outcomes-a.txt").write_bytes((real / "Outcomes-a.txt").read_bytes())
    with pytest.raises(DatasetError, match=r"set-a\.tar\.gz: truncated or corrupt archive after \d+ records"):
        _load(root)


def test_checksum_mismatch_of_a_tampered_archive(data_dir: Path, tmp_path: Path) -> None:
    data = bytearray((data_dir / "physionet2012" / "set-a.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / "set-a.tar.gz"
    tampered.write_bytes(bytes(data))
    remote = next(f for f in REMOTE_FILES["physionet2012"] if f.name == "set-a.tar.gz")
    with pytest.raises(DownloadError, match=r"set-a\.tar\.gz: checksum mismatch"):
        verify_file(tampered, remote.sha256, remote.content_sha256)


def test_empty_folders_are_clear_errors(tmp_path: Path) -> None:
    root = tmp_path / "physionet2012"
    (root / "set-a").mkdir(parents=True)
    (root / "Outcomes-a.txt").write_text("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n")
    with pytest.raises(DatasetError, match=r"set-a: no record files"):
        _load(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="missing .*set-a.tar.gz"):
        _load(empty)
    with pytest.raises(DatasetError, match="no station files"):
        load_beijing_air(empty, use_cache=False)
    with pytest.raises(DatasetError, match="no Metro_Interstate_Traffic_Volume"):
        load_traffic(empty, use_cache=False)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz not found"):
        load_mnist(empty)


def test_broken_air_traffic_and_mnist_files(data_dir: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(data_dir / "air" / "PRSA2017_Data_20130301-20170228.zip") as archive:
        member = next(n for n in archive.namelist() if "Dongsi" in n)
        lines = archive.read(member).decode().splitlines()
    air = tmp_path / "air"
    air.mkdir()
    fields = lines[5].split(",")
    fields[11] = "cold"  # TEMP
    lines[5] = ",".join(fields)
    (air / Path(member).name).write_text("\n".join(lines) + "\n")
    expected = r"PRSA_Data_Dongsi_20130301-20170228\.csv: line 6: field TEMP: not a number: 'cold'"
    with pytest.raises(DatasetError, match=expected):
        load_beijing_air(air, use_cache=False)

    with gzip.open(data_dir / "traffic" / "Metro_Interstate_Traffic_Volume.sample2000.csv.gz", "rt") as handle:
        rows = handle.read().splitlines()
    rows[3] = rows[3].replace("2012-10-02 11:00:00", "2012-10-02 eleven")
    traffic = tmp_path / "Metro_Interstate_Traffic_Volume.csv"
    traffic.write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"Metro_Interstate_Traffic_Volume\.csv: line 4: field date_time"):
        load_traffic(traffic, use_cache=False)

    mnist = tmp_path / "mnist"
    mnist.mkdir()
    labels = (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (mnist / "t10k-images-idx3-ubyte.gz").write_bytes(labels)  # a labels file where images belong
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(labels[: len(labels) // 2])
    expected = r"t10k-images-idx3-ubyte\.gz: IDX magic number 0x00000801, expected 0x00000803"
    with pytest.raises(DatasetError, match=expected):
        load_mnist(mnist)
    images = (data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    (mnist / "t10k-images-idx3-ubyte.gz").write_bytes(images)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: truncated or corrupt gzip"):
        load_mnist(mnist)
