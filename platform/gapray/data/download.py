"""Fetch the datasets' files from their publishers: verified, atomic, resumable.

Every file is streamed to ``<name>.part`` beside its destination; an interrupted download
continues from the ``.part`` file's size with an HTTP ``Range`` request (a server that answers
``200`` instead of ``206`` restarts it from zero). The finished file is checked against
SHA-256 before it is moved into place with :func:`os.replace`; on a mismatch the ``.part`` file
is deleted and :class:`DownloadError` is raised, so no corrupt file is ever left under the
final name.

Checksums. ``sha256`` pins the bytes of the copy in ``../shared/data/SHA256SUMS``. Those
copies were repacked (MNIST's gzip headers and the air zip's entry dates are from the day
the shared folder was made), so a publisher's own archive can differ byte for byte while
holding the same data. A file therefore also passes when its ``content_sha256`` matches: a
SHA-256 over the *uncompressed* contents (for ``.gz``: the decompressed bytes; for
``.tar.gz``/``.zip``: each member's name and SHA-256, sorted by name; see
:func:`content_digest`). Files without either (set c, the full traffic CSV, the MNIST
training set) are downloaded with a warning that they are unverified.

The base URL can be replaced (``base_url=`` or ``$GAPRAY_DATA_URL``) by a mirror laid out like
``../shared/data`` (``<base>/physionet2012/set-a.tar.gz``...): the tests serve that folder
from ``http.server`` on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from gapray.data.cache import sha256_file
from gapray.data.dataset import DatasetError
from gapray.data.loaders._common import DATA_ENV, DATA_FOLDERS, download_dir, progress_disabled, resolve_data_dir

BASE_URL_ENV = "GAPRAY_DATA_URL"
_BLOCK = 1 << 16


class DownloadError(DatasetError):
    """A download failed or its checksum did not match; the message names the file and URL."""


class DataUnavailableError(DownloadError):
    """A dataset is not on disk and cannot be downloaded; the message says how to provide it."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset as a publisher serves it."""

    path: str
    """Path in the shared/mirror layout, e.g. ``"physionet2012/set-a.tar.gz"``; its base name is the local name."""
    urls: tuple[str, ...]
    """Publisher URLs, tried in order."""
    sha256: str | None = None
    """SHA-256 of the file's bytes (the shared copy), or ``None``."""
    content_sha256: str | None = None
    """SHA-256 of the uncompressed contents (:func:`content_digest`), or ``None``."""
    default: bool = True
    """Fetched by ``gapray data fetch NAME`` without ``--files``."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


_PHYSIONET = "https://physionet.org/files/challenge-2012/1.0.0/"
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/"
_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")


def _mnist(name: str, sha: str | None, content: str | None, default: bool = True) -> RemoteFile:
    return RemoteFile(f"mnist/{name}", tuple(base + name for base in _MNIST), sha, content, default)


#: Dataset name -> its files (see the module doc for the two checksums).
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "physionet2012": (
        RemoteFile("physionet2012/set-a.tar.gz", (_PHYSIONET + "set-a.tar.gz",),
                   "6691905bf4cbd9a3a890fbd48885dcaeffc7b1844901f746a29ef569f679e191",
                   "88bc85964c20f5baf0c80858471a85f77d008c7d30332bd7ac01c3aa558d9d9f"),
        RemoteFile("physionet2012/Outcomes-a.txt", (_PHYSIONET + "Outcomes-a.txt",),
                   "2613ea60ccda29f87571a7d6b09ad130858a8ccd66325bd073365925026883c2",
                   "2613ea60ccda29f87571a7d6b09ad130858a8ccd66325bd073365925026883c2"),
        RemoteFile("physionet2012/set-b.tar.gz", (_PHYSIONET + "set-b.tar.gz",),
                   "ee6de8ed0ed8ecbc811bd2fec20bb97fbb956b0c264b3503e3e68cbbb022a618",
                   "98a537d525315ce0797b8b976d925a84aaa6d9dc4deb2150deff6b240fe066a8"),
        RemoteFile("physionet2012/Outcomes-b.txt", (_PHYSIONET + "Outcomes-b.txt",),
                   "1305f29734da374a809483229a99f33a9230aa8d4fa74b1a2d6ad788136423d5",
                   "1305f29734da374a809483229a99f33a9230aa8d4fa74b1a2d6ad788136423d5"),
        RemoteFile("physionet2012/set-c.tar.gz", (_PHYSIONET + "set-c.tar.gz",), default=False),
        RemoteFile("physionet2012/Outcomes-c.txt", (_PHYSIONET + "Outcomes-c.txt",), default=False),
    ),
    "beijing-air": (
        RemoteFile("air/PRSA2017_Data_20130301-20170228.zip",
                   (_UCI + "00501/PRSA2017_Data_20130301-20170228.zip",),
                   "b327bbb22e82fe0b32dbe57438f2b8b035e1ad0eec83d7823e3946021df7aad7",
                   "bdf3237538d505d2da7f26b91e599bfbc2abe0e0e1482a48e3c5d8c933f4fd3c"),
    ),
    "traffic": (
        RemoteFile("traffic/Metro_Interstate_Traffic_Volume.csv.gz",
                   (_UCI + "00492/Metro_Interstate_Traffic_Volume.csv.gz",)),
    ),
    "mnist": (
        _mnist("t10k-images-idx3-ubyte.gz", "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
               "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        _mnist("t10k-labels-idx1-ubyte.gz", "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
               "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        _mnist("train-images-idx3-ubyte.gz", None, None, default=False),
        _mnist("train-labels-idx1-ubyte.gz", None, None, default=False),
    ),
}


def content_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's uncompressed contents, independent of how it was (re)packed.

    ``.zip`` and ``.tar.gz``: over each regular member's name and SHA-256, sorted by name;
    other ``.gz``: over the decompressed bytes; anything else: over the bytes.
    """
    path = Path(path)
    digest = hashlib.sha256()
    name = path.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            members = sorted(i.filename for i in archive.infolist() if not i.is_dir())
            for member in members:
                digest.update(member.encode() + b"\0" + hashlib.sha256(archive.read(member)).digest())
    elif name.endswith((".tar.gz", ".tgz")):
        items = []
        with tarfile.open(path, "r:gz") as archive:
            for info in archive:
                handle = archive.extractfile(info) if info.isfile() else None
                if handle is not None:
                    items.append((info.name, hashlib.sha256(handle.read()).digest()))
        for member, member_digest in sorted(items):
            digest.update(member.encode() + b"\0" + member_digest)
    elif name.endswith(".gz"):
        with gzip.open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    else:
        return sha256_file(path)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike[str], sha256: str | None, content_sha256: str | None = None) -> None:
    """Raise :class:`DownloadError` unless ``path`` matches ``sha256`` or ``content_sha256``."""
    if sha256 is None and content_sha256 is None:
        return
    actual = sha256_file(path)
    if sha256 is not None and actual == sha256:
        return
    if content_sha256 is not None:
        try:
            if content_digest(path) == content_sha256:
                return
        except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as error:
            raise DownloadError(f"{path}: checksum mismatch: SHA-256 {actual}, expected {sha256}, and its "
                                f"contents cannot be read ({error})") from error
    raise DownloadError(f"{path}: checksum mismatch: SHA-256 {actual}, expected {sha256 or content_sha256}")


