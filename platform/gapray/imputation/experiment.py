"""One imputation experiment: load, split under a named protocol, fit, score (CLI and benchmark share it).

Model names (the rows of DEARI Table 1): ``mean``, ``locf``, ``brits-lstm``, ``brits-gru``,
``brits-dml`` (GRU + DML, mean pooling), ``deari`` (3 layers), ``deari-dml`` (CLS pooling), and the
Bayesian rows (DEARI sec. 4.3) ``bayes-brits`` (LSTM), ``bayes-deari`` and ``bayes-deari-dml``:
Bayes-by-Backprop recurrent weights, sampled every ``unfreeze_every`` steps (paper: 100) with
``n_samples`` (paper: 10) weight samples; they are scored on their point imputation
(``config.point_estimate``: the posterior-mean pass by default, or the Monte Carlo mean) and, by
:func:`score_uncertainty`, on their raw and split-conformal calibrated intervals.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gapray.data.dataset import TimeSeriesDataset
from gapray.data.splits import Protocol, Split, imputation_split
from gapray.imputation.baselines import LOCFImputer, MeanImputer
from gapray.imputation.brits.model import BRITS
from gapray.imputation.checkpoint import resume_or_start
from gapray.imputation.config import BRITSConfig, DEARIConfig
from gapray.imputation.deari.model import DEARI
from gapray.imputation.uncertainty import calibrate_and_score, gap_groups, spearman_std_error
from gapray.metrics import masked_mae, masked_mre

BAYESIAN_MODEL_NAMES = ("bayes-brits", "bayes-deari", "bayes-deari-dml")
MODEL_NAMES = ("mean", "locf", "brits-lstm", "brits-gru", "brits-dml", "deari", "deari-dml", "deari-fast"
               ) + BAYESIAN_MODEL_NAMES
#: ``deari-fast``: DEARI-3 with bf16 encoders and a feed-forward width of 256 instead of PyTorch's
#: 2048 (which the paper's parameter count pins). Measured on PhysioNet fold 0
#: (``benchmarks/results/deari_speed.md``): 20.2 s instead of 75.2 s per epoch on 2 idle cores, and
#: test MAE 0.3223 against 0.3220 after 20 epochs (same seed). Not the paper's model: a fast preset.
FAST_PRESET: dict[str, Any] = {"fast_attention": True, "attention_feedforward": 256}
#: Bayesian settings of the paper (DEARI sec. 4.3): sample every 100 steps, 10 weight samples.
BAYESIAN_DEFAULTS: dict[str, Any] = {"bayesian": True, "unfreeze_every": 100, "n_samples": 10}
#: Paper batch sizes (DEARI Sec. 5.2): 64 for PhysioNet and traffic, 128 for the others.
BATCH_SIZES = {"physionet2012": 64, "traffic": 64}


def build_model(name: str, **overrides: Any) -> Any:
    """The named model with paper defaults; ``overrides`` are config fields (e.g. ``epochs``)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if name == "mean":
        return MeanImputer()
    if name == "locf":
        return LOCFImputer()
    if name in ("brits-lstm", "brits-gru", "brits-dml"):
        config = BRITSConfig(cell="lstm" if name == "brits-lstm" else "gru", dml=name == "brits-dml",
                             dml_pooling="mean")
        return BRITS(config, **overrides)
    if name in ("deari", "deari-dml", "deari-fast"):
        preset = FAST_PRESET if name == "deari-fast" else {}
        return DEARI(DEARIConfig(n_layers=3, dml=name == "deari-dml", dml_pooling="cls", **preset), **overrides)
    if name == "bayes-brits":
        return BRITS(BRITSConfig(cell="lstm", **BAYESIAN_DEFAULTS), **overrides)
    if name in ("bayes-deari", "bayes-deari-dml"):
        return DEARI(DEARIConfig(n_layers=3, dml=name == "bayes-deari-dml", dml_pooling="cls", **BAYESIAN_DEFAULTS),
                     **overrides)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def monte_carlo_predictions(model: Any, split: Split, n_samples: int, level: float = 0.9
                            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray],
                                       dict[str, float]]:
    """``(frozen, test, val, seconds)`` of a fitted Bayesian model.

    ``frozen``: the posterior-mean pass over ``split.test``; ``test`` (with ``"samples"``) and
    ``val``: ``n_samples`` batched Monte Carlo passes at ``level`` with the raw (uncalibrated)
    interval, so that calibration can be scored separately; ``seconds``:
    ``predict_seconds_1pass`` (best of two frozen passes: a shared machine is noisy),
    ``predict_seconds_mc`` and ``predict_seconds_val_mc``, and ``mc_cost_ratio``.
    """
    frozen, one_pass = timed(lambda: model.predict(split.test, n_samples=0))
    test, mc_seconds = timed(lambda: model.predict(split.test, n_samples, level, return_samples=True,
                                                    calibrated=False))
    val, val_seconds = timed(lambda: model.predict(split.val, n_samples, level, calibrated=False))
    _, again = timed(lambda: model.predict(split.test, n_samples=0))
    one_pass = min(one_pass, again)
    seconds = {"predict_seconds_1pass": one_pass, "predict_seconds_mc": mc_seconds,
               "predict_seconds_val_mc": val_seconds, "mc_cost_ratio": mc_seconds / one_pass}
    return frozen, test, val, seconds


