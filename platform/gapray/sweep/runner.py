"""Run (or resume) a DEARI sweep on Ray Tune with MLflow tracking; summarise and register the best model.

Order of work (DESIGN.md section 5): connect to Ray; create the MLflow experiment on the driver;
find or create the sweep's parent run; load and split the data once on the driver (trials get
it through Ray's object store); choose per-trial resources from the cluster; ``Tuner.fit()``
(or ``Tuner.restore(...).fit()`` with ``--resume``); close child runs Tune stopped; log the
summary table and the MAE-vs-depth/margin plot to the parent; evaluate the best trial's best
weights on the test split; log and register that model with the alias ``champion``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gapray.data import Split, imputation_split
from gapray.sweep.callbacks import CloseTrialRunCallback
from gapray.sweep.resources import ResourceError, TrialResources, alive_node_resources, choose_trial_resources
from gapray.sweep.settings import SweepSettings
from gapray.sweep.space import SMOKE_SPACE, SweepSpace, param_space
from gapray.sweep.trainable import MODEL_FILE, TrialContext, evaluate_imputation, import_object, train_imputer
from gapray.tracking import (
    close_trial_runs,
    configure_mlflow_environment,
    ensure_experiment,
    find_child_run,
    find_parent_run,
    get_or_create_parent_run,
    latest_unfinished_parent,
    log_metrics,
    mlflow_ui_command,
    resolve_tracking_uri,
)
from gapray.tracking.runs import set_tags

if TYPE_CHECKING:
    from gapray.tracking.registry import RegisteredModel

METRIC = "val_mae"
MODE = "min"
SETTINGS_TAG = "gapray.settings"
STORAGE_TAG = "gapray.storage"
WORKER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "TQDM_DISABLE": "1"}


class SweepError(RuntimeError):
    """The sweep cannot start or resume (nothing to resume, bad storage, ...)."""


@dataclass
class SweepOutcome:
    """What a finished sweep produced (printed by :func:`format_report`)."""

    name: str
    table: pd.DataFrame
    best_config: dict[str, Any]
    best_trial_id: str
    test_metrics: dict[str, float]
    parent_run_id: str
    tracking_uri: str
    experiment_path: str
    resources: TrialResources
    seconds: float
    registered: RegisteredModel | None


def load_split(settings: SweepSettings) -> Split:
    """The dataset (optionally a seeded subset of ``max_records``) split by the DEARI protocol."""
    from gapray.data import loaders

    root = loaders.resolve_data_dir(settings.dataset, settings.data_dir)
    if settings.dataset == "physionet2012":
        dataset = loaders.load_physionet2012(root, subset="a", progress=False)
    elif hasattr(loaders, "load_dataset"):
        dataset = loaders.load_dataset(settings.dataset, root)
    else:
        raise SweepError(f"no loader for dataset {settings.dataset!r}")
    if settings.max_records is not None and settings.max_records < len(dataset):
        rng = np.random.default_rng(settings.seed)
        dataset = dataset.subset(np.sort(rng.choice(len(dataset), settings.max_records, replace=False)))
    return imputation_split(dataset, protocol="deari", rate=settings.mask_rate, seed=settings.seed, fold=settings.fold)


def resolve_storage_path(path: str) -> str:
    """A local folder made absolute (``~`` expanded); ``s3://``/``gs://`` URIs pass through."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def connect_ray(address: str) -> bool:
    """Join or start Ray; returns True when this call started it (and the caller should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": WORKER_ENV}, "log_to_driver": True}
    if address == "local":
        ray.init(address="local", include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def wait_for_resources(settings: SweepSettings) -> TrialResources:
    """Choose per-trial resources; with forced GPUs, wait ``gpu_wait_seconds`` for the autoscaler first."""
    deadline = time.monotonic() + settings.gpu_wait_seconds
    requested = False
    while True:
        try:
            return choose_trial_resources(alive_node_resources(), settings.cpus_per_trial, settings.gpus_per_trial)
        except ResourceError:
            if time.monotonic() >= deadline:
                raise
            if not requested:
                from ray.autoscaler.sdk import request_resources

                request_resources(bundles=[{"GPU": max(settings.gpus_per_trial or 1.0, 1.0)}])
                requested = True
            time.sleep(5.0)


def base_config(settings: SweepSettings, resources: TrialResources) -> Any:
    """The config every trial starts from: the dataclass defaults plus the sweep's training settings."""
    config_class = import_object(settings.config_class)
    values = {"epochs": settings.epochs, "patience": settings.patience, "batch_size": settings.batch_size,
              "seed": settings.seed, "dml": settings.dml, "device": resources.device}
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in values.items() if k in names})