def download_file(
    url: str,
    target: str | os.PathLike[str],
    sha256: str | None = None,
    content_sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``target``: resume ``target.part``, verify, then rename atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "gapray-downloader"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) URLs only)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the .part file is already complete
            response = None
        else:
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"{url}: {error}") from error
    if response is not None:
        with response:
            resumed = offset > 0 and response.status == 206
            content_range = response.headers.get("Content-Range", "")
            if resumed and not content_range.startswith(f"bytes {offset}-"):
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url}: asked for bytes {offset}- but got range {content_range!r}; "
                                    "the partial file was deleted, run again")
            if offset and not resumed:
                offset = 0  # the server ignored Range: start again
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=target.name,
                       disable=progress_disabled(progress))
            received = 0
            try:
                with open(part, "ab" if resumed else "wb") as handle:
                    for block in iter(lambda: response.read(_BLOCK), b""):
                        handle.write(block)
                        received += len(block)
                        bar.update(len(block))
                if length is not None and received < int(length):
                    raise OSError(f"connection closed after {received} of {length} bytes")
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(f"{url}: interrupted after {part.stat().st_size} bytes ({error}); "
                                    f"run again to resume from {part}") from error
            finally:
                bar.close()
    try:
        verify_file(part, sha256, content_sha256)
    except DownloadError as error:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {error}; the partial file was deleted") from error
    if sha256 is None and content_sha256 is None:
        warnings.warn(f"{target.name}: no known checksum, download from {url} not verified", stacklevel=2)
    os.replace(part, target)
    return target


