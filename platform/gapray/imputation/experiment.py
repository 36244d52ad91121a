"""One imputation experiment: load, split under a named protocol, fit, score (CLI and benchmark share it).

Model names (the rows of DEARI Table 1): ``mean``, ``locf``, ``brits-lstm``, ``brits-gru``,
``brits-dml`` (GRU + DML, mean pooling), ``deari`` (3 layers), ``deari-dml`` (CLS pooling).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from gapray.data.dataset import TimeSeriesDataset
from gapray.data.splits import Protocol, Split, imputation_split
from gapray.imputation.baselines import LOCFImputer, MeanImputer
from gapray.imputation.brits.model import BRITS
from gapray.imputation.config import BRITSConfig, DEARIConfig
from gapray.imputation.deari.model import DEARI

MODEL_NAMES = ("mean", "locf", "brits-lstm", "brits-gru", "brits-dml", "deari", "deari-dml")
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
    if name in ("deari", "deari-dml"):
        return DEARI(DEARIConfig(n_layers=3, dml=name == "deari-dml", dml_pooling="cls"), **overrides)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


def fit_and_score(model: Any, split: Split) -> dict[str, Any]:
    """Fit on ``split.train`` (early stopping on ``split.val``), score on ``split.test``."""
    start = time.perf_counter()
    history = model.fit(split.train, split.val)
    fit_seconds = time.perf_counter() - start
    scores = model.evaluate(split.test)
    result: dict[str, Any] = {"mae": scores["mae"], "mre": scores["mre"], "fit_seconds": fit_seconds}
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
        })
    else:
        result.update({"samples_per_second": math.nan, "epochs": 0})
    return result


def run_experiment(model_name: str, dataset: TimeSeriesDataset, protocol: Protocol = "deari", mask_rate: float = 0.1,
                   folds: int = 1, n_folds: int = 5, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Run ``folds`` folds (0..folds-1) and return the mean scores plus each fold's."""
    if overrides.get("batch_size") is None:
        family = next((k for k in BATCH_SIZES if dataset.name.startswith(k)), None)
        overrides["batch_size"] = BATCH_SIZES.get(family or "", 128)
    per_fold = []
    for fold in range(folds):
        split = imputation_split(dataset, protocol=protocol, rate=mask_rate, seed=seed, fold=fold, n_folds=n_folds)
        model = build_model(model_name, seed=seed, **overrides)
        per_fold.append({"fold": fold, **fit_and_score(model, split)})
    summary: dict[str, Any] = {"model": model_name, "dataset": dataset.name, "protocol": protocol,
                               "mask_rate": mask_rate, "folds": folds}
    for key in ("mae", "mre", "fit_seconds", "samples_per_second"):
        values = [f[key] for f in per_fold]
        summary[key] = float(np.mean(values))
        if folds > 1:
            summary[f"{key}_std"] = float(np.std(values))
    summary["per_fold"] = per_fold
    return summary
