"""Run (or resume) a DEARI sweep on Ray Tune with MLflow tracking; summarise and register the best model.

Order of work (DESIGN.md section 5): create the MLflow experiment on the driver (with its
description); make sure the dataset is on disk (downloaded with ``gapray data fetch``'s code,
or stop with instructions *before* Ray starts); connect to Ray; find or create the sweep's
parent run (settings as they ran, search space); load and split the data once on the driver
(trials get it through Ray's object store); choose per-trial resources from the cluster;
``Tuner.fit()`` (or ``Tuner.restore(...).fit()`` with ``--resume``); close child runs Tune
stopped; score the best trial's best weights on the test split next to mean and LOCF
imputation (with split-conformal intervals when it is Bayesian); log the trial table and the
MAE-vs-depth/margin plot to the parent, describe it with a link to the best trial, and register
the best trial's model with the alias ``champion``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gapray.data import Split, imputation_split
from gapray.imputation.preprocessing import Preprocessing
from gapray.sweep.budget import TimeBudgetStopper
from gapray.sweep.callbacks import CloseTrialRunCallback
from gapray.sweep.console import ConsoleReporter
from gapray.sweep.resources import ResourceError, TrialResources, alive_node_resources, choose_trial_resources
from gapray.sweep.settings import SweepSettings
from gapray.sweep.space import SweepSpace, describe_space, first_configs, param_space, run_name, space_for
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
    resolve_tracking_uri,
)
from gapray.tracking.runs import run_link, set_description, set_tags
from gapray.tracking.ui import mlflow_ui_hint

if TYPE_CHECKING:
    from gapray.tracking.registry import RegisteredModel

METRIC = "val_mae"
MODE = "min"
SETTINGS_TAG = "gapray.settings"
STORAGE_TAG = "gapray.storage"
SPACE_TAG = "gapray.search_space"
INTERVAL_LEVEL = 0.9
"""Nominal coverage of the best trial's intervals when it is Bayesian."""
WORKER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "TQDM_DISABLE": "1",
              "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
DATASET_FILES: dict[str, tuple[str, ...]] = {"physionet2012": ("set-a.tar.gz", "Outcomes-a.txt")}
"""Files a sweep needs when it is not the dataset's default download (the sweep uses PhysioNet's set a)."""

EXPERIMENT_DESCRIPTION = """DEARI hyper-parameter sweeps (gapray, `tuning/deari_sweep.py`, `make demo`).

- One **parent run per sweep**: its description links the best trial; tag `gapray.settings` holds the settings \
that ran; artifacts `trials.csv` (one row per trial, with its MLflow `run_id`), `search_space.json` and \
`plots/mae_vs_depth_margin.png`; metrics `test_mae` of the best trial next to `locf_test_mae` and `mean_test_mae`.
- One **child run per trial**, named by its config: `d<depth>-h<hidden>-m<DML margin>-u<Bayesian unfreeze \
period or off>-lr<learning rate>`. Metrics per epoch (step = epoch): `val_mae`, `best_val_mae`, `best_epoch`, \
`train_loss`. To compare trials: expand the parent, select its children, **Compare**, chart `val_mae` by step.
- The best trial's model is registered as **`deari@champion`** (Models tab), its source run the trial.
"""


QUIET_LOGGERS = ("ray.tune",)
"""Driver loggers kept at WARNING during ``fit()`` (Tune's INFO lines about result files and budgets)."""