def remote_files(name: str, files: Sequence[str] | None = None) -> tuple[RemoteFile, ...]:
    """The files of dataset ``name``: the defaults, or those whose base names are in ``files``."""
    if name not in REMOTE_FILES:
        raise DatasetError(f"no download source for {name!r}; known: {', '.join(REMOTE_FILES)}")
    known = REMOTE_FILES[name]
    if files is None:
        return tuple(f for f in known if f.default)
    by_name = {f.name: f for f in known}
    unknown = [f for f in files if f not in by_name]
    if unknown:
        raise DatasetError(f"{name}: unknown file(s) {unknown}; known: {sorted(by_name)}")
    return tuple(by_name[f] for f in files)


def fetch(
    name: str,
    dest: str | os.PathLike[str] | None = None,
    files: Sequence[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download dataset ``name``'s files into ``dest`` (default: the download cache) and return them.

    ``base_url`` (or ``$GAPRAY_DATA_URL``) replaces the publishers' URLs by
    ``<base_url>/<path>`` in the shared-data layout. Files already present and verified are
    not downloaded again.
    """
    if name not in DATA_FOLDERS:
        raise DatasetError(f"no download source for {name!r}; known: {', '.join(REMOTE_FILES)}")
    folder = Path(dest) if dest is not None else download_dir(name)
    base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV)
    fetched: list[Path] = []
    for remote in remote_files(name, files):
        target = folder / remote.name
        if target.is_file():
            try:
                verify_file(target, remote.sha256, remote.content_sha256)
                fetched.append(target)
                continue
            except DownloadError:
                target.unlink()
        urls = (f"{base.rstrip('/')}/{remote.path}",) if base else remote.urls
        errors: list[str] = []
        for url in urls:
            try:
                fetched.append(download_file(url, target, remote.sha256, remote.content_sha256, progress))
                break
            except DownloadError as error:
                errors.append(str(error))
        else:
            raise DownloadError(f"{name}: could not fetch {remote.name}: " + " | ".join(errors))
    return fetched


def _has_data(folder: Path) -> bool:
    """True when ``folder`` is a file, or a folder holding anything but unfinished ``.part`` downloads."""
    if folder.is_file():
        return True
    return folder.is_dir() and any(not p.name.endswith(".part") for p in folder.iterdir())


def missing_data_message(name: str, folder: Path, reason: str, files: Sequence[str] | None = None) -> str:
    """What to do when dataset ``name`` is neither on disk nor downloadable: ``gapray data fetch NAME``,
    ``$GAPRAY_DATA_DIR`` and the folder layout the loaders expect."""
    subfolder = DATA_FOLDERS[name]
    names = [f.name for f in remote_files(name, files)] if name in REMOTE_FILES else []
    fetch_command = f"gapray data fetch {name}" + (f" --files {' '.join(files)}" if files else "")
    lines = [
        f"{name}: no data at {folder}, and it could not be downloaded ({reason}).",
        f"  With network access, download it (SHA-256 checked) into the cache: {fetch_command}",
        f"  Or copy the publisher's files into a data root and set {DATA_ENV} (or pass --data-dir) to it; layout:",
        *[f"    ${DATA_ENV}/{subfolder}/{file}" for file in names],
    ]
    return "\n".join(lines)


def ensure_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    files: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """The folder of dataset ``name`` (:func:`resolve_data_dir`), downloaded first with :func:`fetch` when it is
    not on disk and ``download`` is true.

    Raises :class:`DataUnavailableError` (with :func:`missing_data_message`) when the data is missing and
    cannot be fetched: offline, downloads off, or ``data_dir`` naming a folder that does not exist. Call it
    before starting anything expensive (Ray, trials).
    """
    if name not in DATA_FOLDERS:
        raise DatasetError(f"no data folder for dataset {name!r}; known: {sorted(DATA_FOLDERS)}")
    try:
        folder = resolve_data_dir(name, data_dir)
    except FileNotFoundError as error:
        raise DataUnavailableError(missing_data_message(name, Path(data_dir or "."), str(error), files)) from None
    if _has_data(folder):
        return folder
    if not download:
        raise DataUnavailableError(missing_data_message(name, folder, "downloads are turned off", files))
    try:
        fetch(name, dest=folder, files=files, progress=progress)
    except DownloadError as error:
        raise DataUnavailableError(missing_data_message(name, folder, str(error), files)) from error
    return folder