def score_uncertainty(model: Any, split: Split, n_samples: int | None = None, level: float = 0.9) -> dict[str, Any]:
    """Monte Carlo scores of a fitted Bayesian model on ``split.test``'s removed entries.

    ``mae``/``mre`` of the imputation ``predict`` returns (``point_estimate``: the posterior-mean
    pass, or the mean of the ``n_samples`` Monte Carlo passes; default ``model.config.n_samples``),
    ``frozen_mae`` of the posterior means alone, ``mc_mean_mae`` of the samples' mean; raw ``picp``,
    ``width`` and sample ``crps`` of the Gaussian interval at ``level``; ``calibrated_picp``,
    ``calibrated_width``, ``calibrated_crps`` after split-conformal scaling of the std on
    ``split.val``'s removed entries (:func:`gapray.imputation.uncertainty.calibrate_and_score`),
    and the gap-conditional ``mondrian_*`` ones (one multiplier per gap-length bucket, what
    ``predict`` returns by default); ``spearman``, the rank correlation of the std with the
    absolute error (does the std carry information?); the timings of :func:`monte_carlo_predictions`.
    """
    if not getattr(model.config, "bayesian", False):
        raise ValueError(f"{type(model).__name__} is not Bayesian (config.bayesian=False)")
    n_samples = model.config.n_samples if n_samples is None else n_samples
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    test, val = split.test, split.val
    assert test.X_ori is not None and val.X_ori is not None  # the masking in imputation_split sets X_ori
    frozen, test_pred, val_pred, seconds = monte_carlo_predictions(model, split, n_samples, level)
    samples = test_pred.pop("samples")
    _, scores = calibrate_and_score(val_pred, val.X_ori, val.indicating_mask, test_pred, test.X_ori,
                                    test.indicating_mask, level, samples, gap_groups(val.mask), gap_groups(test.mask))
    target, mask = test.X_ori, test.indicating_mask
    scores["spearman"] = spearman_std_error(test_pred["std"], test_pred["imputation"], np.nan_to_num(target), mask)
    return {
        "mae": masked_mae(test_pred["imputation"], target, mask),
        "mre": masked_mre(test_pred["imputation"], target, mask),
        "frozen_mae": masked_mae(frozen["imputation"], target, mask),
        "mc_mean_mae": masked_mae(samples.mean(axis=0), target, mask),
        **scores, "n_samples": n_samples, "level": level, "point_estimate": model.config.point_estimate,
        **seconds,
    }


