"""The Tune trainable: one imputer trained per trial, with checkpoints, resume and MLflow logging.

Each epoch the model's ``epoch_callback`` logs the epoch's metrics (with ``best_val_mae`` and
``best_epoch``) to the trial's MLflow child run, named by its config, and reports them to Tune
with a checkpoint (every ``checkpoint_every`` epochs), so ASHA can stop the trial and a
restarted trial (retry, resumed sweep) continues from ``tune.get_checkpoint()`` at the saved
epoch, in the same child run.

The data reach the trial through ``tune.with_parameters`` (Ray's object store), so on a cluster
only the driver needs the dataset files.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gapray.data import Split, TimeSeriesDataset
from gapray.metrics import masked_mae, masked_mre
from gapray.sweep.space import config_from_params, run_name
from gapray.tracking import TrialRun, numeric_metrics

MODEL_FILE = "model.pt"
PLOT_EVERY = 10
"""A Bayesian trial redraws its uncertainty plot after epoch 1, every this many epochs, and at the end."""


def import_object(spec: str) -> Any:
    """``"package.module:Name"`` -> the object."""
    module, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"expected 'module:Name', got {spec!r}")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled params (shipped with ``tune.with_parameters``)."""

    base_config: Any
    """The model config every trial starts from (a frozen dataclass, e.g. ``DEARIConfig``)."""
    tracking_uri: str
    """Absolute MLflow tracking URI (remote workers set it themselves)."""
    experiment_id: str
    """MLflow experiment created by the driver before ``fit()``."""
    parent_run_id: str
    """The sweep's parent run; every trial's run carries it as ``mlflow.parentRunId``."""
    model_class: str = "gapray.imputation:DEARI"
    """``module:Class`` of the model: ``Class(config)``, ``Class.load(path)``."""
    checkpoint_every: int = 1
    """Save a Tune checkpoint every this many epochs (and after the last)."""


def evaluate_imputation(prediction: Mapping[str, np.ndarray], dataset: TimeSeriesDataset) -> dict[str, float]:
    """MAE/MRE on the artificially removed entries; interval coverage (PICP) when the model gives bounds."""
    mask = dataset.indicating_mask
    target = np.nan_to_num(dataset.X_ori if dataset.X_ori is not None else dataset.X)
    imputation = np.asarray(prediction["imputation"])
    scores = {"mae": masked_mae(imputation, target, mask), "mre": masked_mre(imputation, target, mask)}
    lower, upper = prediction.get("lower"), prediction.get("upper")
    if lower is not None and upper is not None:
        from gapray.imputation.uncertainty import picp

        scores["coverage"] = picp(lower, upper, target, mask)
    return scores


def _log_uncertainty_plot(run: TrialRun, model: Any, dataset: TimeSeriesDataset) -> None:
    """DEARI Fig. 3c-style band of the first record's most-imputed variable (``gapray.imputation.plotting``)."""
    try:
        from gapray.imputation.plotting import plot_imputation_band
    except ImportError:  # the plotting module is optional
        return
    sample = dataset.subset(np.arange(min(len(dataset), 8)))
    prediction = model.predict(sample)
    if "lower" not in prediction:
        return
    feature = int(sample.indicating_mask[0].sum(axis=0).argmax())
    with tempfile.TemporaryDirectory() as folder:
        path = plot_imputation_band(sample, prediction, record=0, feature=feature,
                                    path=Path(folder) / "uncertainty.png", title=f"{run.run_id[:8]}: record 0")
        run.log_artifact(path, "plots")


def _quiet_worker() -> None:
    """Ray Train's INFO line after every checkpoint ("Checkpoint successfully created at ...") would reach the
    driver's console once per epoch and trial: keep its warnings only."""
    import logging

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)


def best_so_far(model: Any, values: Mapping[str, float], epoch: int, best: tuple[float, int]) -> tuple[float, int]:
    """``(best_val_mae, best_epoch)`` after ``epoch``: the model's own early-stopping record when it keeps one
    (it survives a restart from a checkpoint), else the running minimum of ``val_mae``."""
    state: Any = getattr(model, "state", None)
    best_epoch = int(getattr(state, "best_epoch", 0) or 0)
    if best_epoch > 0:
        return float(state.best_val_mae), best_epoch
    value = values.get("val_mae", math.inf)
    return (value, epoch) if value < best[0] else best


def train_imputer(config: dict[str, Any], *, split: Split, context: TrialContext) -> None:
    """Tune function trainable: fit ``context.model_class`` with ``config`` applied to the base config.

    Every epoch logs the model's metrics plus ``best_val_mae`` and ``best_epoch`` (the numbers the sweep
    ranks by) to the trial's MLflow run at ``step=epoch``, and reports the same to Tune. The run is named by
    the config (:func:`gapray.sweep.space.run_name`).
    """
    import ray
    from ray import tune

    _quiet_worker()
    model_config = config_from_params(context.base_config, config)
    model_class = import_object(context.model_class)
    trial = tune.get_context()
    run = TrialRun.open(
        context.tracking_uri,
        context.experiment_id,
        context.parent_run_id,
        trial_id=trial.get_trial_id(),
        trial_name=run_name(config),
        params=dataclasses.asdict(model_config),
    )
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            model = model_class.load(Path(folder) / MODEL_FILE)
    else:
        model = model_class(model_config)
    node_id = ray.get_runtime_context().get_node_id()
    max_epochs = int(getattr(model_config, "epochs", 0) or 0)
    bayesian = bool(getattr(model_config, "bayesian", False))
    best = (math.inf, 0)

    def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
        nonlocal best
        values = numeric_metrics(metrics)
        best = best_so_far(model, values, epoch, best)
        values.update({"best_val_mae": best[0], "best_epoch": float(best[1])})
        run.log_epoch(values, epoch)
        report = {**values, "epoch": epoch, "node_id": node_id, "mlflow_run_id": run.run_id}
        # ASHA may end this process after any report, so the plot is refreshed along the way.
        if bayesian and (epoch == 1 or epoch % PLOT_EVERY == 0 or epoch == max_epochs):
            _log_uncertainty_plot(run, model, split.val)
        if epoch % context.checkpoint_every == 0 or epoch == max_epochs:
            with tempfile.TemporaryDirectory() as folder:
                model.save(Path(folder) / MODEL_FILE)
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(report)

    model.fit(split.train, split.val, epoch_callback=on_epoch, show_progress=False)
    if bayesian:  # with the best weights fit() leaves in the model
        _log_uncertainty_plot(run, model, split.val)
    run.finish()
