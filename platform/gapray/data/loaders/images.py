"""Image data for GIL's tabular experiments: MNIST (IDX files) and scikit-learn's digits.

Images are flattened into one step of ``D`` pixel features, ``X [N, 1, D]`` in ``[0, 1]``, so
the same container and masks serve them (GIL Sec. 4.4 uses MLPs on flattened MNIST).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from gapray.data.dataset import DatasetError, TimeSeriesDataset

_IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_PREFIX = {"test": "t10k", "train": "train"}


def read_idx(path: str | os.PathLike[str], expected_magic: int) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) with unsigned-byte data, checking magic and size."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DatasetError(f"{path}: truncated or corrupt gzip ({error})") from error
    if len(raw) < 8:
        raise DatasetError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{path}: IDX magic number {magic:#010x}, expected {expected_magic:#010x}")
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(f"{path}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_path(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"MNIST: {root / (stem + '.gz')} not found")


def load_mnist(root: str | os.PathLike[str], split: Literal["test", "train"] = "test") -> TimeSeriesDataset:
    """MNIST from the IDX files in ``root``: ``X [N, 1, 784]`` in ``[0, 1]``, ``y`` digits 0-9.

    ``split="test"`` reads ``t10k-images-idx3-ubyte.gz`` / ``t10k-labels-idx1-ubyte.gz``
    (10,000 images), the only MNIST files in the shared data; ``split="train"`` reads the 60k
    ``train-*`` files where a user has fetched them. Magic numbers and sizes are validated,
    and the image and label counts must agree.
    """
    if split not in _PREFIX:
        raise DatasetError(f"MNIST split must be 'test' or 'train', got {split!r}")
    root = Path(root)
    prefix = _PREFIX[split]
    images_path = _idx_path(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _idx_path(root, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, _IMAGE_MAGIC)
    labels = read_idx(labels_path, _LABEL_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{images_path}: {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels")
    n, height, width = images.shape
    X = (images.reshape(n, 1, height * width) / 255.0).astype(np.float32)
    names = tuple(f"pixel_{r}_{c}" for r in range(height) for c in range(width))
    return TimeSeriesDataset(X=X, y=labels.astype(np.int64), feature_names=names, name=f"mnist-{split}",
                             extra={"image_shape": np.asarray((height, width))})


def load_digits() -> TimeSeriesDataset:
    """scikit-learn's 1,797 8x8 digits as ``X [1797, 1, 64]`` in ``[0, 1]`` (pixel / 16), ``y`` 0-9."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    X = (np.asarray(bunch.data, dtype=np.float32) / 16.0)[:, None, :]
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    return TimeSeriesDataset(X=X, y=np.asarray(bunch.target, dtype=np.int64), feature_names=names,
                             name="digits", extra={"image_shape": np.asarray((8, 8))})
