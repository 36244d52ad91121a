"""Training a GIL predictor with an importance policy, and evaluating it.

:class:`PredictorSession` is the one training engine: it owns the predictor, Adam and the
learning-rate schedule (continuous exponential decay, as TF's ``exponential_decay``; per
predictor, :meth:`TrainingConfig.schedule`: the reference MLP decays 1e-3 by x0.9 every 750
steps, the reference LSTM keeps 5e-4 constant), the reference's optional L2 regulariser
(:attr:`TrainingConfig.l2`), and splits a step in two so that the RL environment can read the
forward pass before choosing the importance: :meth:`PredictorSession.forward_for_update`
then :meth:`PredictorSession.update` (importance applied per GIL Eq. 4 through
:class:`~gapray.gil.importance.DeferredImportance`). :class:`GILTrainer` drives a session
with a policy from :mod:`gapray.gil.policies`, selects the checkpoint on validation (never on
test, unlike the reference) and scores the test split with
:func:`gapray.metrics.classification_scores`.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from gapray.data.dataset import DatasetError, TimeSeriesDataset
from gapray.gil.datasets import GILTask
from gapray.gil.importance import DeferredImportance
from gapray.gil.policies import get_policy
from gapray.gil.predictors import (
    MLP_INITS,
    Predictor,
    PredictorOutput,
    build_predictor,
    evaluation_mode,
    frozen_batch_statistics,
    resolve_placeholder,
)
from gapray.metrics import classification_scores


@dataclass(frozen=True)
class TrainingConfig:
    """Predictor training settings (defaults: GIL Appendix D and the reference code)."""

    steps: int = 2000
    """Number of predictor updates (reference: 2,000 for the LSTM, 10,000 for MNIST)."""
    batch_size: int = 128
    """Mini-batch size (paper: 128)."""
    learning_rate: float = 1e-3
    """Adam's initial learning rate (reference MLP: 1e-3)."""
    lr_decay_rate: float = 0.9
    """Learning-rate factor per ``lr_decay_steps`` (continuous exponential decay; reference MLP 0.9)."""
    lr_decay_steps: int = 750
    """Steps over which the learning rate decays by ``lr_decay_rate`` (reference MLP 750)."""
    lstm_learning_rate: float | None = None
    """The LSTM's initial learning rate; None: ``learning_rate``. Reference LSTM: 5e-4
    (``seq_lstm_GIL_train.py`` line 22)."""
    lstm_lr_decay_rate: float | None = None
    """The LSTM's decay factor per ``lr_decay_steps``; None: ``lr_decay_rate``. Reference LSTM: 1.0,
    a constant learning rate (``seq_lstm_GIL_train.py`` line 26)."""
    l2: float = 0.0
    """Weight of the reference's L2 regulariser: ``l2 * mean_k(sum(w_k^2) / 2)`` over the predictor's
    ``regularized_parameters()`` (slim's ``l2_regularizer`` per tensor, then ``tf.reduce_mean`` of
    the collection: ``tabular_mlp_GIL_train.py`` line 178). Like the reference's per-sample
    gradients, its gradient on the encoder weight is scaled per input column by the batch's mean
    importance. Reference: MLP 0.02, MLP GIL-D 0.1, LSTM 0.005 (on the output bias only); 0 = off."""
    mlp_batch_norm: bool = False
    """BatchNorm in the MLP's hidden layers (:class:`~gapray.gil.predictors.SlimBatchNorm`; reference True)."""
    mlp_init: str = "default"
    """MLP weights: ``default`` (PyTorch) or ``reference`` (U(0.001, 0.01), biases 0)."""
    hidden_sizes: tuple[int, ...] = (500, 500)
    """MLP hidden widths; the first layer is the encoder (paper: 500-500 MNIST, 1000-1000 tabular)."""
    lstm_hidden_size: int = 1024
    """LSTM hidden size ``H`` (paper: 1024)."""
    placeholder: str | float = "auto"
    """Value for missing entries: a number, ``zero``, ``3max`` or ``auto`` (see
    :func:`gapray.gil.predictors.resolve_placeholder`; ``auto`` with policy ``ones`` is zero)."""
    eval_every: int = 100
    """Validate every this many steps and keep the best checkpoint (0: keep the last)."""
    select_metric: str = "auc"
    """Validation metric that picks the checkpoint: ``accuracy``, ``auc`` or ``ap``."""
    seed: int = 0
    """Seed of the predictor's initialisation, the batch order and the random policy."""
    device: str = "cpu"
    """Torch device."""
    flush_denormal: bool = True
    """On CPU, flush denormal floats to zero (``torch.set_flush_denormal``, for the thread that
    builds the session). An LSTM saturated by a large placeholder (the reference ``3max`` is 387
    on z-scored PhysioNet) fills its gates with denormals, which made a training step 5x slower
    on this x86 CPU (69 ms -> 13.5 ms per step, 64 units); values below 1.2e-38 become 0."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "lr_decay_steps", "lstm_hidden_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"TrainingConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("learning_rate", "lr_decay_rate", "lstm_learning_rate", "lstm_lr_decay_rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"TrainingConfig.{name} must be positive, got {value}")
        if self.l2 < 0:
            raise ValueError(f"TrainingConfig.l2 must be >= 0, got {self.l2}")
        if self.mlp_init not in MLP_INITS:
            raise ValueError(f"TrainingConfig.mlp_init must be one of {MLP_INITS}, got {self.mlp_init!r}")
        if self.select_metric not in ("accuracy", "auc", "ap"):
            raise ValueError(f"TrainingConfig.select_metric must be accuracy, auc or ap, got {self.select_metric!r}")

    def schedule(self, kind: str) -> tuple[float, float, int]:
        """``(initial learning rate, decay factor, decay steps)`` of the predictor ``kind``."""
        if kind == "lstm":
            return (self.learning_rate if self.lstm_learning_rate is None else self.lstm_learning_rate,
                    self.lr_decay_rate if self.lstm_lr_decay_rate is None else self.lstm_lr_decay_rate,
                    self.lr_decay_steps)
        return self.learning_rate, self.lr_decay_rate, self.lr_decay_steps


class TaskTensors(NamedTuple):
    """One split as tensors: placeholder-filled ``x`` and mask ``m`` (``[N, d]`` for the MLP,
    ``[N, T, d]`` for the LSTM), labels ``y`` ``[N]`` and ``lengths`` ``[N]`` (LSTM) or None."""

    x: torch.Tensor
    m: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None


def to_tensors(dataset: TimeSeriesDataset, kind: str, placeholder: float, device: str = "cpu") -> TaskTensors:
    """Fill the missing entries of ``dataset`` with ``placeholder`` and convert to tensors."""
    if dataset.y is None:
        raise DatasetError(f"{dataset.name}: GIL needs labels y")
    mask = ~np.isnan(dataset.X)
    x = np.where(mask, dataset.X, np.float32(placeholder)).astype(np.float32)
    lengths = None
    if kind == "mlp":
        if dataset.n_steps != 1:
            raise DatasetError(f"{dataset.name}: the MLP takes tabular data [N, 1, D], got X {dataset.X.shape}")
        x, mask = x[:, 0], mask[:, 0]
    else:
        raw = dataset.lengths if dataset.lengths is not None else np.full(len(dataset), dataset.n_steps)
        lengths = torch.as_tensor(np.maximum(raw, 1), dtype=torch.long, device=device)
    return TaskTensors(torch.as_tensor(x, device=device), torch.as_tensor(mask.astype(np.float32), device=device),
                       torch.as_tensor(dataset.y, dtype=torch.long, device=device), lengths)


class BatchSampler:
    """Mini-batch indices: shuffled epochs, or (``balanced``) half the batch per label (GIL-D)."""

    def __init__(self, labels: np.ndarray, batch_size: int, rng: np.random.Generator, balanced: bool = False) -> None:
        labels = np.asarray(labels)
        if batch_size > len(labels):
            raise ValueError(f"batch size {batch_size} is larger than the training data ({len(labels)} samples)")
        self.batch_size, self.rng, self.balanced = batch_size, rng, balanced
        if balanced:
            classes = np.unique(labels)
            if classes.size != 2 or batch_size % 4:
                raise ValueError("label-balanced batches (GIL-D) need binary labels and a batch size divisible by 4, "
                                 f"got classes {classes.tolist()} and batch size {batch_size}")
            self._pools = [np.flatnonzero(labels == c) for c in classes]
            self._orders = [self.rng.permutation(p) for p in self._pools]
            self._cursors = [0, 0]
        else:
            self._n = len(labels)
            self._order = self.rng.permutation(self._n)
            self._cursor = 0

    def _take(self, which: int, count: int) -> np.ndarray:
        pool = self._pools[which]
        out = []
        while count:
            if self._cursors[which] >= len(pool):
                self._orders[which], self._cursors[which] = self.rng.permutation(pool), 0
            chunk = self._orders[which][self._cursors[which]:self._cursors[which] + count]
            self._cursors[which] += len(chunk)
            count -= len(chunk)
            out.append(chunk)
        return np.concatenate(out)

    def next(self) -> np.ndarray:
        """The next batch: ``[negatives (B/2), positives (B/2)]`` when balanced."""
        if self.balanced:
            half = self.batch_size // 2
            return np.concatenate([self._take(0, half), self._take(1, half)])
        if self._cursor + self.batch_size > self._n:
            self._order, self._cursor = self.rng.permutation(self._n), 0
        batch = self._order[self._cursor:self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return batch


class PendingUpdate(NamedTuple):
    """A forward pass that waits for its importance (see :meth:`PredictorSession.update`)."""

    batch_index: torch.Tensor
    x: torch.Tensor
    lengths: torch.Tensor | None
    y: torch.Tensor
    deferred: DeferredImportance
    output: PredictorOutput
    loss: torch.Tensor


class PredictorSession:
    """A predictor, its optimiser and its training data; one importance-weighted update at a time."""

    def __init__(self, predictor: Predictor, train: TaskTensors, config: TrainingConfig,
                 deferred: bool | None = None) -> None:
        self.predictor, self.train, self.config = predictor, train, config
        if config.flush_denormal and train.x.device.type == "cpu":
            torch.set_flush_denormal(True)
        learning_rate, decay_rate, decay_steps = config.schedule(predictor.kind)
        self.optimizer = torch.optim.Adam(predictor.parameters(), lr=learning_rate)
        factor = decay_rate ** (1.0 / decay_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: factor ** step)
        self._regularized = predictor.regularized_parameters() if config.l2 > 0 else []
        self.steps_done = 0
        self.deferred = deferred_importance_is_exact(predictor, train) if deferred is None else deferred
        """Reuse the observation's forward pass for the update (:class:`DeferredImportance`);
        when False, :meth:`update` runs a fresh split forward (Eq. 4) instead."""

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        lengths = None if self.train.lengths is None else self.train.lengths[index]
        return self.train.x[index], lengths, self.train.y[index]

    def forward_for_update(self, index: np.ndarray | torch.Tensor) -> PendingUpdate:
        """Forward the training rows ``index`` with autograd on; the importance comes later."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.train.x.device)
        x, lengths, y = self._batch(index)
        deferred = DeferredImportance(x)
        output = self.predictor(deferred.input, lengths)
        return PendingUpdate(index, x, lengths, y, deferred, output, F.cross_entropy(output.logits, y))

    def update(self, pending: PendingUpdate, importance: torch.Tensor) -> float:
        """Apply ``importance`` (shape of the batch input) per GIL Eq. 4, back-propagate, step
        Adam and the schedule. Returns the batch loss before the update."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.deferred:
            pending.deferred.apply(importance)
            pending.loss.backward()
        else:
            with frozen_batch_statistics(self.predictor):  # forward_for_update already moved them
                logits = self.predictor(pending.x, pending.lengths, importance=importance).logits
            F.cross_entropy(logits, pending.y).backward()
        if self._regularized:
            self._add_l2_gradient(importance)
        self.optimizer.step()
        self.scheduler.step()
        self.steps_done += 1
        return float(pending.loss.detach())

    @torch.no_grad()
    def _add_l2_gradient(self, importance: torch.Tensor) -> None:
        """Add the gradient of :attr:`TrainingConfig.l2`'s regulariser. The reference adds the
        regulariser to every sample's loss before its per-sample gradients are weighted, so on the
        encoder weight (the first regularised tensor) column ``j`` of the decay is scaled by
        ``mean_i a_ij`` (mean over the batch's rows, and steps for the LSTM)."""
        coefficient = self.config.l2 / len(self._regularized)
        encoder = self.predictor.encoder_weight
        for tensor in self._regularized:
            decay = coefficient * tensor.detach()
            if tensor is encoder:
                decay = decay * importance.reshape(-1, importance.shape[-1]).mean(dim=0).to(decay.dtype)
            if tensor.grad is None:
                tensor.grad = decay
            else:
                tensor.grad.add_(decay)

    def l2_penalty(self) -> float:
        """The value of :attr:`TrainingConfig.l2`'s regulariser with the current weights (0 when off)."""
        if not self._regularized:
            return 0.0
        terms = [float(t.detach().pow(2).sum()) / 2.0 for t in self._regularized]
        return self.config.l2 * sum(terms) / len(terms)

    @torch.inference_mode()
    def evaluate_batch(self, batch: torch.Tensor | PendingUpdate) -> tuple[float, PredictorOutput]:
        """Loss and outputs of a batch (training row indices, or a pending update's batch) with
        the current weights, without autograd; BatchNorm uses the batch's statistics, as the
        training forward does, without moving its running averages."""
        x, lengths, y = self._batch(batch) if isinstance(batch, torch.Tensor) else batch[1:4]
        with frozen_batch_statistics(self.predictor):
            output = self.predictor(x, lengths)
        return float(F.cross_entropy(output.logits, y)), output

    @torch.no_grad()
    def predict_proba(self, data: TaskTensors, chunk: int = 2048) -> np.ndarray:
        """Class probabilities ``[N, C]`` for a split (eval mode: BatchNorm's running averages)."""
        parts = []
        with evaluation_mode(self.predictor):
            for start in range(0, len(data.y), chunk):
                stop = start + chunk
                lengths = None if data.lengths is None else data.lengths[start:stop]
                parts.append(torch.softmax(self.predictor(data.x[start:stop], lengths).logits, dim=-1))
        return torch.cat(parts).cpu().numpy()

    def scores(self, data: TaskTensors) -> dict[str, float]:
        """Accuracy, ROC AUC and AP (:func:`gapray.metrics.classification_scores`)."""
        return classification_scores(data.y.cpu().numpy(), self.predict_proba(data))


def deferred_importance_is_exact(predictor: Predictor, train: TaskTensors, rows: int = 3) -> bool:
    """Whether :class:`DeferredImportance` gives the split forward's encoder gradient on this
    predictor's device and kernels (a kernel that copies its input would silently drop the
    importance). Checked once on a few training rows with a throw-away copy of the predictor."""
    probe = copy.deepcopy(predictor)
    x, y = train.x[:rows], train.y[:rows]
    lengths = None if train.lengths is None else train.lengths[:rows]
    importance = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)).to(x.device)
    grads = []
    for deferred in (True, False):
        probe.zero_grad(set_to_none=True)
        if deferred:
            buffer = DeferredImportance(x)
            logits = probe(buffer.input, lengths).logits
            buffer.apply(importance)
        else:
            logits = probe(x, lengths, importance=importance).logits
        F.cross_entropy(logits, y).backward()
        grad = probe.encoder_weight.grad
        assert grad is not None  # set by the backward pass above
        grads.append(grad.detach().clone())
    return bool(torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6))


