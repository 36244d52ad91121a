"""``gapray data describe`` and ``gapray data fetch``."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gapray.cli import main
from gapray.data.cache import sha256_file


def _json_line(output: str) -> dict[str, object]:
    return json.loads(output.strip().splitlines()[-1])


def test_describe_physionet_prints_the_set_a_figures(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "describe", "physionet2012", "--data-dir", str(data_dir)]) == 0
    output = capsys.readouterr().out
    summary = _json_line(output)
    assert (summary["n_samples"], summary["n_steps"], summary["n_features"]) == (4000, 48, 35)
    assert abs(summary["missing_rate"] - 0.805) <= 0.002
    assert summary["labels"] == {"0": 3446, "1": 554}
    assert "shape         4000 samples x 48 steps x 35 features" in output
    assert "missing rate  80.53 %" in output
    assert "1: 554 (13.85 %)" in output


def test_describe_json_only_and_other_datasets(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "describe", "beijing-air", "--data-dir", str(data_dir / "air"), "--json"]) == 0
    output = capsys.readouterr().out
    assert len(output.strip().splitlines()) == 1
    assert _json_line(output)["n_features"] == 132
    assert main(["data", "describe", "traffic", "--data-dir", str(data_dir)]) == 0
    assert _json_line(capsys.readouterr().out)["n_samples"] == 73


def test_describe_errors_exit_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "describe", "physionet2012", "--data-dir", str(tmp_path)]) == 2
    assert "set-a.tar.gz" in capsys.readouterr().err
    assert main(["data", "describe", "mnist", "--data-dir", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fetch_from_a_local_mirror(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(data_dir))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        code = main(["data", "fetch", "physionet2012", "--subset", "b", "--dest", str(tmp_path),
                     "--base-url", base_url])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["set-b.tar.gz", "Outcomes-b.txt"]
    for name in ("set-b.tar.gz", "Outcomes-b.txt"):
        assert sha256_file(tmp_path / name) == sha256_file(data_dir / "physionet2012" / name)


@pytest.fixture()
def console() -> Iterator[list[str]]:
    yield [sys.executable, "-m", "gapray.cli"]


def test_the_gapray_entry_point_describes_synthetic_data(console: list[str]) -> None:
    result = subprocess.run([*console, "data", "describe", "synthetic", "--json"], capture_output=True, text=True,
                            check=True, timeout=120)
    assert _json_line(result.stdout)["n_samples"] == 256
