"""Predictive distribution of Bayesian BRITS/DEARI: epistemic and aleatoric Monte Carlo (DEARI sec. 4.3).

The paper names two sources of uncertainty: the *epistemic* one, "represented by" the Bayesian
marginalisation of the recurrent weights (Eqs. 22-25), and the *aleatoric* one, "captured by the
random masking approach". Both are Monte Carlo here:

- **epistemic passes** (:func:`gapray.imputation.training.sample_imputations`): ``n_samples``
  weight samples on the full input. Their spread is ``epistemic_std``; their mean (the Monte
  Carlo mean) is the imputation with ``config.point_estimate="mc_mean"``, while the default
  imputation is one pass with every weight at its posterior mean (``base.RecurrentImputer._moments``).
- **aleatoric passes** (:func:`masked_passes`): ``masking_samples`` passes, each with its own
  weight sample and its own random removal of ``masking_rate`` of every record's observed inputs,
  drawn exactly as the evaluation protocol removes ground truth
  (:func:`gapray.data.masking.remove_observed_per_sample`). Their spread at a missing entry,
  ``aleatoric_std``, is how much the imputation moves when the model loses a random part of what
  it sees: small where several observations pin the value down, large where it rests on one or
  two (measured: the Spearman correlation of this spread with the absolute error is 0.53 on
  Beijing air and 0.21 on PhysioNet, against 0.17 and -0.05 for the weight spread;
  ``benchmarks/results/bayesian_diagnosis.md``).

The predictive standard deviation is ``std = sqrt(epistemic_std^2 + aleatoric_std^2)``. Its scale
is not calibrated (the masking rate and the posterior width set it); split-conformal calibration
on validation (:class:`gapray.imputation.uncertainty.ConformalCalibration`) supplies the interval
multipliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from gapray.data.dataset import DeltaConvention, TimeSeriesDataset
from gapray.data.masking import remove_observed_per_sample
from gapray.imputation.aleatoric import LaplaceScaleModel
from gapray.imputation.bayesian import sampled_weights, split_samples
from gapray.imputation.brits.core import Batch
from gapray.imputation.config import BRITSConfig
from gapray.imputation.training import prepare, sample_imputations
from gapray.imputation.uncertainty import ConformalCalibration, gap_groups, gaussian_quantile

AleatoricKind = Literal["laplace", "masking", "none"]


def masked_copies(dataset: TimeSeriesDataset, rate: float, n_copies: int, rng: np.random.Generator
                  ) -> list[TimeSeriesDataset]:
    """``n_copies`` copies of ``dataset``, each with its own random ``rate`` of every record's
    observed values removed (the ``deari`` protocol's masking, with replacement)."""
    if n_copies < 1:
        raise ValueError(f"n_copies must be >= 1, got {n_copies}")
    bare = dataset.replace(X_ori=None)
    return [remove_observed_per_sample(bare, rate, rng).replace(X_ori=None) for _ in range(n_copies)]


@torch.no_grad()
def masked_passes(core: nn.Module, dataset: TimeSeriesDataset, convention: DeltaConvention, device: torch.device,
                  records_per_pass: int, n_passes: int, rate: float, rng: np.random.Generator) -> Tensor:
    """``[M, N, T, D]`` imputations of ``M = n_passes`` aleatoric passes (see the module docstring).

    Per chunk of ``records_per_pass`` records, the ``M`` masked copies run as one batched pass
    with ``M`` weight samples (copy ``k`` with weight sample ``k``, sample-major rows). Unlike the
    epistemic passes the copies differ in their inputs, so nothing is shared between them. The
    observed values of ``dataset`` are put back in every pass: ``aleatoric_std`` is 0 there.
    """
    if n_passes < 1 or records_per_pass < 1:
        raise ValueError(f"n_passes and records_per_pass must be >= 1, got {n_passes}, {records_per_pass}")
    was_training = core.training
    core.eval()
    observed = torch.from_numpy(dataset.mask).to(device)
    values = torch.from_numpy(np.nan_to_num(dataset.X, nan=0.0)).to(device)
    parts = []
    try:
        for start in range(0, len(dataset), records_per_pass):
            index = np.arange(start, min(start + records_per_pass, len(dataset)))
            copies = [prepare(copy, convention, device) for copy in masked_copies(dataset.subset(index), rate,
                                                                                     n_passes, rng)]
            batch = Batch(values=torch.cat([c.values for c in copies]), mask=torch.cat([c.mask for c in copies]),
                          deltas=torch.cat([c.deltas for c in copies], dim=1), n_samples=n_passes)
            with sampled_weights(core, n_passes):
                imputation = split_samples(core(batch, with_loss=False).imputation, n_passes)
            chunk = slice(int(index[0]), int(index[-1]) + 1)
            parts.append(torch.where(observed[chunk] > 0, values[chunk], imputation))
    finally:
        core.train(was_training)
    return torch.cat(parts, dim=1)


def predictive_moments(weight_samples: np.ndarray, masking_samples: np.ndarray | None) -> dict[str, np.ndarray]:
    """``imputation`` (mean of the weight samples ``[K, ...]``), ``epistemic_std`` (their sample
    std, ``ddof=1``; 0 for ``K = 1``) and ``masking_spread`` (sample std of the aleatoric passes
    ``[M, ...]``; 0 without them), in the samples' float dtype."""
    weight_samples = np.asarray(weight_samples)
    if weight_samples.ndim < 2 or weight_samples.shape[0] < 1:
        raise ValueError(f"weight_samples must be [K, ...] with K >= 1, got shape {weight_samples.shape}")
    dtype = weight_samples.dtype if np.issubdtype(weight_samples.dtype, np.floating) else np.float64
    wide = weight_samples.astype(np.float64)
    epistemic = wide.std(axis=0, ddof=1) if wide.shape[0] > 1 else np.zeros(wide.shape[1:])
    if masking_samples is None:
        spread = np.zeros_like(epistemic)
    else:
        masking_samples = np.asarray(masking_samples, dtype=np.float64)
        if masking_samples.shape[1:] != wide.shape[1:] or masking_samples.shape[0] < 2:
            raise ValueError(f"masking_samples must be [M >= 2, *{wide.shape[1:]}], got {masking_samples.shape}")
        spread = masking_samples.std(axis=0, ddof=1)
    return {"imputation": wide.mean(axis=0).astype(dtype), "epistemic_std": epistemic.astype(dtype),
            "masking_spread": spread.astype(dtype)}


def entry_features(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per entry of an ``[N, T, D]`` observation mask: the variable index and the gap bucket
    (:func:`gapray.imputation.uncertainty.gap_groups`), both ``[N, T, D]``."""
    mask = np.asarray(mask)
    return np.broadcast_to(np.arange(mask.shape[-1]), mask.shape), gap_groups(mask)


def add_predictive_std(moments: dict[str, np.ndarray], mask: np.ndarray, aleatoric: AleatoricKind,
                       scale_model: LaplaceScaleModel | None = None) -> dict[str, np.ndarray]:
    """``moments`` plus ``aleatoric_std`` and ``std = sqrt(epistemic_std^2 + aleatoric_std^2)``.

    ``aleatoric``: ``laplace`` (``scale_model``'s Laplace std from variable, gap bucket and masking
    spread), ``masking`` (the masking spread itself) or ``none`` (0: the weight spread alone, as
    the reference port). Observed entries (``mask`` 1) keep std 0: their value is known.
    """
    spread = moments["masking_spread"]
    if aleatoric == "laplace":
        if scale_model is None:
            raise ValueError("aleatoric='laplace' needs a fitted LaplaceScaleModel (fit_uncertainty)")
        features, gaps = entry_features(mask)
        level = moments["imputation"] if scale_model.uses_level else None
        aleatoric_std = scale_model.std(features, gaps, spread, level)
    elif aleatoric == "masking":
        aleatoric_std = spread.astype(np.float64)
    elif aleatoric == "none":
        aleatoric_std = np.zeros(spread.shape)
    else:
        raise ValueError(f"aleatoric must be 'laplace', 'masking' or 'none', got {aleatoric!r}")
    aleatoric_std = np.where(np.asarray(mask) > 0, 0.0, aleatoric_std).astype(spread.dtype)
    std = np.hypot(moments["epistemic_std"].astype(np.float64), aleatoric_std).astype(spread.dtype)
    return {**moments, "aleatoric_std": aleatoric_std, "std": std}


def monte_carlo_moments(core: nn.Module, dataset: TimeSeriesDataset, config: BRITSConfig, device: torch.device,
                        n_samples: int, records_per_pass: int, masking_records_per_pass: int
                        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(moments, weight_samples)`` of ``dataset``: ``n_samples`` epistemic passes and, unless
    ``config.aleatoric`` is ``none`` or ``config.masking_samples`` is 0, the aleatoric passes
    (:func:`predictive_moments`). The masks are drawn from a generator seeded off torch's RNG, so
    ``torch.manual_seed`` makes the whole prediction repeatable."""
    data = prepare(dataset, config.delta_convention, device)
    samples = sample_imputations(core, data, records_per_pass, n_samples).cpu().numpy()
    masking = None
    if config.masking_samples and config.aleatoric != "none":
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        masking = masked_passes(core, dataset, config.delta_convention, device, masking_records_per_pass,
                                config.masking_samples, config.masking_rate, rng).cpu().numpy()
    return predictive_moments(samples, masking), samples


MAX_SCALE_RECORDS = 1000
"""The aleatoric scale is fitted on at most this many training records (seeded choice): its
``D + 8`` coefficients need far fewer entries, and the Monte Carlo passes cost time."""


def scale_training_records(train: TimeSeriesDataset, rate: float, seed: int) -> TimeSeriesDataset:
    """Training records whose randomly masked entries fit the aleatoric scale.

    The ``deari`` protocol already removed ``rate`` of every training record's observed values
    (``train.X_ori``); the model never saw them, so their errors are honest. A training set without
    removed entries gets them here, with the protocol's masking at ``rate`` (the model has seen
    those values during training, so its errors there are a little optimistic; the conformal
    calibration on validation corrects the scale)."""
    rng = np.random.default_rng(seed)
    if len(train) > MAX_SCALE_RECORDS:
        train = train.subset(np.sort(rng.choice(len(train), MAX_SCALE_RECORDS, replace=False)))
    if train.X_ori is not None and train.indicating_mask.any():
        return train
    return remove_observed_per_sample(train, rate, rng)


def fit_scale_model(moments: dict[str, np.ndarray], dataset: TimeSeriesDataset,
                    level: bool = False) -> LaplaceScaleModel:
    """:class:`LaplaceScaleModel` fitted on ``dataset``'s removed entries (``X_ori``, indicating
    mask); ``level``: the scale depends on the imputed value too."""
    if dataset.X_ori is None or not dataset.indicating_mask.any():
        raise ValueError(f"{dataset.name}: no removed entries to fit the aleatoric scale on")
    removed = dataset.indicating_mask > 0
    features, gaps = entry_features(dataset.mask)
    errors = np.abs(moments["imputation"].astype(np.float64) - np.nan_to_num(dataset.X_ori))[removed]
    return LaplaceScaleModel.fit(errors, features[removed], gaps[removed], moments["masking_spread"][removed],
                                 dataset.n_features, moments["imputation"][removed] if level else None)


def calibration_groups(mask: np.ndarray, kind: str) -> np.ndarray | None:
    """Gap-length buckets of every entry for ``kind="gap"``, None for ``"none"``."""
    return gap_groups(mask) if kind == "gap" else None


@dataclass(frozen=True)
class FittedUncertainty:
    """What :meth:`~gapray.imputation.base.RecurrentImputer.fit_uncertainty` learns after training:
    the aleatoric scale (None unless ``aleatoric="laplace"``) and the conformal calibration (None
    without validation data). Saved with the model."""

    scale_model: LaplaceScaleModel | None
    calibration: ConformalCalibration | None
    groups: str
    """``config.calibration_groups`` at fitting time."""

    def interval(self, mean: np.ndarray, std: np.ndarray, mask: np.ndarray, level: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated ``(lower, upper, calibrated_std)`` at ``level``."""
        if self.calibration is None:
            raise ValueError("no calibration: fit with validation data, or call fit_uncertainty(train, val)")
        scaler = self.calibration.scaler(level)
        groups = calibration_groups(mask, self.groups)
        mean, std = np.asarray(mean), np.asarray(std)
        known = std == 0  # observed entries: the value itself, no interval
        calibrated_std = np.where(known, 0.0, scaler.calibrated_std(std, groups)).astype(mean.dtype)
        half = calibrated_std * gaussian_quantile(level)
        return (mean - half).astype(mean.dtype), (mean + half).astype(mean.dtype), calibrated_std

    def to_state(self) -> dict[str, object]:
        return {"scale_model": None if self.scale_model is None else self.scale_model.to_state(),
                "calibration": None if self.calibration is None else self.calibration.to_state(),
                "groups": self.groups}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FittedUncertainty:
        scale, calibration = state["scale_model"], state["calibration"]
        return cls(None if scale is None else LaplaceScaleModel.from_state(scale),
                   None if calibration is None else ConformalCalibration.from_state(calibration), str(state["groups"]))