def _sweep_name(settings: SweepSettings) -> str:
    return settings.name or f"deari-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _resume_settings(settings: SweepSettings, client: Any, experiment_id: str) -> tuple[SweepSettings, str]:
    parent = (find_parent_run(client, experiment_id, settings.name) if settings.name
              else latest_unfinished_parent(client, experiment_id))
    if parent is None:
        what = f"sweep {settings.name!r}" if settings.name else "unfinished sweep"
        raise SweepError(f"--resume: no {what} in experiment {settings.experiment!r} at {client.tracking_uri}")
    stored = parent.data.tags.get(SETTINGS_TAG)
    name = parent.data.tags["gapray.sweep"]
    restored = SweepSettings.from_json(stored) if stored else settings
    # Where to connect and track is this invocation's business; what to train is the stored sweep's.
    restored = dataclasses.replace(restored, address=settings.address, tracking_uri=settings.tracking_uri,
                                   resume=True, name=name, storage_path=parent.data.tags.get(STORAGE_TAG,
                                                                                          settings.storage_path))
    return restored, name


def results_table(grid: Any) -> pd.DataFrame:
    """One row per trial: its best epoch by validation MAE, config columns, node and status."""
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        config = result.config or {}
        row: dict[str, Any] = {"trial_id": (result.metrics or {}).get("trial_id", Path(result.path).name)}
        row.update({k: v for k, v in config.items()})
        if history is not None and METRIC in history and history[METRIC].notna().any():
            best = history.loc[history[METRIC].idxmin()]
            row.update({"val_mae": float(best[METRIC]), "val_mre": float(best.get("val_mre", math.nan)),
                        "best_epoch": int(best.get("epoch", 0)), "epochs": int(history["epoch"].max()),
                        "node_id": str(history["node_id"].iloc[-1]) if "node_id" in history else "",
                        "seconds": float(history["time_total_s"].iloc[-1]) if "time_total_s" in history else math.nan})
        else:
            row.update({"val_mae": math.nan, "val_mre": math.nan, "best_epoch": 0, "epochs": 0, "node_id": ""})
        row["status"] = "ERROR" if result.error else "TERMINATED"
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("val_mae", na_position="last").reset_index(drop=True) if len(table) else table


def plot_mae_by_depth_and_margin(table: pd.DataFrame, path: Path) -> Path:
    """Best validation MAE of each trial against depth (``n_layers``) and DML margin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), dpi=110)
    FigureCanvasAgg(figure)
    for index, column in enumerate(("n_layers", "dml_margin"), start=1):
        axes = figure.add_subplot(1, 2, index)
        if column in table and "val_mae" in table:
            bayesian = table.get("unfreeze_every", pd.Series(["off"] * len(table))).astype(str) != "off"
            for flag, marker, label in ((False, "o", "deterministic"), (True, "^", "Bayesian")):
                part = table[bayesian == flag]
                if len(part):
                    axes.scatter(part[column], part["val_mae"], marker=marker, label=label)
            axes.legend(fontsize=8)
        axes.set_xlabel("depth (n_layers)" if column == "n_layers" else "DML margin")
        axes.set_ylabel("best validation MAE")
        axes.grid(alpha=0.3)
    figure.suptitle("DEARI sweep: validation MAE")
    figure.tight_layout()
    figure.savefig(path)
    return path


def load_best_weights(model_class: Any, checkpoint_dir: Path) -> Any:
    """The trial's model with its best-validation weights (the checkpoint also holds the latest ones)."""
    model = model_class.load(checkpoint_dir / MODEL_FILE, device="cpu")
    model.use_best_weights()
    return model