@contextlib.contextmanager
def quiet_loggers(names: tuple[str, ...], level: int = logging.WARNING) -> Iterator[None]:
    """Raise the level of the loggers ``names`` to ``level`` for the duration, then restore it."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, previous in zip(loggers, saved):
            logger.setLevel(previous)


class SweepError(RuntimeError):
    """The sweep cannot start or resume (nothing to resume, bad storage, no data, ...)."""


@dataclass
class SweepOutcome:
    """What a finished sweep produced (printed by :func:`format_report`)."""

    name: str
    table: pd.DataFrame
    best_config: dict[str, Any]
    best_trial_id: str
    test_metrics: dict[str, float]
    """The best trial on the test split: ``mae``, ``mre``; when Bayesian also ``calibrated_coverage``,
    ``calibrated_width`` (split-conformal on validation, at ``interval_level``) and the raw ``coverage``."""
    parent_run_id: str
    tracking_uri: str
    experiment_path: str
    resources: TrialResources
    seconds: float
    registered: RegisteredModel | None
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{"LOCF": {"mae", "mre"}, "mean": {...}}`` on the same test split."""
    best_run_id: str = ""
    """MLflow run of the best trial."""
    experiment: str = ""
    """MLflow experiment name."""
    n_test: int = 0
    """Test records; their artificially removed entries are the held-out entries scored."""
    n_held_out: int = 0
    """Held-out (artificially removed) entries of the test split."""


def ensure_data(settings: SweepSettings) -> Path:
    """The dataset's folder, downloaded first when it is not on disk (``gapray data fetch``'s code: SHA-256
    checked, with progress); :class:`SweepError` naming ``gapray data fetch NAME``, ``$GAPRAY_DATA_DIR`` and
    the folder layout when it cannot be had (offline, ``--no-download``)."""
    from gapray.data.download import DataUnavailableError, ensure_dataset

    if settings.data is not None:  # the user's own table (gapray.data.read_table)
        return Path(settings.data)

    files = DATASET_FILES.get(settings.dataset)
    try:
        return ensure_dataset(settings.dataset, settings.data_dir, download=settings.download, files=files)
    except DataUnavailableError as error:
        raise SweepError(str(error)) from None


def load_split(settings: SweepSettings, root: Path | None = None) -> Split:
    """The dataset (optionally a seeded subset of ``max_records``) split by the DEARI protocol."""
    from gapray.data import loaders

    if settings.data is not None:
        from gapray.data.table import read_table

        dataset = read_table(settings.data, id_col=settings.id_col, time_col=settings.time_col, freq=settings.freq,
                             window=settings.window)
        return _split_subset(dataset, settings)
    root = root if root is not None else loaders.resolve_data_dir(settings.dataset, settings.data_dir)
    if settings.dataset == "physionet2012":
        dataset = loaders.load_physionet2012(root, subset="a", progress=False)
    elif hasattr(loaders, "load_dataset"):
        dataset = loaders.load_dataset(settings.dataset, root)
    else:
        raise SweepError(f"no loader for dataset {settings.dataset!r}")
    return _split_subset(dataset, settings)


def _split_subset(dataset: Any, settings: SweepSettings) -> Split:
    if settings.max_records is not None and settings.max_records < len(dataset):
        rng = np.random.default_rng(settings.seed)
        dataset = dataset.subset(np.sort(rng.choice(len(dataset), settings.max_records, replace=False)))
    return imputation_split(dataset, protocol="deari", rate=settings.mask_rate, seed=settings.seed, fold=settings.fold)


