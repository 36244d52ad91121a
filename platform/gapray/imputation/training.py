"""The fit loop shared by BRITS and DEARI: tensors prepared once, Adam, early stopping on validation MAE.

Everything a batch needs (zero-filled values, mask, forward and backward deltas) is computed
once per dataset by :func:`prepare`; a batch is then a single index into those tensors. The
loop keeps losses on the device and synchronises once per epoch. Each epoch runs under
``torch.random.fork_rng`` seeded with ``(seed, epoch)``, so shuffling and dropout are the same
whether training ran in one go or was resumed from a checkpoint, and the caller's global RNG
is left untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gapray.data.dataset import DeltaConvention, TimeSeriesDataset
from gapray.imputation.bayesian import sampled_weights, split_samples
from gapray.imputation.brits.core import Batch
from gapray.imputation.config import BRITSConfig
from gapray.imputation.schedule import FreezeSchedule

EpochCallback = Callable[[int, dict[str, float]], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class PreparedData:
    """A dataset as model-ready tensors on one device (built once per dataset)."""

    values: Tensor  # [N, T, D], 0 where missing
    mask: Tensor  # [N, T, D]
    deltas: Tensor  # [2, N, T, D]; backward in reversed time order
    target: Tensor | None = None  # X_ori with 0 where missing, [N, T, D]
    evaluation_mask: Tensor | None = None  # artificially removed entries, [N, T, D]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def batch(self, index: Tensor | slice) -> Batch:
        return Batch(values=self.values[index], mask=self.mask[index], deltas=self.deltas[:, index])

    def batches(self, batch_size: int, order: Tensor | None = None) -> Iterator[tuple[int, Batch]]:
        n = len(self)
        for start in range(0, n, batch_size):
            index: Tensor | slice = slice(start, start + batch_size) if order is None else \
                order[start:start + batch_size]
            yield min(batch_size, n - start), self.batch(index)


def prepare(dataset: TimeSeriesDataset, convention: DeltaConvention, device: torch.device,
            with_target: bool = False) -> PreparedData:
    """Zero-filled values, mask and both directions' deltas (and the scoring target if asked)."""
    mask = dataset.mask
    values = np.nan_to_num(dataset.X, nan=0.0)
    deltas = np.stack([dataset.deltas(convention, "forward"), dataset.deltas(convention, "backward")])
    prepared = PreparedData(
        values=torch.from_numpy(values).to(device),
        mask=torch.from_numpy(mask).to(device),
        deltas=torch.from_numpy(deltas).to(device),
    )
    if with_target:
        original = dataset.X if dataset.X_ori is None else dataset.X_ori
        prepared.target = torch.from_numpy(np.nan_to_num(original, nan=0.0)).to(device)
        prepared.evaluation_mask = torch.from_numpy(dataset.indicating_mask).to(device)
    return prepared


@torch.no_grad()
def impute_prepared(core: nn.Module, data: PreparedData, batch_size: int) -> Tensor:
    """The model's imputation ``[N, T, D]`` (observed values kept), in evaluation mode."""
    was_training = core.training
    core.eval()
    try:
        parts = [core(batch, with_loss=False).imputation for _, batch in data.batches(batch_size)]
    finally:
        core.train(was_training)
    return torch.cat(parts) if parts else data.values.clone()


@torch.no_grad()
def sample_imputations(core: nn.Module, data: PreparedData, batch_size: int, n_samples: int) -> Tensor:
    """``n_samples`` Monte Carlo imputations ``[K, N, T, D]`` of a Bayesian core (DEARI sec. 4.3).

    Per batch, the ``K`` weight samples run as one batched pass over the batch repeated ``K``
    times (:func:`gapray.imputation.bayesian.sampled_weights`), in evaluation mode.
    """
    was_training = core.training
    core.eval()
    parts = []
    try:
        for _size, batch in data.batches(batch_size):
            with sampled_weights(core, n_samples):
                imputation = core(batch.repeat(n_samples), with_loss=False).imputation
            parts.append(split_samples(imputation, n_samples))
    finally:
        core.train(was_training)
    return torch.cat(parts, dim=1)


def masked_errors(imputation: Tensor, data: PreparedData) -> dict[str, float]:
    """MAE and MRE on the artificially removed entries (DESIGN.md sec. 2), in float64."""
    assert data.target is not None and data.evaluation_mask is not None
    error = ((imputation.double() - data.target.double()).abs() * data.evaluation_mask).sum()
    count = data.evaluation_mask.double().sum()
    magnitude = (data.target.double().abs() * data.evaluation_mask).sum()
    return {"mae": float(error / count), "mre": float(error / magnitude)}


@dataclass
class TrainingState:
    """Where training stands; saved with the model so ``fit`` can continue after ``load``."""

    epoch: int = 0
    best_val_mae: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_weights: dict[str, Tensor] | None = None

    def to_dict(self) -> dict[str, object]:
        return {"epoch": self.epoch, "best_val_mae": self.best_val_mae, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "stopped": self.stopped, "history": list(self.history)}


