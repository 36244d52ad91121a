"""The public imputer API shared by BRITS and DEARI (PyPOTS style: fit / predict / impute / save / load).

Inputs are :class:`~gapray.data.TimeSeriesDataset` objects (or a raw ``[N, T, D]`` array with
NaN for missing values in ``predict``/``impute``); they are checked where they enter and a
:class:`~gapray.data.DatasetError` names what is wrong. The model is built on the first
``fit`` (the feature count comes from the data).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from gapray.data.cache import atomic_write_bytes
from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.imputation.bayesian import optimizer_parameter_groups
from gapray.imputation.config import BRITSConfig
from gapray.imputation.initialisation import reference_initialisation
from gapray.imputation.predictive import (
    FittedUncertainty,
    add_predictive_std,
    calibration_groups,
    fit_scale_model,
    monte_carlo_moments,
    scale_training_records,
)
from gapray.imputation.preprocessing import Preprocessing
from gapray.imputation.training import (
    EpochCallback,
    PreparedData,
    TrainingState,
    fit_loop,
    impute_prepared,
    masked_errors,
    prepare,
    resolve_device,
)
from gapray.imputation.uncertainty import ConformalCalibration, gaussian_interval

FORMAT = "gapray.imputation/1"


def check_dataset(data: TimeSeriesDataset | np.ndarray, role: str, n_features: int | None = None,
                  need_ground_truth: bool = False) -> TimeSeriesDataset:
    """Validate data entering the API; returns it as a dataset or raises :class:`DatasetError`."""
    if isinstance(data, np.ndarray):
        if data.ndim != 3:
            raise DatasetError(f"{role}: X must have shape [N, T, D] (samples, steps, features), "
                               f"got shape {data.shape}")
        if not np.issubdtype(data.dtype, np.number):
            raise DatasetError(f"{role}: X must be numeric, got dtype {data.dtype}")
        data = TimeSeriesDataset(X=data, name=role)  # checks inf
    elif not isinstance(data, TimeSeriesDataset):
        raise DatasetError(f"{role}: expected a TimeSeriesDataset or an [N, T, D] array, got {type(data).__name__}")
    X = data.X
    if X.ndim != 3:
        raise DatasetError(f"{role} ({data.name}): X must have shape [N, T, D], got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0 or X.shape[2] == 0:
        raise DatasetError(f"{role} ({data.name}) is empty: X has shape {X.shape}")
    if np.isinf(X).any():
        n, t, d = np.argwhere(np.isinf(X))[0]
        raise DatasetError(f"{role} ({data.name}): X has an infinite value at sample {n}, step {t}, "
                           f"feature {d} ({data.feature_names[d]}); only NaN may mark missing values")
    if n_features is not None and X.shape[2] != n_features:
        raise DatasetError(f"{role} ({data.name}) has {X.shape[2]} features, the model was fitted on {n_features}")
    if need_ground_truth:
        if data.X_ori is None or not data.indicating_mask.any():
            raise DatasetError(f"{role} ({data.name}) has no artificially removed entries to score "
                               "(X_ori is missing or equals X); remove some first, e.g. "
                               "gapray.data.remove_observed_per_sample")
        if np.isinf(data.X_ori).any():
            raise DatasetError(f"{role} ({data.name}): X_ori has an infinite value")
    return data


def monte_carlo_records_per_pass(n_records: int, batch_size: int, n_samples: int) -> int:
    """Records per batched Monte Carlo pass (each pass runs ``n_samples`` copies of them).

    About ``10 * batch_size`` rows per pass (2.5 deterministic inference batches: larger passes
    fall out of the CPU caches and cost more per row, smaller ones pay the per-step Python
    overhead more often), at least 32 records, and the records spread evenly over the passes so
    that no pass is a short remainder (measured: ``benchmarks/bayesian.py --cost``).
    """
    target = max(32, 10 * batch_size // max(n_samples, 1))
    n_passes = max(1, math.ceil(n_records / target))
    return max(1, math.ceil(n_records / n_passes))


def _save_synced(payload: dict[str, Any], handle: Any) -> None:
    """``torch.save`` to an open file, flushed to disk before the caller renames it into place."""
    torch.save(payload, handle)
    handle.flush()
    os.fsync(handle.fileno())


class RecurrentImputer:
    """Shared public behaviour; subclasses set ``config_class`` and build their core module."""

    config_class: ClassVar[type[BRITSConfig]] = BRITSConfig

    def __init__(self, config: BRITSConfig | None = None, **overrides: Any) -> None:
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config.replace(**overrides) if overrides else config
        self.device = resolve_device(self.config.device)
        self.n_features: int | None = None
        self.core: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.state = TrainingState()
        self._resume_weights: dict[str, torch.Tensor] | None = None
        # Scaler, variable names and table format for data in original units (set by
        # gapray.imputation.preprocessing.fit_in_original_units); None: the model takes z-scores.
        self.preprocessing: Preprocessing | None = None
        # Bayesian models: aleatoric scale and conformal calibration (fit_uncertainty).
        self.uncertainty: FittedUncertainty | None = None

    # --- construction -------------------------------------------------------------------------------
    def _build_core(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def _build(self, n_features: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            core = self._build_core(n_features)
            if self.config.parameter_init == "reference":
                reference_initialisation(core)
        self.core = core.to(self.device)
        self.n_features = n_features
        self.optimizer = torch.optim.Adam(optimizer_parameter_groups(self.core, self.config), lr=self.config.lr,
                                          weight_decay=self.config.weight_decay)

    @property
    def is_fitted(self) -> bool:
        return self.core is not None

    def n_parameters(self) -> int:
        """Trainable parameter count (0 before the model is built)."""
        return 0 if self.core is None else sum(p.numel() for p in self.core.parameters() if p.requires_grad)

    def _require_fitted(self) -> nn.Module:
        if self.core is None or self.n_features is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self.core

    # --- training -----------------------------------------------------------------------------------
    def fit(self, train: TimeSeriesDataset, val: TimeSeriesDataset | None = None,
            epoch_callback: EpochCallback | None = None, checkpoint_path: str | os.PathLike[str] | None = None,
            show_progress: bool = True) -> list[dict[str, float]]:
        """Train (or continue training) on ``train``; early stopping on ``val``'s held-out entries.

        Returns this call's per-epoch metrics (see :func:`gapray.imputation.training.fit_loop`).
        A loaded model continues from its saved epoch. With ``checkpoint_path`` the model is saved
        there atomically after every epoch (weights, optimizer, early-stopping state, history):
        ``type(model).load(checkpoint_path).fit(train, val, ...)`` then continues the run and ends
        with exactly the weights of an uninterrupted one (each epoch's shuffling, dropout and
        Bayesian sampling are seeded by ``(seed, epoch)``; the freeze schedule counts global steps).
        """
        train = check_dataset(train, "train", self.n_features)
        val = None if val is None else check_dataset(val, "val", train.n_features, need_ground_truth=True)
        if self.core is None:
            self._build(train.n_features)
        core = self._require_fitted()
        assert self.optimizer is not None
        if self._resume_weights is not None:
            core.load_state_dict(self._resume_weights)
            self._resume_weights = None
        train_data = prepare(train, self.config.delta_convention, self.device)
        val_data = None if val is None else prepare(val, self.config.delta_convention, self.device, with_target=True)
        checkpoint = None if checkpoint_path is None else lambda: self.save(checkpoint_path)
        history = fit_loop(core, self.optimizer, self.state, self.config, train_data, val_data, epoch_callback,
                           description=type(self).__name__, checkpoint=checkpoint, show_progress=show_progress)
        if self.state.best_weights is not None:
            self._resume_weights = {k: v.detach().clone() for k, v in core.state_dict().items()}
            core.load_state_dict(self.state.best_weights)
        if self.config.bayesian and (history or self.uncertainty is None):  # also a loaded finished run
            self.fit_uncertainty(train, val)
        return history

    def fit_uncertainty(self, train: TimeSeriesDataset, val: TimeSeriesDataset | None = None) -> None:
        """Bayesian models: fit what turns Monte Carlo passes into calibrated intervals; :meth:`fit`
        calls it when it ends (with the weights it leaves in the model).

        1. ``config.aleatoric="laplace"``: the aleatoric Laplace scale on ``train``'s randomly masked
           entries (:func:`gapray.imputation.predictive.scale_training_records`,
           :mod:`gapray.imputation.aleatoric`).
        2. With ``val``: split-conformal calibration of ``std`` on its removed entries, per
           gap-length bucket when ``config.calibration_groups="gap"``; :meth:`predict` then returns
           calibrated intervals at any level.
        """
        self._require_fitted()
        if not self.config.bayesian:
            raise ValueError(f"{type(self).__name__} is not Bayesian (config.bayesian=False): no uncertainty to fit")
        train = check_dataset(train, "train", self.n_features)
        scale_model = None
        if self.config.aleatoric == "laplace":
            records = scale_training_records(train, self.config.masking_rate, self.config.seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.config.seed)
                moments, _ = self._moments(records, self.config.n_samples)
            scale_model = fit_scale_model(moments, records, self.config.aleatoric_level)
        self.uncertainty = FittedUncertainty(scale_model, None, self.config.calibration_groups)
        if val is None:
            return
        val = check_dataset(val, "val", self.n_features, need_ground_truth=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed + 1)
            prediction = self.predict(val, calibrated=False)
        assert val.X_ori is not None
        calibration = ConformalCalibration.fit(prediction["imputation"], prediction["std"], val.X_ori,
                                               val.indicating_mask,
                                               calibration_groups(val.mask, self.config.calibration_groups))
        self.uncertainty = FittedUncertainty(scale_model, calibration, self.config.calibration_groups)

    def use_best_weights(self) -> bool:
        """Switch to the best-validation weights, as :meth:`fit` does when it ends.

        For a checkpoint saved during training (e.g. by an ``epoch_callback`` or a Tune trial),
        whose weights are the latest epoch's. The latest weights stay the resume point, so a
        later :meth:`fit` continues the same run. Without validation data the best weights are
        the latest ones. Returns False before the first finished epoch."""
        core = self._require_fitted()
        if self.state.best_weights is None:
            return False
        if self._resume_weights is None:
            self._resume_weights = {k: v.detach().clone() for k, v in core.state_dict().items()}
        core.load_state_dict(self.state.best_weights)
        return True

    # --- inference ----------------------------------------------------------------------------------
    def _prepare(self, data: TimeSeriesDataset | np.ndarray, role: str, with_target: bool = False) -> PreparedData:
        self._require_fitted()
        dataset = check_dataset(data, role, self.n_features, need_ground_truth=with_target)
        return prepare(dataset, self.config.delta_convention, self.device, with_target=with_target)

    def _moments(self, dataset: TimeSeriesDataset, n_samples: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Monte Carlo moments and weight samples (:func:`gapray.imputation.predictive.monte_carlo_moments`);
        with ``config.point_estimate="posterior_mean"`` the moments' ``imputation`` is the pass with
        every weight at its posterior mean instead of the samples' mean."""
        core = self._require_fitted()
        moments, samples = monte_carlo_moments(
            core, dataset, self.config, self.device, n_samples,
            monte_carlo_records_per_pass(len(dataset), self.config.batch_size, n_samples),
            monte_carlo_records_per_pass(len(dataset), self.config.batch_size, max(self.config.masking_samples, 1)))
        if self.config.point_estimate == "posterior_mean":
            data = prepare(dataset, self.config.delta_convention, self.device)
            point = impute_prepared(core, data, 4 * self.config.batch_size).cpu().numpy()
            moments["imputation"] = point.astype(moments["imputation"].dtype)
        return moments, samples

    def predict(self, test: TimeSeriesDataset | np.ndarray, n_samples: int | None = None, level: float = 0.9,
                return_samples: bool = False, calibrated: bool | None = None) -> dict[str, np.ndarray]:
        """``{"imputation": [N, T, D]}``: observed values kept, missing ones imputed.

        Bayesian models (``config.bayesian``) run ``n_samples`` Monte Carlo weight samples
        (default ``config.n_samples``; batched, DEARI sec. 4.3) and ``config.masking_samples``
        randomly masked passes (:mod:`gapray.imputation.predictive`); ``"imputation"`` is then the
        posterior-mean pass (``config.point_estimate="posterior_mean"``, default) or the Monte Carlo
        mean (``"mc_mean"``), and the result adds ``"std"`` (predictive, uncalibrated),
        ``"epistemic_std"``, ``"aleatoric_std"`` and the interval ``"lower"``/``"upper"`` at
        ``level``. ``calibrated``: True, the split-conformal interval fitted on validation during
        :meth:`fit` (plus ``"calibrated_std"``, the std that interval corresponds to); False, the
        raw Gaussian ``mean +- z std``; None (default), calibrated when the model has a
        calibration (fitted with validation data), else raw. ``return_samples`` adds the weight
        samples ``"samples"`` ``[K, N, T, D]``. ``n_samples=0`` uses the posterior means only
        (the frozen network).
        """
        core = self._require_fitted()
        dataset = check_dataset(test, "test", self.n_features)
        if n_samples is None:
            n_samples = self.config.n_samples if self.config.bayesian else 0
        if n_samples and not self.config.bayesian:
            raise ValueError(f"{type(self).__name__} is not Bayesian (config.bayesian=False): "
                             "it cannot draw Monte Carlo samples")
        if not n_samples:
            data = prepare(dataset, self.config.delta_convention, self.device)
            imputation = impute_prepared(core, data, 4 * self.config.batch_size)
            return {"imputation": imputation.cpu().numpy()}
        has_calibration = self.uncertainty is not None and self.uncertainty.calibration is not None
        if calibrated and not has_calibration:
            raise ValueError(f"{type(self).__name__} has no calibration: fit it with validation data "
                             "(or call fit_uncertainty(train, val)), or pass calibrated=False")
        moments, samples = self._moments(dataset, n_samples)
        aleatoric = self.config.aleatoric
        scale_model = None if self.uncertainty is None else self.uncertainty.scale_model
        if aleatoric == "laplace" and scale_model is None:  # before fit_uncertainty: the masking spread
            aleatoric = "masking" if self.config.masking_samples else "none"
        prediction = add_predictive_std(moments, dataset.mask, aleatoric, scale_model)
        del prediction["masking_spread"]
        if has_calibration and calibrated is not False:
            assert self.uncertainty is not None
            prediction["lower"], prediction["upper"], prediction["calibrated_std"] = self.uncertainty.interval(
                prediction["imputation"], prediction["std"], dataset.mask, level)
        else:
            prediction["lower"], prediction["upper"] = gaussian_interval(prediction["imputation"], prediction["std"],
                                                                         level)
        if return_samples:
            prediction["samples"] = samples
        return prediction

    def impute(self, test: TimeSeriesDataset | np.ndarray) -> np.ndarray:
        """The imputed ``[N, T, D]`` array (``predict(test)["imputation"]``)."""
        return self.predict(test)["imputation"]

    def evaluate(self, test: TimeSeriesDataset) -> dict[str, float]:
        """MAE and MRE on ``test``'s artificially removed entries, and inference throughput."""
        core = self._require_fitted()
        data = self._prepare(test, "test", with_target=True)
        start = time.perf_counter()
        imputation = impute_prepared(core, data, 4 * self.config.batch_size)
        seconds = time.perf_counter() - start
        return {**masked_errors(imputation, data), "predict_seconds": seconds}

    # --- persistence --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Weights, config, optimizer, epoch counter and best weights (plain tensors and dicts)."""
        core = self._require_fitted()
        assert self.optimizer is not None
        current = {k: v.detach().cpu() for k, v in core.state_dict().items()}
        resume = current if self._resume_weights is None else {k: v.cpu() for k, v in self._resume_weights.items()}
        payload = {
            "format": FORMAT,
            "model": type(self).__name__,
            "config": self.config.to_dict(),
            "n_features": self.n_features,
            "weights": current,
            "resume_weights": resume,
            "best_weights": None if self.state.best_weights is None else
            {k: v.cpu() for k, v in self.state.best_weights.items()},
            "optimizer": self.optimizer.state_dict(),
            "training": self.state.to_dict(),
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
            "uncertainty": None if self.uncertainty is None else self.uncertainty.to_state(),
        }
        path = Path(path)
        atomic_write_bytes(path, lambda handle: _save_synced(payload, handle))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | None = None) -> RecurrentImputer:
        """Rebuild a saved model (``torch.load(weights_only=True)``); ``fit`` then continues training."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path} is not a gapray imputation checkpoint")
        if payload["model"] != cls.__name__:
            raise ValueError(f"{path} holds a {payload['model']} model, not {cls.__name__}")
        config = cls.config_class.from_dict(payload["config"])
        if device is not None:
            config = config.replace(device=device)
        model = cls(config)
        model._build(int(payload["n_features"]))
        core = model._require_fitted()
        core.load_state_dict(payload["weights"])
        model._resume_weights = {k: v.to(model.device) for k, v in payload["resume_weights"].items()}
        assert model.optimizer is not None
        model.optimizer.load_state_dict(payload["optimizer"])
        training = payload["training"]
        best = payload["best_weights"]
        if payload.get("preprocessing") is not None:
            model.preprocessing = Preprocessing.from_dict(payload["preprocessing"])
        if payload.get("uncertainty") is not None:
            model.uncertainty = FittedUncertainty.from_state(payload["uncertainty"])
        model.state = TrainingState(
            epoch=int(training["epoch"]), best_val_mae=float(training["best_val_mae"]),
            best_epoch=int(training["best_epoch"]), bad_epochs=int(training["bad_epochs"]),
            stopped=bool(training["stopped"]), history=list(training["history"]),
            best_weights=None if best is None else {k: v.to(model.device) for k, v in best.items()},
        )
        return model