def resolve_storage_path(path: str) -> str:
    """A local folder made absolute (``~`` expanded); ``s3://``/``gs://`` URIs pass through."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def connect_ray(address: str) -> bool:
    """Join or start Ray; returns True when this call started it (and the caller should shut it down).

    Worker output still reaches the console (errors must), deduplicated across workers by Ray
    (``RAY_DEDUP_LOGS``, on unless the user turned it off); trials themselves print nothing.

    A Ray started here runs its workers at the driver's priority (``worker_niceness`` 0). Ray's
    default starts them 15 nice levels lower, so that they never slow its own services; on a
    machine where anything else is busy that leaves the trials a few per cent of a core
    (measured here at load 7: a 2-layer demo epoch took 75-94 s in a trial against 11 s in a
    plain process of the same priority).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": WORKER_ENV}, "log_to_driver": True}
    if address == "local":
        ray.init(address="local", include_dashboard=False, _system_config={"worker_niceness": 0}, **kwargs)
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
    """One row per trial: its best epoch by validation MAE, config columns, MLflow run, node and status."""
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        config = result.config or {}
        row: dict[str, Any] = {"trial_id": (result.metrics or {}).get("trial_id", Path(result.path).name),
                               "run_name": run_name(config)}
        row.update({k: v for k, v in config.items()})
        if history is not None and METRIC in history and history[METRIC].notna().any():
            best = history.loc[history[METRIC].idxmin()]
            row.update({"val_mae": float(best[METRIC]), "val_mre": float(best.get("val_mre", math.nan)),
                        "best_epoch": int(best.get("epoch", 0)), "epochs": int(history["epoch"].max()),
                        "node_id": str(history["node_id"].iloc[-1]) if "node_id" in history else "",
                        "seconds": float(history["time_total_s"].iloc[-1]) if "time_total_s" in history else math.nan})
        else:
            row.update({"val_mae": math.nan, "val_mre": math.nan, "best_epoch": 0, "epochs": 0, "node_id": ""})
        run_ids = (history["mlflow_run_id"].dropna() if history is not None and "mlflow_run_id" in history
                   else pd.Series(dtype=object))
        row["run_id"] = str(run_ids.iloc[-1]) if len(run_ids) else ""
        row["status"] = "ERROR" if result.error else "TERMINATED"
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("val_mae", na_position="last").reset_index(drop=True) if len(table) else table


def mae_figure(table: pd.DataFrame, references: Mapping[str, float] | None = None) -> Any:
    """Best validation MAE of each trial against depth (``n_layers``, integer ticks) and DML margin;
    ``references`` (e.g. LOCF's validation MAE) are drawn as dashed horizontal lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

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
        for style, (label, value) in zip(("--", ":", "-."), (references or {}).items()):
            axes.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
        if axes.has_data():
            axes.legend(fontsize=8)
        if column == "n_layers":
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("depth (n_layers)" if column == "n_layers" else "DML margin")
        axes.set_ylabel("best validation MAE")
        axes.grid(alpha=0.3)
    figure.suptitle("DEARI sweep: validation MAE")
    figure.tight_layout()
    return figure


def plot_mae_by_depth_and_margin(table: pd.DataFrame, path: Path, references: Mapping[str, float] | None = None
                                 ) -> Path:
    """:func:`mae_figure` saved as a PNG at ``path``."""
    mae_figure(table, references).savefig(path)
    return path


def load_best_weights(model_class: Any, checkpoint_dir: Path) -> Any:
    """The trial's model with its best-validation weights (the checkpoint also holds the latest ones)."""
    model = model_class.load(checkpoint_dir / MODEL_FILE, device="cpu")
    model.use_best_weights()
    return model


def _target(dataset: Any) -> np.ndarray:
    return np.nan_to_num(dataset.X_ori if dataset.X_ori is not None else dataset.X)


def score_best_model(model: Any, split: Split, level: float = INTERVAL_LEVEL) -> dict[str, float]:
    """MAE and MRE of ``model`` on the test split's held-out entries. A Bayesian model (its prediction has
    ``std``) also gets intervals calibrated on the validation split (split conformal,
    :func:`gapray.imputation.uncertainty.calibrate_and_score`): ``calibrated_coverage`` and
    ``calibrated_width`` at ``level``, next to the raw Monte Carlo ``coverage``."""
    prediction = model.predict(split.test)
    scores = evaluate_imputation(prediction, split.test)
    if "std" in prediction:
        from gapray.imputation.uncertainty import calibrate_and_score

        _, interval = calibrate_and_score(model.predict(split.val), _target(split.val), split.val.indicating_mask,
                                          prediction, _target(split.test), split.test.indicating_mask, level)
        scores.update({"calibrated_coverage": interval["calibrated_picp"],
                       "calibrated_width": interval["calibrated_width"], "interval_level": level})
    return scores


