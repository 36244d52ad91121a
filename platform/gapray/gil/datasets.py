"""GIL's prediction tasks as train/validation/test :class:`~gapray.data.TimeSeriesDataset` triples.

* ``physionet2012``: PhysioNet 2012 set-a in-hospital mortality (paper Appendix D.4, Table 6):
  48 hourly bins x 35 variables, natural missingness (~80 %), z-scored with training statistics;
  stratified 80/10/10 split; LSTM predictor.
* ``mnist``: MNIST with MCAR (50/70/90 %) or MAR masks (paper Sec. 4.4, Table 3); MLP predictor.
  **Only the 10,000 test images are available here**, so they are split 60/20/20 into
  train/validation/test (the paper trains on the 60k training images): absolute accuracies are
  not comparable with Table 3, the ranking of methods is.
* ``digits``: scikit-learn's 8x8 digits (1,797 images) with the same masks, for fast tests.

Tabular data are ``X [N, 1, D]`` with pixel intensities in ``[0, 1]`` (as the loaders return them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.model_selection import train_test_split

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.data.loaders import load_digits, load_mnist, load_physionet2012, resolve_data_dir
from gapray.data.masking import as_generator, mcar
from gapray.data.normalization import Standardizer

DATASETS = ("physionet2012", "mnist", "digits")
PREDICTOR_OF = {"physionet2012": "lstm", "mnist": "mlp", "digits": "mlp"}
"""The predictor the paper uses for each dataset (:attr:`GILTask.kind`)."""
MissingPattern = Literal["mcar", "mar"]


@dataclass(frozen=True)
class GILTask:
    """A classification task on incomplete data.

    Attributes:
        name: dataset name (one of :data:`DATASETS`).
        train, val, test: the splits (``X`` with NaN where missing, integer ``y``).
        kind: the predictor the paper uses for it, ``"mlp"`` or ``"lstm"``.
        n_classes: number of classes.
    """

    name: str
    train: TimeSeriesDataset
    val: TimeSeriesDataset
    test: TimeSeriesDataset
    kind: str
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.train.n_features


def _three_way_split(n: int, labels: np.ndarray, fractions: tuple[float, float], seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test indices; ``fractions`` = (validation, test) shares."""
    index = np.arange(n)
    val_share, test_share = fractions
    rest, test = train_test_split(index, test_size=test_share, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=val_share / (1.0 - test_share), stratify=labels[rest],
                                  random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def mar_mask(X: np.ndarray, rate: float, seed: int | np.random.Generator | None = None,
             always_observed: float = 0.5) -> np.ndarray:
    """Missing at random for images ``[N, D]`` (in the spirit of MIWAE's MAR, paper Sec. 4.4).

    The first ``always_observed`` share of the features (the top rows of an image) is always
    observed; every other feature ``j`` is missing with probability
    ``sigmoid(s_n * w_j + b)``, where ``s_n`` is the standardised mean intensity of sample
    ``n``'s observed part, ``w_j ~ N(0, 1)`` is fixed per feature and ``b`` is found by bisection
    so that the overall missing rate is ``rate``. Returns the boolean missing mask ``[N, D]``.
    """
    if not 0.0 < rate < 1.0 - always_observed:
        raise DatasetError(f"MAR rate must be in (0, {1.0 - always_observed}) with {always_observed:.0%} of the "
                           f"features always observed, got {rate}")
    rng = as_generator(seed)
    n, d = X.shape
    n_fixed = int(round(always_observed * d))
    score = X[:, :n_fixed].mean(axis=1)
    score = (score - score.mean()) / (score.std() + 1e-8)
    weights = rng.standard_normal(d - n_fixed)
    logits = score[:, None] * weights[None, :]
    target = rate * d / (d - n_fixed)
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if (1.0 / (1.0 + np.exp(-(logits + mid)))).mean() < target:
            low = mid
        else:
            high = mid
    probabilities = 1.0 / (1.0 + np.exp(-(logits + 0.5 * (low + high))))
    missing = np.zeros((n, d), dtype=bool)
    missing[:, n_fixed:] = rng.random((n, d - n_fixed)) < probabilities
    return missing


def _mask_images(images: TimeSeriesDataset, pattern: MissingPattern, rate: float, seed: int) -> TimeSeriesDataset:
    if pattern == "mcar":
        return mcar(images, rate, seed)
    if pattern == "mar":
        X = images.X[:, 0].copy()
        X[mar_mask(X, rate, seed)] = np.nan
        return images.replace(X=X[:, None, :], X_ori=images.X.copy())
    raise DatasetError(f"unknown missing pattern {pattern!r}: expected 'mcar' or 'mar'")


def _image_task(name: str, images: TimeSeriesDataset, pattern: MissingPattern, rate: float, seed: int,
                split_seed: int) -> GILTask:
    if images.y is None:
        raise DatasetError(f"{name}: the loader returned no labels")
    masked = _mask_images(images, pattern, rate, seed)
    train, val, test = _three_way_split(len(masked), images.y, (0.2, 0.2), split_seed)
    n_classes = int(images.y.max()) + 1
    return GILTask(name, masked.subset(train), masked.subset(val), masked.subset(test), PREDICTOR_OF[name], n_classes)


def digits_task(missing_rate: float = 0.5, pattern: MissingPattern = "mcar", seed: int = 0,
                split_seed: int = 0) -> GILTask:
    """Digits with ``missing_rate`` of the pixels removed (``pattern`` MCAR or MAR), split 60/20/20."""
    return _image_task("digits", load_digits(), pattern, missing_rate, seed, split_seed)


def mnist_task(root: str | os.PathLike[str] | None = None, missing_rate: float = 0.5,
               pattern: MissingPattern = "mcar", seed: int = 0, split_seed: int = 0) -> GILTask:
    """MNIST's 10k test images with a mask (Table 3 protocol), split 60/20/20 (see module doc)."""
    return _image_task("mnist", load_mnist(resolve_data_dir("mnist", root)), pattern, missing_rate, seed, split_seed)


def physionet_task(root: str | os.PathLike[str] | None = None, split_seed: int = 0) -> GILTask:
    """PhysioNet 2012 set-a mortality (Table 6): 48 x 35, z-scored on the training split."""
    data = load_physionet2012(resolve_data_dir("physionet2012", root), subset="a", progress=False)
    if data.y is None:
        raise DatasetError("PhysioNet 2012: the loader returned no labels (In-hospital_death)")
    train, val, test = _three_way_split(len(data), data.y, (0.1, 0.1), split_seed)
    scaler = Standardizer.fit(data.subset(train))
    train_ds, val_ds, test_ds = (scaler.transform(data.subset(index)) for index in (train, val, test))
    return GILTask("physionet2012", train_ds, val_ds, test_ds, kind=PREDICTOR_OF["physionet2012"], n_classes=2)


def as_sequences(task: GILTask, steps: int) -> GILTask:
    """Tabular ``[N, 1, D]`` as ``[N, steps, D / steps]`` sequences for the LSTM (image rows as steps:
    ``digits`` with ``steps=8`` is a fast sequential task for tests)."""
    d = task.n_features
    if task.train.n_steps != 1 or d % steps:
        raise DatasetError(f"{task.name}: cannot cut X {task.train.X.shape} into {steps} steps")

    def cut(ds: TimeSeriesDataset) -> TimeSeriesDataset:
        X_ori = None if ds.X_ori is None else ds.X_ori.reshape(len(ds), steps, d // steps)
        return ds.replace(X=ds.X.reshape(len(ds), steps, d // steps), X_ori=X_ori, feature_names=())

    return GILTask(task.name, cut(task.train), cut(task.val), cut(task.test), "lstm", task.n_classes)


def load_task(name: str, root: str | os.PathLike[str] | None = None, missing_rate: float = 0.5,
              pattern: MissingPattern = "mcar", seed: int = 0, split_seed: int = 0) -> GILTask:
    """The task called ``name`` (see :data:`DATASETS`)."""
    if name == "digits":
        return digits_task(missing_rate, pattern, seed, split_seed)
    if name == "mnist":
        return mnist_task(root, missing_rate, pattern, seed, split_seed)
    if name == "physionet2012":
        return physionet_task(root, split_seed)
    raise DatasetError(f"unknown GIL dataset {name!r}: expected one of {', '.join(DATASETS)}")