def seeded_predictor(task: GILTask, config: TrainingConfig, seed: int) -> Predictor:
    """The task's predictor initialised from ``seed`` (global torch RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        predictor = build_predictor(task.kind, task.n_features, task.n_classes, config.hidden_sizes,
                                    config.lstm_hidden_size, mlp_batch_norm=config.mlp_batch_norm,
                                    mlp_init=config.mlp_init)
    return predictor.to(config.device)


def task_placeholder(task: GILTask, spec: str | float, policy: str | None = None) -> float:
    """:func:`resolve_placeholder` on the task's observed training values (``auto`` + ``ones`` = 0)."""
    if spec == "auto" and policy == "ones":
        spec = "zero"
    return resolve_placeholder(spec, task.kind, task.train.X)


@dataclass
class TrainResult:
    """Outcome of :meth:`GILTrainer.fit`: test and validation scores of the selected checkpoint."""

    test: dict[str, float]
    val: dict[str, float]
    best_step: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    predictor: Predictor | None = None


class GILTrainer:
    """Train a task's predictor with an importance policy and score it.

    Example::

        task = digits_task(missing_rate=0.5)
        result = GILTrainer(TrainingConfig(steps=300, hidden_sizes=(64, 64))).fit(task, "mask")
        result.test  # {"accuracy": ..., "auc": ..., "ap": ...}
    """

    def __init__(self, config: TrainingConfig | None = None) -> None:
        self.config = config or TrainingConfig()

    def fit(self, task: GILTask, policy: str = "ones", progress: bool = False) -> TrainResult:
        cfg = self.config
        policy_fn = get_policy(policy)
        placeholder = task_placeholder(task, cfg.placeholder, policy)
        train, val, test = (to_tensors(ds, task.kind, placeholder, cfg.device)
                            for ds in (task.train, task.val, task.test))
        session = PredictorSession(seeded_predictor(task, cfg, cfg.seed), train, cfg)
        sampler = BatchSampler(train.y.cpu().numpy(), cfg.batch_size, np.random.default_rng(cfg.seed))
        generator = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
        best_score, best_state, best_step, history = -np.inf, None, cfg.steps, []
        started = time.perf_counter()
        quiet = not progress or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")
        for step in tqdm(range(1, cfg.steps + 1), desc=f"gil {task.name} {policy}", disable=quiet):
            pending = session.forward_for_update(sampler.next())
            importance = policy_fn(pending.deferred.input, train.m[pending.batch_index], generator)
            loss = session.update(pending, importance)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                val_scores = session.scores(val)
                history.append({"step": step, "loss": loss, **{f"val_{k}": v for k, v in val_scores.items()}})
                if val_scores[cfg.select_metric] > best_score:
                    best_score, best_step = val_scores[cfg.select_metric], step
                    best_state = copy.deepcopy(session.predictor.state_dict())
        if best_state is not None:
            session.predictor.load_state_dict(best_state)
        return TrainResult(test=session.scores(test), val=session.scores(val), best_step=best_step,
                           seconds=time.perf_counter() - started, history=history, predictor=session.predictor)