def baseline_scores(split: Split, dataset: str = "test") -> dict[str, dict[str, float]]:
    """LOCF and mean imputation (fitted on the training split) scored on ``dataset``'s held-out entries."""
    from gapray.imputation import LOCFImputer, MeanImputer

    target = getattr(split, dataset)
    out: dict[str, dict[str, float]] = {}
    for name, imputer in (("LOCF", LOCFImputer()), ("mean", MeanImputer())):
        imputer.fit(split.train)
        out[name] = evaluate_imputation(imputer.predict(target), target)
    return out


def champion_input_example(split: Split, n_records: int = 2) -> np.ndarray | None:
    """What the registered model is shown with: test records in original units (the champion carries its
    scaler), NaN = missing; None for a sweep on a user's table (the registry then shows a synthetic table)."""
    if split.train.extra.get("table") is not None:
        return None
    # float32: the dtype of the array signature (gapray.tracking.model_schema), which MLflow checks the example against
    return np.asarray(split.standardizer.inverse(split.test.X[:n_records]), dtype=np.float32)


def data_label(settings: SweepSettings) -> str:
    """What the sweep trains on, for people: the user's table (``--data``, its file name) or the dataset name."""
    return f"table {Path(settings.data).name}" if settings.data is not None else settings.dataset


def champion_description(settings: SweepSettings, sweep: str, trial: str, val_mae: float, test_mae: float,
                         locf_mae: float) -> str:
    """The registered champion's description: where it comes from, its scores, and what it takes and returns
    (a table for a sweep on ``--data``, else an array; ``gapray.tracking.registry``)."""
    if settings.data is not None:
        io = (f"Input: a table laid out like `{Path(settings.data).name}` (columns `{settings.id_col}`, "
              f"`{settings.time_col}` and the features; empty cells are missing values), in original units; output: "
              "the same table with its gaps filled, marking the imputed cells (and their std and interval when the "
              "champion is Bayesian).")
    else:
        io = ("Input: an array [records, steps, features] in original units with NaN for missing values; output: "
              "the imputed array.")
    return (f"Best trial `{trial}` of sweep `{sweep}` ({data_label(settings)}): validation MAE {val_mae:.4f}, "
            f"test MAE {test_mae:.4f} (LOCF {locf_mae:.4f}). {io}")