def fit_and_score(model: Any, split: Split, n_samples: int | None = None, level: float = 0.9,
                  checkpoint_path: str | os.PathLike[str] | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Fit on ``split.train`` (early stopping on ``split.val``), score on ``split.test``.

    With ``checkpoint_path`` the run saves itself after every epoch and, when a checkpoint is
    already there, continues from it (:func:`gapray.imputation.checkpoint.resume_or_start`); the
    reported epochs, timings and ``fit_seconds`` then cover the whole run, every session of it
    (``resumed_from_epoch`` says where this call started). Bayesian models are scored on their
    point imputation and intervals (:func:`score_uncertainty`, ``n_samples`` passes, default the
    model's ``config.n_samples``)."""
    resumed_from = 0
    if checkpoint_path is not None:
        model, resumed = resume_or_start(model, checkpoint_path)
        resumed_from = int(model.state.epoch) if resumed else 0
    start = time.perf_counter()
    if hasattr(model, "state"):
        model.fit(split.train, split.val, checkpoint_path=checkpoint_path, show_progress=show_progress)
    else:
        model.fit(split.train, split.val)
    call_seconds = time.perf_counter() - start
    history = list(getattr(getattr(model, "state", None), "history", []))
    scores = model.evaluate(split.test)
    fit_seconds = sum(h["epoch_seconds"] for h in history) if history else call_seconds
    result: dict[str, Any] = {"mae": scores["mae"], "mre": scores["mre"], "fit_seconds": fit_seconds,
                              "predict_seconds": scores.get("predict_seconds")}
    if checkpoint_path is not None and hasattr(model, "state"):
        result.update({"checkpoint": str(checkpoint_path), "resumed_from_epoch": resumed_from})
    if getattr(getattr(model, "config", None), "bayesian", False):
        result.update(score_uncertainty(model, split, n_samples, level))
    if history:
        rates = [h["samples_per_second"] for h in history]
        result.update({
            "samples_per_second": float(np.median(rates)),
            "epochs": len(history),
            "best_epoch": int(model.state.best_epoch),
            "best_val_mae": float(model.state.best_val_mae),
            "early_stopped": bool(model.state.stopped),
            "n_parameters": model.n_parameters(),
            "val_mae_by_epoch": [h["val_mae"] for h in history],
            "epoch_seconds": [h["epoch_seconds"] for h in history],
        })
    else:
        result.update({"samples_per_second": math.nan, "epochs": 0})
    return result


def run_experiment(model_name: str, dataset: TimeSeriesDataset, protocol: Protocol = "deari", mask_rate: float = 0.1,
                   folds: int = 1, n_folds: int = 5, seed: int = 0,
                   checkpoint_dir: str | os.PathLike[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Run ``folds`` folds (0..folds-1) and return the mean scores plus each fold's.

    With ``checkpoint_dir``, fold ``k`` checkpoints to ``<checkpoint_dir>/fold<k>.pt`` after
    every epoch and continues from it when it exists."""
    if overrides.get("batch_size") is None:
        family = next((k for k in BATCH_SIZES if dataset.name.startswith(k)), None)
        overrides["batch_size"] = BATCH_SIZES.get(family or "", 128)
    per_fold = []
    for fold in range(folds):
        split = imputation_split(dataset, protocol=protocol, rate=mask_rate, seed=seed, fold=fold, n_folds=n_folds)
        model = build_model(model_name, seed=seed, **overrides)
        checkpoint = None if checkpoint_dir is None else os.path.join(checkpoint_dir, f"fold{fold}.pt")
        per_fold.append({"fold": fold, **fit_and_score(model, split, checkpoint_path=checkpoint)})
    summary: dict[str, Any] = {"model": model_name, "dataset": dataset.name, "protocol": protocol,
                               "mask_rate": mask_rate, "folds": folds}
    for key in ("mae", "mre", "fit_seconds", "samples_per_second"):
        values = [f[key] for f in per_fold]
        summary[key] = float(np.mean(values))
        if folds > 1:
            summary[f"{key}_std"] = float(np.std(values))
    summary["per_fold"] = per_fold
    return summary
