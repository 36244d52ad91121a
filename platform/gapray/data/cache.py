"""On-disk cache of parsed datasets, keyed by the SHA-256 of the publisher's files.

Parsing PhysioNet's 4,000 record files takes seconds; reading the parsed arrays back from an
uncompressed ``.npz`` takes milliseconds. A cache entry's name is
``<dataset>-<key>.npz`` where ``key`` hashes the input files' bytes and the loader's options,
so a changed file or option never reads a stale entry. Entries are written to a temporary
file in the same folder and moved into place with :func:`os.replace`, so a crash or a
concurrent reader never sees half a file.

The cache root is, in order: the ``cache_dir`` argument, the ``GAPRAY_CACHE_DIR``
environment variable, ``~/.cache/gapray``. Parsed arrays live in ``<root>/arrays/``,
downloads (see :mod:`gapray.data.download`) in ``<root>/data/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from gapray.data.dataset import TimeSeriesDataset

CACHE_ENV = "GAPRAY_CACHE_DIR"
_CHUNK = 1 << 20
_FIELDS = ("X", "y", "times", "lengths", "record_ids", "X_ori")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$GAPRAY_CACHE_DIR``, else ``~/.cache/gapray``."""
    if cache_dir is not None:
        return Path(cache_dir)
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "gapray"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(files: Iterable[str | os.PathLike[str]], options: Mapping[str, object]) -> str:
    """A short key from the SHA-256 of every input file (in the given order) and the options.

    File *names* do not enter the key, only contents, so moving the data keeps the cache.
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(sha256_file(path).encode())
    digest.update(json.dumps(dict(options), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def atomic_write_bytes(path: Path, write: Callable[[object], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def dataset_to_arrays(dataset: TimeSeriesDataset) -> dict[str, np.ndarray]:
    """Flatten a dataset into named arrays for ``np.savez`` (no pickling).

    ``extra`` entries are kept when they are arrays (``extra.<key>``) or tuples of strings
    (``extra_names.<key>``); other kinds are not cached.
    """
    arrays: dict[str, np.ndarray] = {}
    for name in _FIELDS:
        value = getattr(dataset, name)
        if value is not None:
            arrays[name] = value
    arrays["feature_names"] = np.asarray(dataset.feature_names, dtype=str)
    arrays["name"] = np.asarray(dataset.name, dtype=str)
    for key, value in dataset.extra.items():
        if isinstance(value, np.ndarray):
            arrays[f"extra.{key}"] = value
        elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            arrays[f"extra_names.{key}"] = np.asarray(value, dtype=str)
    return arrays


def dataset_from_arrays(arrays: Mapping[str, np.ndarray]) -> TimeSeriesDataset:
    """Inverse of :func:`dataset_to_arrays`."""
    fields = {name: arrays[name] for name in _FIELDS if name in arrays}
    extra: dict[str, object] = {}
    for key, value in arrays.items():
        if key.startswith("extra."):
            extra[key[len("extra."):]] = value
        elif key.startswith("extra_names."):
            extra[key[len("extra_names."):]] = tuple(str(v) for v in value)
    return TimeSeriesDataset(
        feature_names=tuple(str(v) for v in arrays["feature_names"]),
        name=str(arrays["name"]),
        extra=extra,
        **fields,  # type: ignore[arg-type]
    )


def save_dataset(path: Path, dataset: TimeSeriesDataset) -> None:
    """Write ``dataset`` to ``path`` (uncompressed ``.npz``) atomically."""
    arrays = dataset_to_arrays(dataset)
    atomic_write_bytes(path, lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]


def load_dataset_file(path: Path) -> TimeSeriesDataset | None:
    """Read a cached dataset, or ``None`` when the entry is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return dataset_from_arrays({key: data[key] for key in data.files})
    except (OSError, ValueError, KeyError):
        return None


def cached_dataset(
    name: str,
    files: Iterable[str | os.PathLike[str]],
    options: Mapping[str, object],
    build: Callable[[], TimeSeriesDataset],
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> TimeSeriesDataset:
    """Return the cached parse of ``files`` under ``options``, building and storing it if absent."""
    if not use_cache:
        return build()
    path = cache_root(cache_dir) / "arrays" / f"{name}-{cache_key(files, options)}.npz"
    dataset = load_dataset_file(path)
    if dataset is None:
        dataset = build()
        save_dataset(path, dataset)
    return dataset