def search_algorithm(settings: SweepSettings, resources: TrialResources, own_space: bool) -> Any:
    """Tune's random search for ``settings``: a preset's own space (``own_space``) starts from its
    known-good configs (:func:`gapray.sweep.space.first_configs`), a space given by the caller does
    not. It also caps the concurrent trials (``max_concurrent_trials``, else what the cluster
    fits): Tune ignores ``TuneConfig.max_concurrent_trials`` once a search algorithm is given."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=first_configs(settings.preset) if own_space else [],
                                 max_concurrent=settings.max_concurrent_trials or resources.max_concurrent)


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
    # Tune's classic reporter is silent at verbose=0 (the new one still prints its banner and paths);
    # ConsoleReporter prints one line per trial instead.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    settings = dataclasses.replace(settings, tracking_uri=resolve_tracking_uri(settings.tracking_uri))
    experiment_id = ensure_experiment(settings.tracking_uri, settings.experiment, EXPERIMENT_DESCRIPTION)
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
    data_root = ensure_data(run_settings)  # before Ray: download, or explain how to provide the data

    started_ray = connect_ray(settings.address)
    try:
        resources = wait_for_resources(run_settings)
        split = load_split(run_settings, data_root)
        chosen_space = space or space_for(run_settings.preset)
        parent_run_id = get_or_create_parent_run(
            client, experiment_id, name,
            params={**{k: v for k, v in dataclasses.asdict(run_settings).items() if k not in {"resume", "address"}},
                    "trial_cpu": resources.cpu, "trial_gpu": resources.gpu,
                    "n_train": len(split.train), "n_val": len(split.val), "n_test": len(split.test)},
        )
        tags = {SETTINGS_TAG: run_settings.to_json(), STORAGE_TAG: run_settings.storage_path}
        if not settings.resume:
            tags[SPACE_TAG] = json.dumps(describe_space(chosen_space))
            with tempfile.TemporaryDirectory(prefix="gapray-sweep-") as folder:
                space_path = Path(folder) / "search_space.json"
                space_path.write_text(json.dumps(describe_space(chosen_space), indent=2))
                client.log_artifact(parent_run_id, str(space_path))
        set_tags(client, parent_run_id, tags)
        context = TrialContext(
            base_config=base_config(run_settings, resources), tracking_uri=settings.tracking_uri,
            experiment_id=experiment_id, parent_run_id=parent_run_id, model_class=run_settings.model_class,
            checkpoint_every=run_settings.checkpoint_every,
        )
        wrapped = tune.with_resources(tune.with_parameters(trainable, split=split, context=context),
                                      resources.as_dict())
        print(f"Sweep {name}: {run_settings.num_samples} trials of DEARI on {data_label(run_settings)} "
              f"({len(split.train)} train / {len(split.val)} validation / {len(split.test)} test records), "
              f"up to {run_settings.epochs} epochs each"
              + (f", {run_settings.time_budget_s:g} s in all" if run_settings.time_budget_s else "")
              + f"; MLflow experiment {run_settings.experiment!r}", flush=True)
        callbacks = [CloseTrialRunCallback(settings.tracking_uri, experiment_id, parent_run_id),
                     ConsoleReporter(run_settings.epochs)]
        if settings.resume:
            tuner = tune.Tuner.restore(experiment_path, trainable=wrapped, resume_errored=True)
        else:
            tuner = tune.Tuner(
                wrapped,
                param_space=param_space(import_object(run_settings.config_class), chosen_space),
                tune_config=tune.TuneConfig(
                    metric=METRIC, mode=MODE, num_samples=run_settings.num_samples,
                    search_alg=search_algorithm(run_settings, resources, own_space=space is None),
                    scheduler=ASHAScheduler(time_attr="training_iteration", max_t=max(run_settings.epochs, 1),
                                            grace_period=max(min(run_settings.grace_period, run_settings.epochs), 1),
                                            reduction_factor=2),
                    reuse_actors=True,  # a fresh worker imports torch and gapray again: seconds per trial
                ),
                run_config=tune.RunConfig(
                    name=name, storage_path=run_settings.storage_path,
                    failure_config=tune.FailureConfig(max_failures=run_settings.max_failures),
                    callbacks=callbacks,
                    stop=(TimeBudgetStopper(run_settings.time_budget_s, min_epochs=run_settings.grace_period)
                          if run_settings.time_budget_s else None),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    verbose=0,  # one line per trial from ConsoleReporter instead of Tune's tables
                ),
            )
        with quiet_loggers(QUIET_LOGGERS):
            grid = tuner.fit()
        return _summarise(grid, run_settings, client, experiment_id, parent_run_id, name, experiment_path,
                          resources, split, started, register_model)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _parent_description(outcome: SweepOutcome, experiment_id: str, best_row: pd.Series) -> str:
    """The parent run's description (markdown): the best trial as a link, its test scores beside the baselines."""
    link = run_link(outcome.tracking_uri, experiment_id, outcome.best_run_id, str(best_row["run_name"]))
    lines = [f"**Best trial:** {link} (Tune trial `{outcome.best_trial_id}`): best validation MAE "
             f"{float(best_row['val_mae']):.4f} at epoch {int(best_row['best_epoch'])}.", ""]
    if outcome.test_metrics:
        scores = [f"best trial {outcome.test_metrics['mae']:.4f}"]
        scores += [f"{name} {values['mae']:.4f}" for name, values in outcome.baselines.items()]
        lines += [f"**Test MAE** on {outcome.n_held_out:,} held-out entries of {outcome.n_test} records: "
                  + ", ".join(scores) + "."]
        if "calibrated_coverage" in outcome.test_metrics:
            level = outcome.test_metrics["interval_level"]
            lines += ["", f"**{100 * level:.0f} % intervals** (split-conformal on validation): coverage "
                      f"{outcome.test_metrics['calibrated_coverage']:.3f}, mean width "
                      f"{outcome.test_metrics['calibrated_width']:.3f}."]
    lines += ["", f"All trials: `trials.csv` (column `run_id`); search space: `search_space.json`; settings: tag "
              f"`{SETTINGS_TAG}`; plot: `plots/mae_vs_depth_margin.png`."]
    if outcome.registered is not None:
        lines += ["", f"Registered: `{outcome.registered.model_uri}` (version {outcome.registered.version})."]
    return "\n".join(lines)


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
    best_run_id = str(best_row["run_id"])
    if not best_run_id:
        child = find_child_run(client, experiment_id, parent_run_id, best_trial_id)
        best_run_id = str(child.info.run_id) if child else ""
    model_class = import_object(settings.model_class)
    outcome = SweepOutcome(name=name, table=table, best_config=best_config, best_trial_id=best_trial_id,
                           test_metrics={}, parent_run_id=parent_run_id, tracking_uri=settings.tracking_uri,
                           experiment_path=experiment_path, resources=resources, seconds=0.0, registered=None,
                           best_run_id=best_run_id, experiment=settings.experiment, n_test=len(split.test),
                           n_held_out=int(split.test.indicating_mask.sum()))
    with tempfile.TemporaryDirectory(prefix="gapray-sweep-") as folder:
        work = Path(folder)
        table_path = work / "trials.csv"
        table.to_csv(table_path, index=False)
        client.log_artifact(parent_run_id, str(table_path))
        references = {f"{k} (validation)": v["mae"] for k, v in baseline_scores(split, "val").items() if k == "LOCF"}
        client.log_artifact(parent_run_id, str(plot_mae_by_depth_and_margin(
            table, work / "mae_vs_depth_margin.png", references)), "plots")
        if best_result.checkpoint is not None:
            with best_result.checkpoint.as_directory() as checkpoint_dir:
                model = load_best_weights(model_class, Path(checkpoint_dir))
                outcome.test_metrics = score_best_model(model, split)
                model.preprocessing = Preprocessing.from_split(split)  # the champion takes original units
                best_path = model.save(work / "best" / MODEL_FILE)
            outcome.baselines = baseline_scores(split)
            if register_model and best_run_id:
                from gapray.tracking.registry import log_and_register_model  # imports mlflow.pyfunc: driver only

                scores = {f"test_{k}": v for k, v in outcome.test_metrics.items()}
                scores.update({f"{k.lower()}_test_mae": v["mae"] for k, v in outcome.baselines.items()})
                outcome.registered = log_and_register_model(
                    settings.tracking_uri, best_run_id, best_path, settings.registered_model,
                    model_class=settings.model_class,
                    description=champion_description(settings, name, str(best_row["run_name"]),
                                                     float(best_row["val_mae"]), outcome.test_metrics["mae"],
                                                     outcome.baselines["LOCF"]["mae"]),
                    tags={"gapray.sweep": name, "gapray.trial_id": best_trial_id, "dataset": data_label(settings),
                          "gapray.parent_run_id": parent_run_id},
                    params=best_config, metrics=scores, input_example=champion_input_example(split))
    set_tags(client, parent_run_id, {"gapray.best_trial_id": best_trial_id, "gapray.best_child_run_id": best_run_id})
    outcome.seconds = time.perf_counter() - started
    set_description(client, parent_run_id, _parent_description(outcome, experiment_id, best_row))
    metrics = {"best_val_mae": float(best_row["val_mae"]), "n_trials": len(table), "sweep_seconds": outcome.seconds,
               **{f"test_{k}": v for k, v in outcome.test_metrics.items() if k != "interval_level"},
               **{f"{k.lower()}_test_mae": v["mae"] for k, v in outcome.baselines.items()}}
    log_metrics(client, parent_run_id, metrics, step=0)
    client.set_terminated(parent_run_id, status="FINISHED")
    return outcome