def _snapshot(core: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in core.state_dict().items()}


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def train_one_epoch(core: nn.Module, optimizer: torch.optim.Optimizer, data: PreparedData, batch_size: int,
                    step_hook: Callable[[], None] | None = None, schedule: FreezeSchedule | None = None,
                    first_step: int = 0, progress: tqdm | None = None) -> float:
    """One pass over shuffled mini-batches; returns the sample-weighted mean training loss.

    With a Bayesian ``schedule``, global step ``first_step + i`` on its sampling steps trains on
    the mean loss of ``n_samples`` weight samples (one batched pass) plus the weighted KL.
    ``progress`` (a batch-level bar) is advanced by each batch's sample count.
    """
    core.train()
    order = torch.randperm(len(data)).to(data.values.device)
    total = data.values.new_zeros(())
    n_batches = math.ceil(len(data) / batch_size)
    for index, (size, batch) in enumerate(data.batches(batch_size, order)):
        optimizer.zero_grad(set_to_none=True)
        n_samples = 0 if schedule is None else schedule.samples_for_step(first_step + index)
        if n_samples:
            assert schedule is not None
            coefficient = schedule.kl_coefficient(index, n_batches, max(int(data.mask.sum()), 1))
            with sampled_weights(core, n_samples):
                loss = core(batch.repeat(n_samples), kl_coefficient=coefficient).loss
        else:
            loss = core(batch).loss
        loss.backward()
        optimizer.step()
        if step_hook is not None:
            step_hook()
        total = total + loss.detach() * size
        if progress is not None:
            progress.update(size)
    return float(total) / max(len(data), 1)


def freeze_schedule(config: BRITSConfig) -> FreezeSchedule | None:
    """The Bayesian freeze/unfreeze schedule of ``config`` (None for a deterministic model);
    ``unfreeze_every=None`` with ``bayesian=True`` samples on every step (plain Bayes by Backprop)."""
    if not config.bayesian:
        return None
    return FreezeSchedule(unfreeze_every=config.unfreeze_every or 1, n_samples=config.n_samples,
                          kl_weight=config.kl_weight, kl_scheme=config.kl_scheme)


def fit_loop(core: nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState, config: BRITSConfig,
             train: PreparedData, val: PreparedData | None, epoch_callback: EpochCallback | None = None,
             description: str = "fit", checkpoint: Callable[[], object] | None = None,
             show_progress: bool = True) -> list[dict[str, float]]:
    """Train until ``config.epochs``, early stopping (patience on validation MAE) or ``max_seconds``.

    Continues from ``state.epoch``. After every epoch, once ``state`` is complete (early-stopping
    counter and stop flag included), calls ``checkpoint()`` (e.g. an atomic save of the model:
    a run killed at any point then loses at most the epoch in progress) and then
    ``epoch_callback(epoch, metrics)`` with ``epoch`` = epochs completed (1-based) and metrics
    ``train_loss``, ``val_mae``, ``val_mre`` (NaN without validation data), ``epoch_seconds``,
    ``samples_per_second``. Leaves the best weights (lowest validation MAE; the last ones without
    validation) in ``core`` and returns the metrics history of this call.

    Progress: an epoch bar (best validation MAE so far, early-stopping counter, ETA to the epoch
    limit) and a batch bar within the epoch (samples/s), both on stderr.
    """
    started = time.perf_counter()
    schedule = freeze_schedule(config)
    history: list[dict[str, float]] = []
    devices = [train.values.device] if train.values.device.type == "cuda" else []
    batches_per_epoch = math.ceil(len(train) / config.batch_size)
    disable = not show_progress
    epochs = tqdm(total=config.epochs, initial=min(state.epoch, config.epochs), desc=description, unit="epoch",
                  leave=False, disable=disable, dynamic_ncols=True)
    batches = tqdm(total=len(train), desc="  batches", unit="sample", unit_scale=True, leave=False,
                   disable=disable, dynamic_ncols=True)
    try:
        for epoch in range(state.epoch, config.epochs):
            if state.stopped:
                break
            epoch_start = time.perf_counter()
            batches.reset(total=len(train))
            batches.set_description(f"  epoch {epoch + 1}")
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(_epoch_seed(config.seed, epoch))
                train_loss = train_one_epoch(core, optimizer, train, config.batch_size, schedule=schedule,
                                             first_step=epoch * batches_per_epoch, progress=batches)
            train_seconds = time.perf_counter() - epoch_start
            metrics = {"train_loss": train_loss, "val_mae": math.nan, "val_mre": math.nan}
            if val is not None:
                metrics.update({f"val_{k}": v for k, v in
                                masked_errors(impute_prepared(core, val, 4 * config.batch_size), val).items()})
            state.epoch = epoch + 1
            if val is None or metrics["val_mae"] < state.best_val_mae:
                state.best_val_mae = metrics["val_mae"] if val is not None else math.inf
                state.best_epoch, state.bad_epochs = state.epoch, 0
                state.best_weights = _snapshot(core)
            else:
                state.bad_epochs += 1
            if val is not None and state.bad_epochs >= config.patience:
                state.stopped = True
            metrics["epoch_seconds"] = time.perf_counter() - epoch_start
            metrics["samples_per_second"] = len(train) / max(train_seconds, 1e-9)
            history.append(metrics)
            state.history.append({"epoch": float(state.epoch), **metrics})
            if checkpoint is not None:
                checkpoint()
            epochs.update(1)
            epochs.set_postfix_str(
                f"loss {train_loss:.4f} val {metrics['val_mae']:.4f} best {state.best_val_mae:.4f}"
                f"@{state.best_epoch} patience {state.bad_epochs}/{config.patience} "
                f"{metrics['samples_per_second']:.0f} samples/s")
            if epoch_callback is not None:
                epoch_callback(state.epoch, dict(metrics))
            if config.max_seconds is not None and time.perf_counter() - started >= config.max_seconds:
                break
    finally:
        batches.close()
        epochs.close()
    return history