def run_sweep(
    settings: SweepSettings,
    space: SweepSpace | None = None,
    trainable: Callable[..., None] = train_imputer,
    register_model: bool = True,
) -> SweepOutcome:
    """Run or resume the sweep described by ``settings``; see the module docstring for the steps."""
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    started = time.perf_counter()
    configure_mlflow_environment()
    # Checkpointing every epoch is intended: do not warn about frequent experiment snapshots.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    settings = dataclasses.replace(settings, tracking_uri=resolve_tracking_uri(settings.tracking_uri))
    experiment_id = ensure_experiment(settings.tracking_uri, settings.experiment)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    if settings.resume:
        settings, name = _resume_settings(settings, client, experiment_id)
    else:
        name = _sweep_name(settings)
        if find_parent_run(client, experiment_id, name) is not None:
            raise SweepError(f"sweep {name!r} already exists in experiment {settings.experiment!r}: "
                             "add --resume to continue it, or choose another --name")
    settings = dataclasses.replace(settings, storage_path=resolve_storage_path(settings.storage_path))
    run_settings = settings.effective()
    experiment_path = f"{run_settings.storage_path.rstrip('/')}/{name}"
    if settings.resume and not tune.Tuner.can_restore(experiment_path):
        raise SweepError(f"--resume: no Tune experiment state at {experiment_path}")

    started_ray = connect_ray(settings.address)
    try:
        resources = wait_for_resources(run_settings)
        split = load_split(run_settings)
        parent_run_id = get_or_create_parent_run(
            client, experiment_id, name,
            params={**{k: v for k, v in dataclasses.asdict(run_settings).items() if k not in {"resume", "address"}},
                    "trial_cpu": resources.cpu, "trial_gpu": resources.gpu,
                    "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test)},
        )
        set_tags(client, parent_run_id, {SETTINGS_TAG: settings.to_json(), STORAGE_TAG: settings.storage_path})
        context = TrialContext(
            base_config=base_config(run_settings, resources), tracking_uri=settings.tracking_uri,
            experiment_id=experiment_id, parent_run_id=parent_run_id, model_class=run_settings.model_class,
            checkpoint_every=run_settings.checkpoint_every,
        )
        wrapped = tune.with_resources(tune.with_parameters(trainable, split=split, context=context),
                                      resources.as_dict())
        if settings.resume:
            tuner = tune.Tuner.restore(experiment_path, trainable=wrapped, resume_errored=True)
        else:
            chosen_space = space or (SMOKE_SPACE if run_settings.smoke_test else SweepSpace())
            tuner = tune.Tuner(
                wrapped,
                param_space=param_space(import_object(run_settings.config_class), chosen_space),
                tune_config=tune.TuneConfig(
                    metric=METRIC, mode=MODE, num_samples=run_settings.num_samples,
                    scheduler=ASHAScheduler(time_attr="training_iteration", max_t=max(run_settings.epochs, 1),
                                            grace_period=max(min(run_settings.grace_period, run_settings.epochs), 1),
                                            reduction_factor=2),
                    max_concurrent_trials=run_settings.max_concurrent_trials or resources.max_concurrent,
                    reuse_actors=True,  # a fresh worker imports torch and gapray again: seconds per trial
                ),
                run_config=tune.RunConfig(
                    name=name, storage_path=run_settings.storage_path,
                    failure_config=tune.FailureConfig(max_failures=run_settings.max_failures),
                    callbacks=[CloseTrialRunCallback(settings.tracking_uri, experiment_id, parent_run_id)],
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    verbose=1,
                ),
            )
        grid = tuner.fit()
        return _summarise(grid, run_settings, client, experiment_id, parent_run_id, name, experiment_path,
                          resources, split, started, register_model)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _summarise(grid: Any, settings: SweepSettings, client: Any, experiment_id: str, parent_run_id: str, name: str,
               experiment_path: str, resources: TrialResources, split: Split, started: float,
               register_model: bool) -> SweepOutcome:
    table = results_table(grid)
    statuses = {str(r): s for r, s in zip(table["trial_id"], table["status"])} if len(table) else {}
    close_trial_runs(client, experiment_id, parent_run_id, statuses)
    scored = table[table["val_mae"].notna()] if len(table) else table
    if not len(scored):
        client.set_terminated(parent_run_id, status="FAILED")
        raise SweepError(f"sweep {name}: no trial reported {METRIC}; see {experiment_path}")
    best_row = scored.iloc[0]
    best_trial_id = str(best_row["trial_id"])
    best_result = next(r for r in grid if (r.metrics or {}).get("trial_id") == best_trial_id)
    best_config = dict(best_result.config or {})
    model_class = import_object(settings.model_class)
    registered = None
    test_metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gapray-sweep-") as folder:
        work = Path(folder)
        table_path = work / "trials.csv"
        table.to_csv(table_path, index=False)
        client.log_artifact(parent_run_id, str(table_path))
        client.log_artifact(parent_run_id, str(plot_mae_by_depth_and_margin(table, work / "mae_vs_depth_margin.png")),
                            "plots")
        if best_result.checkpoint is not None:
            with best_result.checkpoint.as_directory() as checkpoint_dir:
                model = load_best_weights(model_class, Path(checkpoint_dir))
                test_metrics = evaluate_imputation(model.predict(split.test), split.test)
                best_path = model.save(work / "best" / MODEL_FILE)
            child = find_child_run(client, experiment_id, parent_run_id, best_trial_id)
            if register_model:
                from gapray.tracking.registry import log_and_register_model  # imports mlflow.pyfunc: driver only

                registered = log_and_register_model(settings.tracking_uri, parent_run_id, best_path,
                                                    settings.registered_model, model_class=settings.model_class)
            set_tags(client, parent_run_id, {"gapray.best_trial_id": best_trial_id,
                                             "gapray.best_child_run_id": child.info.run_id if child else ""})
    seconds = time.perf_counter() - started
    log_metrics(client, parent_run_id, {"best_val_mae": float(best_row["val_mae"]), "n_trials": len(table),
                                        "sweep_seconds": seconds, **{f"test_{k}": v for k, v in test_metrics.items()}},
                step=0)
    client.set_terminated(parent_run_id, status="FINISHED")
    return SweepOutcome(name=name, table=table, best_config=best_config, best_trial_id=best_trial_id,
                        test_metrics=test_metrics, parent_run_id=parent_run_id, tracking_uri=settings.tracking_uri,
                        experiment_path=experiment_path, resources=resources, seconds=seconds, registered=registered)


def format_report(outcome: SweepOutcome) -> str:
    """The closing summary: trials by validation MAE, best config, its test scores, the MLflow UI command."""
    columns = [c for c in ("trial_id", "n_layers", "hidden_size", "dml_margin", "unfreeze_every", "n_samples", "lr",
                           "epochs", "best_epoch", "val_mae", "val_mre", "node_id", "status") if c in outcome.table]
    shown = outcome.table[columns].assign(**({"node_id": outcome.table["node_id"].str[:8]}
                                             if "node_id" in columns else {}))
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        table = shown.to_string(index=False)
    test = ", ".join(f"{k.upper()} {v:.4f}" for k, v in outcome.test_metrics.items()) or "no checkpoint"
    lines = [
        f"Sweep {outcome.name}: {len(outcome.table)} trials in {outcome.seconds:.1f} s "
        f"({outcome.resources.cpu:g} CPU, {outcome.resources.gpu:g} GPU per trial); "
        f"results in {outcome.experiment_path}",
        "",
        table,
        "",
        f"Best trial {outcome.best_trial_id}: {outcome.best_config}",
        f"Test set (best trial, best epoch): {test}",
    ]
    if outcome.registered is not None:
        lines.append(f"Registered model: {outcome.registered.model_uri} (version {outcome.registered.version})")
    lines += [f"MLflow parent run {outcome.parent_run_id}; open the UI with:",
              f"  {mlflow_ui_command(outcome.tracking_uri)}"]
    return "\n".join(lines)