def comparison_lines(outcome: SweepOutcome) -> list[str]:
    """The best trial beside LOCF and mean imputation on the same test entries (and its calibrated intervals)."""
    if not outcome.test_metrics:
        return ["Test set: no checkpoint of the best trial to score"]
    best_name = run_name(outcome.best_config) or outcome.best_trial_id
    rows = [(f"best trial ({best_name})", outcome.test_metrics)]
    rows += [(name, scores) for name, scores in outcome.baselines.items()]
    width = max(len(label) for label, _ in rows)
    held_out = f"{outcome.n_held_out:,} held-out entries of {outcome.n_test} test records" if outcome.n_test else \
        "held-out test entries"
    lines = [f"Test set ({held_out}, never seen in training):", f"  {'method':<{width}}     MAE     MRE"]
    lines += [f"  {label:<{width}}  {scores['mae']:.4f}  {scores['mre']:.4f}" for label, scores in rows]
    locf = outcome.baselines.get("LOCF")
    if locf:
        change = 100 * (outcome.test_metrics["mae"] - locf["mae"]) / locf["mae"]
        lines.append(f"  The best trial's MAE is {abs(change):.0f} % {'below' if change < 0 else 'above'} LOCF's.")
    if "calibrated_coverage" in outcome.test_metrics:
        lines.append(f"  {100 * outcome.test_metrics['interval_level']:.0f} % intervals of the Bayesian best trial, "
                     f"split-conformal on validation: coverage {outcome.test_metrics['calibrated_coverage']:.3f}, "
                     f"mean width {outcome.test_metrics['calibrated_width']:.3f} (standardised units)")
    return lines


