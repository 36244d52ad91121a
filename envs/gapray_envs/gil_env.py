"""The GIL MDP as a Gymnasium environment (GIL paper Sec. 2.3, Algorithm 1; DESIGN.md sec. 4).

One environment step is one importance-weighted update of the predictor on one mini-batch:

* **observation** ``[R, F]`` float32, one row per sample (MLP, ``R = B``) or per sample-step
  (LSTM, ``R = B * T``), columns ``(x, m, zeta, y_hat)`` laid out by :class:`ObservationLayout`:
  the placeholder-filled input ``x`` (``d``), the missing indicators ``m`` (``d``, 1 = observed),
  the encoder output (MLP) or the LSTM hidden state ``h_t`` (LSTM) through a fixed random
  projection to ``zeta_dim`` columns and ``tanh`` (so ``F = 2d + zeta_dim + C`` stays bounded
  whatever the predictor's width), and the predicted class probabilities ``y_hat`` (``C``;
  per step for the LSTM, paper Eq. 7). All bounds are finite.
* **action** ``Box(0, 1, [R, d])``: the importance ``a`` of every row (GIL Eq. 4).
* **reward**: ``-loss`` of the batch after the update (Algorithm 1, lines 9-10; mean cross
  entropy), or GIL-D's ``-loss + c * D`` (Eq. 43, label-balanced batches); one scalar, shared by
  all rows. ``reward_timing="before_update"`` gives the reference code's cheaper variant (the
  loss of the forward pass that produced the gradient).
* **next observation**: the next batch's rows under the updated weights; its forward pass is
  also the next update's training forward (no extra pass).
* **episode**: ``horizon`` updates of a predictor re-initialised from the seed at ``reset``,
  then ``truncated=True``; ``info`` carries ``loss``, ``mask`` (``[R, d]``, the indicators of
  the returned observation, also in its ``m`` columns) and, at the end, ``val_accuracy``,
  ``val_auc``, ``val_ap``.

Memory per replay transition stored row-wise (observation, next observation, action, reward,
done) is ``4 * (2F + d + 2)`` bytes per row: MNIST (d = 784, C = 10, zeta_dim = 8, F = 1,586):
15.8 kB per row, 2.0 MB per env step of 128 rows; PhysioNet (d = 35, C = 2, F = 80, T = 48):
788 B per row, 4.8 MB per env step of 6,144 rows. A 1e5-row buffer: 1.6 GB (MNIST), 79 MB
(PhysioNet).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from gapray.gil.datasets import DATASETS, GILTask, as_sequences, load_task
from gapray.gil.rewards import distributional_difference, gil_reward
from gapray.gil.training import (
    BatchSampler,
    PendingUpdate,
    PredictorSession,
    TrainingConfig,
    seeded_predictor,
    task_placeholder,
    to_tensors,
)

REWARDS = ("gil", "gil-d")


@dataclass(frozen=True)
class GILEnvConfig:
    """Settings of :class:`GILEnv`; built from the ``config`` dict, unknown keys are errors."""

    dataset: str = "digits"
    """``digits``, ``mnist`` or ``physionet2012``."""
    data_root: str | None = None
    """Folder with the raw data (``mnist/``, ``physionet2012/``); default ``$GAPRAY_DATA_DIR``."""
    missing_rate: float = 0.5
    """Share of pixels removed (image datasets)."""
    missing_pattern: str = "mcar"
    """``mcar`` or ``mar`` (image datasets)."""
    mask_seed: int = 0
    """Seed of the artificial mask."""
    split_seed: int = 0
    """Seed of the train/validation/test split."""
    max_train_samples: int | None = None
    """Keep only this many training samples (a smaller, cheaper task)."""
    max_val_samples: int | None = 1000
    """Validate on at most this many samples at episode end."""
    predictor: str = "auto"
    """``mlp``, ``lstm`` or ``auto`` (the paper's choice for the dataset)."""
    sequence_steps: int | None = None
    """Cut tabular data into this many steps for the LSTM (``digits``: 8 image rows)."""
    hidden_sizes: tuple[int, ...] = (500, 500)
    """MLP hidden widths (first = encoder)."""
    lstm_hidden_size: int = 1024
    """LSTM hidden size (paper: 1024)."""
    placeholder: str | float = "auto"
    """Value for missing entries (see :func:`gapray.gil.predictors.resolve_placeholder`)."""
    batch_size: int = 128
    """Samples per update (paper: 128)."""
    learning_rate: float = 1e-3
    """Adam's initial learning rate of the predictor."""
    lr_decay_rate: float = 0.9
    """Learning-rate factor per ``lr_decay_steps``."""
    lr_decay_steps: int = 750
    """Steps per ``lr_decay_rate`` decay."""
    lstm_learning_rate: float | None = None
    """The LSTM's initial learning rate (None: ``learning_rate``; reference 5e-4)."""
    lstm_lr_decay_rate: float | None = None
    """The LSTM's decay factor (None: ``lr_decay_rate``; reference 1.0, constant)."""
    l2: float = 0.0
    """The predictor's L2 regulariser (:attr:`gapray.gil.training.TrainingConfig.l2`; reference MLP 0.02)."""
    mlp_batch_norm: bool = False
    """BatchNorm in the MLP's hidden layers (reference True)."""
    mlp_init: str = "default"
    """MLP weights: ``default`` or ``reference`` (U(0.001, 0.01))."""
    horizon: int = 2000
    """Updates per episode (one training run), then truncated."""
    reward: str = "gil"
    """``gil`` (``-loss``) or ``gil-d`` (``-loss + c * D``, label-balanced batches)."""
    d_coefficient: float = 10.0
    """``c`` of GIL-D (Eq. 43; the paper only asks ``c > 0``; the reference uses 10 for the MLP, 5 for the LSTM)."""
    reward_timing: str = "after_update"
    """``after_update`` (paper, Algorithm 1) or ``before_update`` (reference code, cheaper)."""
    zeta_dim: int = 8
    """Columns of the projected encoder state in the observation."""
    seed: int = 0
    """Default seed of the first ``reset`` (predictor initialisation and batch order)."""
    device: str = "cpu"
    """Torch device of the predictor."""

    @classmethod
    def from_dict(cls, config: dict[str, Any] | None) -> GILEnvConfig:
        config = dict(config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"GILEnv config: unknown key(s) {unknown}; known keys: {sorted(known)}")
        if "hidden_sizes" in config:
            config["hidden_sizes"] = tuple(int(h) for h in config["hidden_sizes"])
        return cls(**config)

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"GILEnv config: {message}")

        check(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; expected one of {list(DATASETS)}")
        check(self.predictor in ("auto", "mlp", "lstm"), f"predictor must be auto, mlp or lstm, got {self.predictor!r}")
        check(self.reward in REWARDS, f"reward must be one of {list(REWARDS)}, got {self.reward!r}")
        check(self.reward_timing in ("after_update", "before_update"),
              f"reward_timing must be after_update or before_update, got {self.reward_timing!r}")
        check(self.missing_pattern in ("mcar", "mar"),
              f"missing_pattern must be mcar or mar, got {self.missing_pattern!r}")
        check(0.0 <= self.missing_rate < 1.0, f"missing_rate must be in [0, 1), got {self.missing_rate}")
        for name in ("batch_size", "horizon", "zeta_dim", "lr_decay_steps", "lstm_hidden_size"):
            check(int(getattr(self, name)) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}")
        check(self.max_train_samples is None or self.max_train_samples > 0,
              f"max_train_samples must be positive, got {self.max_train_samples}")

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(steps=self.horizon, batch_size=self.batch_size, learning_rate=self.learning_rate,
                              lr_decay_rate=self.lr_decay_rate, lr_decay_steps=self.lr_decay_steps,
                              lstm_learning_rate=self.lstm_learning_rate, lstm_lr_decay_rate=self.lstm_lr_decay_rate,
                              l2=self.l2, mlp_batch_norm=self.mlp_batch_norm, mlp_init=self.mlp_init,
                              hidden_sizes=self.hidden_sizes, lstm_hidden_size=self.lstm_hidden_size,
                              placeholder=self.placeholder, seed=self.seed, device=self.device)


@dataclass(frozen=True)
class ObservationLayout:
    """Column layout of a GIL observation row: ``[x (d) | m (d) | zeta (zeta_dim) | y_hat (C)]``.

    Slice an observation ``obs[..., layout.mask]`` to recover the missing indicators (GIL-H's
    ``a = m``), ``obs[..., layout.x]`` for the inputs, and so on.
    """

    n_features: int
    zeta_dim: int
    n_classes: int

    @property
    def x(self) -> slice:
        return slice(0, self.n_features)

    @property
    def mask(self) -> slice:
        return slice(self.n_features, 2 * self.n_features)

    @property
    def zeta(self) -> slice:
        return slice(2 * self.n_features, 2 * self.n_features + self.zeta_dim)

    @property
    def y_hat(self) -> slice:
        return slice(2 * self.n_features + self.zeta_dim, self.width)

    @property
    def width(self) -> int:
        return 2 * self.n_features + self.zeta_dim + self.n_classes


@functools.lru_cache(maxsize=8)
def _cached_task(dataset: str, root: str | None, rate: float, pattern: str, mask_seed: int, split_seed: int,
                 max_train: int | None, sequence_steps: int | None) -> GILTask:
    task = load_task(dataset, root, rate, pattern, mask_seed, split_seed)  # type: ignore[arg-type]
    if sequence_steps is not None:
        task = as_sequences(task, sequence_steps)
    if max_train is not None and max_train < len(task.train):
        keep = np.sort(np.random.default_rng(split_seed).permutation(len(task.train))[:max_train])
        task = dataclasses.replace(task, train=task.train.subset(keep))
    return task


class GILEnv(gym.Env[np.ndarray, np.ndarray]):
    """Gradient importance learning as an MDP; see the module docstring.

    Args:
        config: a dict of :class:`GILEnvConfig` fields (RLlib passes its ``env_config``).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = GILEnvConfig.from_dict(config)
        cfg = self.config
        self.task = _cached_task(cfg.dataset, cfg.data_root, cfg.missing_rate, cfg.missing_pattern, cfg.mask_seed,
                                 cfg.split_seed, cfg.max_train_samples, cfg.sequence_steps)
        if cfg.predictor != "auto" and cfg.predictor != self.task.kind:
            self.task = dataclasses.replace(self.task, kind=cfg.predictor)
        if self.task.kind == "mlp" and self.task.train.n_steps != 1:
            raise ValueError(f"GILEnv config: the MLP takes tabular data, {cfg.dataset} has "
                             f"{self.task.train.n_steps} steps")
        if cfg.batch_size > len(self.task.train):
            raise ValueError(f"GILEnv config: batch_size {cfg.batch_size} is larger than the training data of "
                             f"{cfg.dataset} ({len(self.task.train)} samples)")
        if cfg.reward == "gil-d" and (self.task.n_classes != 2 or cfg.batch_size % 4):
            raise ValueError(f"GILEnv config: reward gil-d needs binary labels and batch_size divisible by 4 "
                             f"({cfg.dataset} has {self.task.n_classes} classes, batch_size {cfg.batch_size})")
        self.training = cfg.training_config()
        placeholder = task_placeholder(self.task, cfg.placeholder)
        self.train_data = to_tensors(self.task.train, self.task.kind, placeholder, cfg.device)
        val = self.task.val
        if cfg.max_val_samples is not None and len(val) > cfg.max_val_samples:
            val = val.subset(np.arange(cfg.max_val_samples))
        self.val_data = to_tensors(val, self.task.kind, placeholder, cfg.device)

        d, steps = self.task.n_features, (1 if self.task.kind == "mlp" else self.task.train.n_steps)
        self.layout = ObservationLayout(d, cfg.zeta_dim, self.task.n_classes)
        self.rows_per_sample, self.n_rows = steps, cfg.batch_size * steps
        x = self.train_data.x.reshape(len(self.task.train), steps, d)
        m = self.train_data.m.reshape(len(self.task.train), steps, d)
        # every training sample's rows with the static columns (x, m) filled in: an observation
        # is one contiguous gather of these, then the zeta and y_hat columns are written over
        self._static_rows = torch.zeros(len(self.task.train), steps, self.layout.width, device=cfg.device)
        self._static_rows[..., self.layout.x] = x
        self._static_rows[..., self.layout.mask] = m
        x_low = x.amin(dim=(0, 1)).cpu().numpy()
        x_high = x.amax(dim=(0, 1)).cpu().numpy()
        x_high = np.where(x_high > x_low, x_high, x_low + 1.0)
        low = np.concatenate([x_low, np.zeros(d), -np.ones(cfg.zeta_dim), np.zeros(self.task.n_classes)])
        high = np.concatenate([x_high, np.ones(d), np.ones(cfg.zeta_dim), np.ones(self.task.n_classes)])
        self.observation_space = spaces.Box(np.broadcast_to(low, (self.n_rows, self.layout.width)).astype(np.float32),
                                            np.broadcast_to(high, (self.n_rows, self.layout.width)).astype(np.float32),
                                            dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(self.n_rows, d), dtype=np.float32)
        # the fixed random projection of zeta (same for every episode, from the config seed)
        zeta_width = cfg.hidden_sizes[0] if self.task.kind == "mlp" else cfg.lstm_hidden_size
        projection_rng = torch.Generator().manual_seed(cfg.seed)
        self._projection = (torch.randn(zeta_width, cfg.zeta_dim, generator=projection_rng)
                            / math.sqrt(zeta_width)).to(cfg.device)
        self.session: PredictorSession | None = None
        self._pending: PendingUpdate | None = None
        self._first_reset = True

    # --- episode control ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._first_reset:
            seed = self.config.seed
        self._first_reset = False
        super().reset(seed=seed)
        predictor_seed = int(self.np_random.integers(2**31 - 1))
        predictor = seeded_predictor(self.task, self.training, predictor_seed)
        self.session = PredictorSession(predictor, self.train_data, self.training)
        self.sampler = BatchSampler(self.train_data.y.cpu().numpy(), self.config.batch_size, self.np_random,
                                    balanced=self.config.reward == "gil-d")
        self.steps_done = 0
        observation, mask = self._prepare_next_batch()
        return observation, {"mask": mask}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.session is None or self._pending is None:
            raise RuntimeError("GILEnv.step() called before reset()")
        importance = self._check_action(action)
        pending = self._pending
        loss_before = self.session.update(pending, importance.reshape(pending.deferred.input.shape))
        if self.config.reward_timing == "after_update":
            loss, output = self.session.evaluate_batch(pending)
        else:
            loss, output = loss_before, pending.output
        info: dict[str, Any] = {"loss": loss, "loss_before_update": loss_before,
                                "learning_rate": self.session.scheduler.get_last_lr()[0]}
        difference = None
        if self.config.reward == "gil-d":
            difference = float(distributional_difference(output.features.detach(), pending.y))
            info["distributional_difference"] = difference
        reward = gil_reward(loss, difference, self.config.d_coefficient)
        self.steps_done += 1
        truncated = self.steps_done >= self.config.horizon
        if truncated:
            info.update({f"val_{k}": v for k, v in self.session.scores(self.val_data).items()})
        observation, mask = self._prepare_next_batch()
        info["mask"] = mask
        return observation, float(reward), False, truncated, info

    # --- helpers -------------------------------------------------------------------------------
    def _check_action(self, action: np.ndarray) -> torch.Tensor:
        array = np.asarray(action)
        if array.shape != self.action_space.shape:
            raise ValueError(f"GILEnv action has shape {array.shape}, expected {self.action_space.shape} "
                             f"(rows x input features)")
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"GILEnv action must be numeric, got dtype {array.dtype}")
        # a copy: the action may be a view of the observation (a = m), which must stay untouched
        importance = torch.tensor(array, dtype=torch.float32)
        low, high = (float(v) for v in torch.aminmax(importance))
        if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-6 or high > 1.0 + 1e-6:
            raise ValueError(f"GILEnv action must lie in [0, 1], got values in [{low}, {high}]")
        return importance.clamp_(0.0, 1.0).to(self.config.device)

    def _prepare_next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Forward the next batch (kept for its update) and build its observation rows."""
        assert self.session is not None
        self._pending = self.session.forward_for_update(self.sampler.next())
        with torch.no_grad():
            output, layout = self._pending.output, self.layout
            rows = torch.index_select(self._static_rows, 0, self._pending.batch_index)  # [B, steps, F]
            if self.task.kind == "mlp":
                rows[:, 0, layout.zeta] = torch.tanh(output.zeta.detach() @ self._projection)
                rows[:, 0, layout.y_hat] = torch.softmax(output.logits.detach(), dim=-1)
            else:
                # one product of the time-major hidden states (contiguous, no copy) with
                # [projection | W_out^T] gives both the zeta and the per-step logit columns
                predictor = self.session.predictor
                head = torch.cat([self._projection, predictor.output.weight.detach().t()], dim=1)
                out = output.zeta.detach().transpose(0, 1) @ head  # time-major [T, B, k + C]
                k = layout.zeta_dim
                out[..., :k].tanh_()
                out[..., k:] = torch.softmax(out[..., k:] + predictor.output.bias.detach(), dim=-1)
                rows[..., layout.zeta.start:] = out.transpose(0, 1)  # one strided copy into [B, T, F]
            array = rows.view(self.n_rows, -1).cpu().numpy()
        mask = array[:, layout.mask]  # a read-only view: no copy per step
        mask.flags.writeable = False
        return array, mask

    def save_predictor(self, path: str | Path) -> Path:
        """Save the predictor's weights and what rebuilds it (``torch.load`` it back)."""
        if self.session is None:
            raise RuntimeError("GILEnv.save_predictor() called before reset()")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": self.session.predictor.state_dict(), "kind": self.task.kind,
                    "n_features": self.task.n_features, "n_classes": self.task.n_classes,
                    "config": dataclasses.asdict(self.config), "steps_done": self.steps_done}, path)
        return path


class FlattenGILEnv(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """:class:`GILEnv` with 1-D observation ``[R * F]`` and action ``[R * d]`` spaces, for
    off-the-shelf RLlib algorithms (PPO, SAC) whose default models need 1-D Boxes. The GIL DDPG
    acts row-wise on the unflattened env instead (DESIGN.md sec. 4)."""

    def __init__(self, env: GILEnv) -> None:
        super().__init__(env)
        obs, act = env.observation_space, env.action_space
        assert isinstance(obs, spaces.Box) and isinstance(act, spaces.Box)
        self.observation_space = spaces.Box(obs.low.reshape(-1), obs.high.reshape(-1), dtype=np.float32)
        self.action_space = spaces.Box(act.low.reshape(-1), act.high.reshape(-1), dtype=np.float32)
        self._action_shape: tuple[int, ...] = act.shape

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        return observation.reshape(-1), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action)
        if action.size != int(np.prod(self._action_shape)):
            expected = int(np.prod(self._action_shape))
            raise ValueError(f"flattened GILEnv action has {action.size} values, expected {expected}")
        observation, reward, terminated, truncated, info = self.env.step(action.reshape(self._action_shape))
        return observation.reshape(-1), float(reward), terminated, truncated, info
