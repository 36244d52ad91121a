"""The downloader end to end against a local http.server mirror of the shared data."""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gapray.data import DatasetError
from gapray.data.cache import sha256_file
from gapray.data.download import REMOTE_FILES, DownloadError, content_digest, download_file, fetch, verify_file


@dataclass
class MirrorLog:
    """What the server saw: the requested paths, their Range headers and the bytes sent."""

    paths: list[str] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)
    bytes_sent: int = 0
    honour_range: bool = True
    cut_after: int | None = None


class RangeHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` plus single-range ``Range: bytes=N-`` support (206)."""

    log: MirrorLog

    def __init__(self, *args: object, log: MirrorLog, **kwargs: object) -> None:
        self.log = log
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        requested = self.headers.get("Range")
        self.log.paths.append(self.path)
        self.log.ranges.append(requested)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if requested and self.log.honour_range and requested.startswith("bytes="):
            start = int(requested[len("bytes="):].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.log.cut_after is not None:  # simulate a dropped connection
            body = body[: self.log.cut_after]
            self.close_connection = True
        self.wfile.write(body)
        self.log.bytes_sent += len(body)


@contextmanager
def serve(directory: str | os.PathLike[str]) -> Iterator[tuple[str, MirrorLog]]:
    """Serve ``directory`` on an ephemeral 127.0.0.1 port; yields the base URL and the log."""
    log = MirrorLog()
    handler = functools.partial(RangeHandler, directory=str(directory), log=log)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture()
def mirror(data_dir: Path) -> Iterator[tuple[str, MirrorLog]]:
    with serve(data_dir) as served:
        yield served


def test_registry_hashes_are_those_of_the_shared_files(data_dir: Path) -> None:
    sums = dict(reversed(line.split()) for line in (data_dir / "SHA256SUMS").read_text().splitlines())
    pinned = {f"./{f.path}": f.sha256 for files in REMOTE_FILES.values() for f in files if f.sha256}
    shared_pinned = {path: sha for path, sha in sums.items() if not path.startswith("./traffic/")}
    assert pinned == shared_pinned


def test_fetch_downloads_verifies_and_skips_present_files(
        mirror: tuple[str, MirrorLog], data_dir: Path, tmp_path: Path) -> None:
    base_url, log = mirror
    paths = fetch("mnist", dest=tmp_path, base_url=base_url, progress=False)
    assert [p.name for p in paths] == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for path in paths:
        assert sha256_file(path) == sha256_file(data_dir / "mnist" / path.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no .part left
    assert log.paths == ["/mnist/t10k-images-idx3-ubyte.gz", "/mnist/t10k-labels-idx1-ubyte.gz"]
    fetch("mnist", dest=tmp_path, base_url=base_url, progress=False)
    assert len(log.paths) == 2  # already present and verified: nothing requested


def test_fetch_resumes_a_partial_download_with_a_range_request(
        mirror: tuple[str, MirrorLog], data_dir: Path, tmp_path: Path) -> None:
    base_url, log = mirror
    source = data_dir / "physionet2012" / "set-a.tar.gz"
    (tmp_path / "set-a.tar.gz.part").write_bytes(source.read_bytes()[:1_000_000])
    fetch("physionet2012", dest=tmp_path, files=["set-a.tar.gz"], base_url=base_url, progress=False)
    assert log.ranges == ["bytes=1000000-"]
    assert log.bytes_sent == source.stat().st_size - 1_000_000
    assert sha256_file(tmp_path / "set-a.tar.gz") == sha256_file(source)
    assert not (tmp_path / "set-a.tar.gz.part").exists()


def test_a_server_ignoring_range_restarts_the_download(
        mirror: tuple[str, MirrorLog], data_dir: Path, tmp_path: Path) -> None:
    base_url, log = mirror
    log.honour_range = False
    (tmp_path / "Outcomes-a.txt.part").write_bytes(b"stale bytes that must not survive")
    fetch("physionet2012", dest=tmp_path, files=["Outcomes-a.txt"], base_url=base_url, progress=False)
    assert (tmp_path / "Outcomes-a.txt").read_bytes() == (data_dir / "physionet2012" / "Outcomes-a.txt").read_bytes()


def test_checksum_mismatch_leaves_no_final_or_partial_file(data_dir: Path, tmp_path: Path) -> None:
    served = tmp_path / "mirror" / "physionet2012"
    served.mkdir(parents=True)
    good = (data_dir / "physionet2012" / "Outcomes-a.txt").read_bytes()
    (served / "Outcomes-a.txt").write_bytes(good.replace(b"132539,6,1,5,-1,0", b"132539,6,1,5,-1,1"))
    dest = tmp_path / "dest"
    with serve(tmp_path / "mirror") as (base_url, _):
        with pytest.raises(DownloadError, match="checksum mismatch"):
            fetch("physionet2012", dest=dest, files=["Outcomes-a.txt"], base_url=base_url, progress=False)
    assert list(dest.iterdir()) == []


def test_a_corrupt_partial_file_is_discarded_and_the_next_run_succeeds(
        mirror: tuple[str, MirrorLog], data_dir: Path, tmp_path: Path) -> None:
    base_url, _ = mirror
    (tmp_path / "Outcomes-b.txt.part").write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="partial file was deleted"):
        fetch("physionet2012", dest=tmp_path, files=["Outcomes-b.txt"], base_url=base_url, progress=False)
    assert not (tmp_path / "Outcomes-b.txt.part").exists() and not (tmp_path / "Outcomes-b.txt").exists()
    fetch("physionet2012", dest=tmp_path, files=["Outcomes-b.txt"], base_url=base_url, progress=False)
    assert sha256_file(tmp_path / "Outcomes-b.txt") == sha256_file(data_dir / "physionet2012" / "Outcomes-b.txt")


def test_a_repacked_archive_with_the_same_contents_passes(data_dir: Path, tmp_path: Path) -> None:
    original = data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    repacked = tmp_path / original.name
    repacked.write_bytes(gzip.compress(gzip.decompress(original.read_bytes()), compresslevel=1, mtime=0))
    remote = next(f for f in REMOTE_FILES["mnist"] if f.name == original.name)
    assert sha256_file(repacked) != remote.sha256
    assert content_digest(repacked) == remote.content_sha256
    verify_file(repacked, remote.sha256, remote.content_sha256)
    shutil.copy(original, tmp_path / "other.gz")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        verify_file(tmp_path / "other.gz", "0" * 64)


def test_unreachable_url_and_missing_file_are_clear_errors(mirror: tuple[str, MirrorLog], tmp_path: Path) -> None:
    base_url, _ = mirror
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{base_url}/nope.bin", tmp_path / "nope.bin", progress=False)
    with pytest.raises(DatasetError, match="no download source for 'digits'"):
        fetch("digits", dest=tmp_path)


def test_a_complete_partial_file_is_finished_without_downloading(
        mirror: tuple[str, MirrorLog], data_dir: Path, tmp_path: Path) -> None:
    base_url, log = mirror
    source = data_dir / "physionet2012" / "Outcomes-a.txt"
    (tmp_path / "Outcomes-a.txt.part").write_bytes(source.read_bytes())
    fetch("physionet2012", dest=tmp_path, files=["Outcomes-a.txt"], base_url=base_url, progress=False)
    assert log.ranges == [f"bytes={source.stat().st_size}-"] and log.bytes_sent == 0
    assert sha256_file(tmp_path / "Outcomes-a.txt") == sha256_file(source)


def test_a_dataset_missing_locally_is_fetched_into_the_cache_on_first_use(
        mirror: tuple[str, MirrorLog], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gapray.data.loaders import load_dataset

    base_url, log = mirror
    monkeypatch.delenv("GAPRAY_DATA_DIR", raising=False)
    monkeypatch.setenv("GAPRAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GAPRAY_DATA_URL", base_url)
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    mnist = load_dataset("mnist", download=True)
    assert mnist.X.shape == (10000, 1, 784)
    assert (tmp_path / "cache" / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert len(log.paths) == 2
    load_dataset("mnist", download=True)
    assert len(log.paths) == 2  # second use reads the cache


def test_an_interrupted_download_keeps_its_part_file_and_resumes(
        mirror: tuple[str, MirrorLog], data_dir: Path, tmp_path: Path) -> None:
    base_url, log = mirror
    source = data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    log.cut_after = 300_000
    with pytest.raises(DownloadError, match="interrupted after 300000 bytes"):
        fetch("mnist", dest=tmp_path, files=[source.name], base_url=base_url, progress=False)
    assert (tmp_path / f"{source.name}.part").stat().st_size == 300_000
    assert not (tmp_path / source.name).exists()
    log.cut_after = None
    fetch("mnist", dest=tmp_path, files=[source.name], base_url=base_url, progress=False)
    assert log.ranges == [None, "bytes=300000-"]
    assert sha256_file(tmp_path / source.name) == sha256_file(source)