def format_report(outcome: SweepOutcome) -> str:
    """The closing summary: trials by validation MAE, the best trial against the baselines on the test set,
    what to open in the MLflow UI, and the command that opens it."""
    columns = [c for c in ("trial_id", "n_layers", "hidden_size", "dml_margin", "unfreeze_every", "n_samples", "lr",
                           "epochs", "best_epoch", "val_mae", "val_mre", "node_id", "status") if c in outcome.table]
    shown = outcome.table[columns].assign(**({"node_id": outcome.table["node_id"].str[:8]}
                                             if "node_id" in columns else {}))
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        table = shown.to_string(index=False)
    experiment = outcome.experiment or "deari-sweep"
    lines = [
        f"Sweep {outcome.name}: {len(outcome.table)} trials in {outcome.seconds:.1f} s "
        f"({outcome.resources.cpu:g} CPU, {outcome.resources.gpu:g} GPU per trial); "
        f"results in {outcome.experiment_path}",
        "",
        table,
        "",
        f"Best trial {outcome.best_trial_id}: {outcome.best_config}",
        *comparison_lines(outcome),
        "",
        f"In the MLflow UI, experiment {experiment!r}:",
        f"  - run {outcome.name!r}: its description links the best trial; trials.csv, search_space.json, "
        "plots/mae_vs_depth_margin.png",
        "  - expand it, select its trial runs (named d<depth>-h<hidden>-m<margin>-u<unfreeze>-lr<lr>), Compare: "
        "val_mae by epoch, best_val_mae",
    ]
    if outcome.registered is not None:
        lines.append(f"  - Models tab: {outcome.registered.model_uri} (version {outcome.registered.version}), "
                     "the best trial's model with its signature, params and test scores")
    lines += [f"MLflow parent run {outcome.parent_run_id}; open the UI with:",
              f"  {mlflow_ui_hint(outcome.tracking_uri)}"]
    return "\n".join(lines)
