"""GIL trained by RLlib DDPG workers, through Ray Tune, tracked in MLflow (issue 6).

Pipeline of one trial (:func:`gil_ddpg_trial`):

1. **policy learning**: :class:`gapray.rl.DDPG` on ``gapray/GIL-v0`` with the row-wise module
   (each row of the ``[R, F]`` observation is a transition sharing the step's reward), the
   behavioural policy of GIL Eq. 42 reading the mask columns of the observation, for
   ``iterations`` RLlib iterations. An RLlib checkpoint is saved whenever a training episode
   (one full predictor training run) ends with a better **validation** score.
2. **final predictor**: the selected policy, deterministic (``forward_inference``, no noise, no
   behavioural mixture), gives the importance for a fresh predictor trained for
   ``final_steps``; its checkpoint is picked on the validation split every ``eval_every``
   steps; the test split is scored once, at the end.

The driver (:func:`run_gil_ddpg`) creates the MLflow experiment ``gil-ddpg`` and a parent run
before ``Tuner.fit()``; every trial logs a child run (filtered metrics only: episode return,
critic/actor losses, predictor validation accuracy/AUC/AP; the final predictor and the policy
checkpoint as artifacts). The best trial is chosen on validation, and the parent run records
its test accuracy/AUC/AP next to the ``ones`` (zero-impute) and ``mask`` (GIL-H) baselines
trained on the same split with the same predictor settings.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from gapray.rl.behaviour import BehaviourPolicyConfig
from gapray.rl.replay import TRANSITION_BUFFER

if TYPE_CHECKING:
    from ray.air.result import Result
    from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
    from ray.tune.execution.placement_groups import PlacementGroupFactory

EXPERIMENT = "gil-ddpg"
VAL_METRICS = ("val_accuracy", "val_auc", "val_ap")


@dataclass(frozen=True)
class GILDDPGSettings:
    """One GIL + DDPG run; every field is also a ``tuning/gil_ddpg.py`` flag."""

    dataset: str = "physionet2012"
    """``physionet2012`` (LSTM, mortality), ``mnist`` (MLP, MCAR) or ``digits`` (small MLP)."""
    data_root: str | None = None
    """Raw data folder (default ``$GAPRAY_DATA_DIR``)."""
    missing_rate: float = 0.9
    """Share of pixels removed at random (image datasets)."""
    reward: str = "gil"
    """``gil`` (``-loss``) or ``gil-d`` (Eq. 43, binary labels)."""
    horizon: int = 2000
    """Predictor updates per training episode (reference: one run of 2,000-3,000 steps)."""
    batch_size: int = 128
    """Predictor mini-batch (paper: 128)."""
    mlp_hidden: int = 500
    """Width of the MLP predictor's two hidden layers (paper MNIST: 500)."""
    lstm_hidden: int = 1024
    """LSTM hidden size (paper: 1024)."""
    max_train_samples: int | None = None
    """Keep only this many training samples (cheaper runs)."""
    max_val_samples: int | None = 1000
    """Validation samples scored at the end of each training episode."""
    placeholder: str = "auto"
    """Value of missing inputs: ``auto`` (reference: 0 for the MLP, 3 x max for the LSTM), ``zero``,
    ``3max`` or a number. With 0, ``a = m`` changes nothing (``x * m = x``): GIL-H equals ``ones``."""
    d_coefficient: float = 10.0
    """``c`` of GIL-D's reward ``-loss + c * D`` (Eq. 43). The paper only asks ``c > 0``; the reference
    scripts use 10 (MLP) and 5 (LSTM)."""
    reward_timing: str = "after_update"
    """``after_update`` (paper, Algorithm 1) or ``before_update`` (the reference: the loss of the forward
    pass that produced the gradient, so the reward does not depend on the step's action)."""
    predictor_l2: float = 0.0
    """The predictor's L2 regulariser (:attr:`gapray.gil.training.TrainingConfig.l2`). Reference: MLP
    0.02, MLP GIL-D 0.1, LSTM 0.005 (output bias only); 0 = off."""
    mlp_batch_norm: bool = False
    """BatchNorm (TF-slim's) in the MLP predictor's hidden layers (reference: on)."""
    mlp_init: str = "default"
    """MLP predictor weights: ``default`` (PyTorch) or ``reference`` (U(0.001, 0.01), biases 0)."""
    lstm_learning_rate: float | None = None
    """LSTM predictor's Adam learning rate; None: the MLP's schedule (1e-3 x0.9 every 750 steps).
    Reference LSTM: 5e-4."""
    lstm_lr_decay_rate: float | None = None
    """LSTM predictor's decay factor per 750 steps; None: 0.9. Reference LSTM: 1.0 (constant)."""
    device: str = "cpu"
    """Torch device of the predictor (``cuda``: each Tune trial also asks Ray for one GPU)."""
    rl_hiddens: str = "400,300"
    """Actor and critic hidden widths (reference 400-300)."""
    actor_lr: float = 1e-4
    """Actor learning rate (reference: MLP 1e-4, MLP GIL-D 5e-5, LSTM 5e-4)."""
    critic_lr: float = 1e-3
    """Critic learning rate (reference: MLP 1e-3, LSTM 1e-4)."""
    critic_l2: float = 0.0
    """Critic L2 weight on its hidden weights and output bias (reference 0.01; 0 = off)."""
    tau: float = 1e-3
    """Polyak coefficient (reference 1e-3)."""
    gamma: float = 0.99
    """Discount (paper 0.99)."""
    train_batch_steps: int = 8
    """Env steps per DDPG train batch."""
    train_rows_per_step: int = 16
    """Rows drawn from each replayed step: ``train_batch_steps x this`` transitions per update (128 = reference)."""
    replay_rows: int = 100_000
    """Replay capacity in rows (reference 1e4 tabular, 1e5 LSTM); stored as whole env steps."""
    learning_starts: int = 8
    """Env steps before the first DDPG update."""
    update_every: int = 2
    """Env steps sampled per DDPG learner update (RLlib ``rollout_fragment_length``). With the
    default ``gradient_steps`` that is still one gradient step per env step (the reference's
    rate); 2 instead of 1 pays RLlib's per-update cost half as often (PhysioNet LSTM: 1.85-1.98x
    the fixed-policy env's wall time instead of 1.98-2.06x), the acting weights lagging one step."""
    gradient_steps: int | None = None
    """Gradient steps per learner update, each on its own train batch (``DDPGConfig``
    ``gradient_steps_per_update``); None: ``update_every``, i.e. one gradient step per env
    step as in the reference, with RLlib's per-update cost paid once per ``update_every`` steps."""
    behaviour: str = "auto"
    """Eq. 42 preset: ``tabular``, ``lstm`` or ``auto`` (by predictor)."""
    random_share_at_one: float = 0.5
    """Share of the random branch's entries drawn near 1 (rest near 0). Reference: LSTM 0.5; MLP 1.0
    (its ``timesteps // 2 = 0`` draws every entry near 1)."""
    critic_join: str = "pre_activation"
    """``pre_activation`` (Lillicrap) or ``post_activation`` (the reference's additive critic)."""
    iterations: int = 10
    """RLlib training iterations."""
    steps_per_iteration: int = 200
    """Env steps per RLlib iteration (at least)."""
    num_env_runners: int = 0
    """Remote env runners (0: sample in the trial's process, fastest on one machine)."""
    final_steps: int = 2000
    """Updates of the final predictor trained with the learned (deterministic) policy."""
    eval_every: int = 100
    """Validate the final predictor every this many steps (checkpoint selection)."""
    select_metric: str = "auc"
    """Validation metric that picks checkpoints: ``accuracy``, ``auc`` or ``ap``."""
    seed: int = 0
    """Seed of the predictor, batch order, mask and split, and of RLlib."""

    def __post_init__(self) -> None:
        if self.select_metric not in ("accuracy", "auc", "ap"):
            raise ValueError(f"select_metric must be accuracy, auc or ap, got {self.select_metric!r}")
        if self.behaviour not in ("auto", "tabular", "lstm"):
            raise ValueError(f"behaviour must be auto, tabular or lstm, got {self.behaviour!r}")
        for name in ("iterations", "steps_per_iteration", "final_steps", "train_batch_steps", "eval_every",
                     "update_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gradient_steps is not None and int(self.gradient_steps) < 1:
            raise ValueError(f"gradient_steps must be >= 1 or None, got {self.gradient_steps}")
        if self.critic_l2 < 0 or self.predictor_l2 < 0:
            raise ValueError(f"critic_l2 and predictor_l2 must be >= 0, got {self.critic_l2}, {self.predictor_l2}")
        if not 0.0 <= self.random_share_at_one <= 1.0:
            raise ValueError(f"random_share_at_one must lie in [0, 1], got {self.random_share_at_one}")
        if self.device.startswith("cuda") and self.num_env_runners:
            raise ValueError("device cuda runs the env in the trial's process: it needs num_env_runners=0, "
                             f"got {self.num_env_runners}")

    def with_reference_choices(self) -> GILDDPGSettings:
        """These settings with every choice of the reference scripts that gapray offers as an option
        (``docs/gil_reproduction.md``), for this dataset's predictor and reward: MLP: BatchNorm, U(0.001,
        0.01) init, L2 0.02 (GIL-D 0.1), actor lr 1e-4 (GIL-D 5e-5), critic lr 1e-3, random actions all
        near 1, ``c = 10``; LSTM: Adam at a constant 5e-4, L2 0.005, actor/critic lr 5e-4 / 1e-4,
        random actions half near 1, ``c = 5``; both: critic L2 0.01, the additive critic, the reward
        of the loss before the update. Sizes, steps and seeds are left as they are."""
        from gapray.gil.datasets import PREDICTOR_OF

        common: dict[str, Any] = {"critic_l2": 0.01, "critic_join": "post_activation",
                                  "reward_timing": "before_update"}
        if PREDICTOR_OF[self.dataset] == "lstm":
            choices: dict[str, Any] = {"lstm_learning_rate": 5e-4, "lstm_lr_decay_rate": 1.0, "predictor_l2": 0.005,
                                       "actor_lr": 5e-4, "critic_lr": 1e-4, "random_share_at_one": 0.5,
                                       "d_coefficient": 5.0}
        else:
            gil_d = self.reward == "gil-d"
            choices = {"mlp_batch_norm": True, "mlp_init": "reference", "predictor_l2": 0.1 if gil_d else 0.02,
                       "actor_lr": 5e-5 if gil_d else 1e-4, "critic_lr": 1e-3, "random_share_at_one": 1.0,
                       "d_coefficient": 10.0}
        return dataclasses.replace(self, **common, **choices)

    def env_config(self, **overrides: Any) -> dict[str, Any]:
        """The ``GILEnv`` config dict of this run."""
        config = {"dataset": self.dataset, "data_root": self.data_root, "missing_rate": self.missing_rate,
                  "mask_seed": self.seed, "split_seed": self.seed, "reward": self.reward,
                  "horizon": self.horizon, "batch_size": self.batch_size,
                  "hidden_sizes": (self.mlp_hidden, self.mlp_hidden), "lstm_hidden_size": self.lstm_hidden,
                  "max_train_samples": self.max_train_samples, "max_val_samples": self.max_val_samples,
                  "placeholder": _placeholder(self.placeholder), "seed": self.seed,
                  "d_coefficient": self.d_coefficient, "reward_timing": self.reward_timing, "l2": self.predictor_l2,
                  "mlp_batch_norm": self.mlp_batch_norm, "mlp_init": self.mlp_init,
                  "lstm_learning_rate": self.lstm_learning_rate, "lstm_lr_decay_rate": self.lstm_lr_decay_rate,
                  "device": self.device}
        config.update(overrides)
        return config


def _placeholder(spec: str) -> str | float:
    try:
        return float(spec)
    except ValueError:
        return spec


SMOKE_TEST = {"dataset": "digits", "missing_rate": 0.5, "horizon": 20, "batch_size": 32, "mlp_hidden": 32,
              "lstm_hidden": 8, "max_train_samples": 300, "max_val_samples": 200, "rl_hiddens": "32,32",
              "train_batch_steps": 2, "train_rows_per_step": 8, "learning_starts": 4, "iterations": 2,
              "steps_per_iteration": 20, "final_steps": 300, "eval_every": 50}
"""What ``--smoke-test`` changes: a digits MLP task small enough for about a minute on 2 cores, on which the
predictors learn (test accuracy about 0.5-0.6 on 10 classes). The policy trains for only 40 env steps, so it
may tie the baselines. With the earlier 90 % missing pixels (6 of 64 left), 16 hidden units and 20 final
updates of batch 16 (one pass over 320 samples), every predictor ended at chance (accuracy 0.097)."""


# ---------------------------------------------------------------------------------------------
# RLlib configuration
# ---------------------------------------------------------------------------------------------
def _hiddens(spec: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in spec.split(",") if w.strip())
    except ValueError:
        raise ValueError(f"rl_hiddens must be comma-separated integers, got {spec!r}") from None
    if not widths:
        raise ValueError(f"rl_hiddens needs at least one width, got {spec!r}")
    return widths


def probe_env(settings: GILDDPGSettings) -> Any:
    """A ``GILEnv`` of this run (its layout, spaces and task), built in this process."""
    from gapray_envs.gil_env import GILEnv

    return GILEnv(settings.env_config())


def build_ddpg_config(settings: GILDDPGSettings) -> Any:
    """The :class:`~gapray.rl.DDPGConfig` of a GIL run (reference hyper-parameters by default)."""
    import gapray_envs
    from gapray.rl.config import DDPGConfig

    env = probe_env(dataclasses.replace(settings, device="cpu"))  # layout only; the driver may have no GPU
    kind = env.task.kind
    preset = settings.behaviour if settings.behaviour != "auto" else ("lstm" if kind == "lstm" else "tabular")
    behaviour = (BehaviourPolicyConfig.lstm if preset == "lstm" else BehaviourPolicyConfig.tabular)(
        random_share_at_one=settings.random_share_at_one)
    capacity = max(settings.replay_rows // env.n_rows, 4 * settings.train_batch_steps)
    hiddens = _hiddens(settings.rl_hiddens)
    name = gapray_envs.register_rllib_env()
    return (
        DDPGConfig()
        .environment(name, env_config=settings.env_config(), normalize_actions=False, clip_actions=True)
        .env_runners(num_env_runners=settings.num_env_runners, rollout_fragment_length=settings.update_every)
        .training(actor_hiddens=hiddens, critic_hiddens=hiddens, critic_join=settings.critic_join,
                  actor_lr=settings.actor_lr, critic_lr=settings.critic_lr, critic_l2=settings.critic_l2,
                  tau=settings.tau, gamma=settings.gamma,
                  train_batch_size_per_learner=settings.train_batch_steps,
                  train_rows_per_step=settings.train_rows_per_step,
                  gradient_steps_per_update=(settings.update_every if settings.gradient_steps is None
                                             else settings.gradient_steps),
                  num_steps_sampled_before_learning_starts=settings.learning_starts,
                  replay_buffer_config={"type": TRANSITION_BUFFER, "capacity": capacity})
        .exploration(noise="none", behaviour_policy=behaviour, observed_mask_slice=env.layout.mask)
        .callbacks(GILMetricsCallback)
        .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=settings.steps_per_iteration,
                   metrics_num_episodes_for_smoothing=1)
        .debugging(seed=settings.seed)
    )


def _callback_base() -> type:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    return RLlibCallback


class GILMetricsCallback(_callback_base()):  # type: ignore[misc]
    """Logs the predictor's validation scores that ``GILEnv`` puts in the last ``info`` of an
    episode (``val_accuracy``, ``val_auc``, ``val_ap``) as env-runner metrics."""

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        info = episode.get_infos(-1)
        for key in VAL_METRICS:
            if metrics_logger is not None and key in info:
                metrics_logger.log_value(key, float(info[key]), reduce="mean", window=1)


def filter_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The few numbers worth logging from RLlib's result dict."""
    runners = result.get("env_runners", {})
    learner = result.get("learners", {}).get("default_policy", {})
    picked = {
        "env_steps": runners.get("num_env_steps_sampled_lifetime"),
        "episode_return_mean": runners.get("episode_return_mean"),
        "episodes_lifetime": runners.get("num_episodes_lifetime"),
        "qf_loss": learner.get("qf_loss"),
        "policy_loss": learner.get("policy_loss"),
        "qf_mean": learner.get("qf_mean"),
        **{key: runners.get(key) for key in VAL_METRICS},
    }
    out = {}
    for key, value in picked.items():
        if isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value):
            out[key] = float(value)
    return out


# ---------------------------------------------------------------------------------------------
# Policy learning and the final predictor
# ---------------------------------------------------------------------------------------------
@dataclass
class PolicyRun:
    """Outcome of :func:`learn_policy`."""

    checkpoint: str
    """RLlib checkpoint of the selected policy."""
    selected_iteration: int
    """Iteration whose checkpoint was selected (on the training episodes' validation score)."""
    selected_val: float | None
    """That validation score (None when no episode ended: the last checkpoint is used)."""
    history: list[dict[str, float]]
    """Filtered metrics per iteration."""
    seconds: float
    env_steps: int


def learn_policy(settings: GILDDPGSettings, checkpoint_dir: str | Path, report: Any = None) -> PolicyRun:
    """Train DDPG on the GIL env for ``settings.iterations`` iterations; checkpoint on validation.

    ``report(metrics, iteration)`` is called after every iteration (Tune/MLflow logging).
    """
    algo = build_ddpg_config(settings).build_algo()
    key = f"val_{settings.select_metric}"
    best, best_iteration, history = -np.inf, 0, []
    checkpoint_dir = Path(checkpoint_dir)
    started = time.perf_counter()
    episodes_seen = 0.0
    try:
        for iteration in range(1, settings.iterations + 1):
            metrics = filter_metrics(algo.train())
            metrics["iteration"] = iteration
            history.append(metrics)
            finished = metrics.get("episodes_lifetime", 0.0) > episodes_seen
            episodes_seen = metrics.get("episodes_lifetime", episodes_seen)
            if finished and key in metrics and metrics[key] > best:
                best, best_iteration = metrics[key], iteration
                algo.save_to_path(checkpoint_dir / "best")
            if report is not None:
                report(metrics, iteration)
        if best_iteration == 0:  # no training episode ended: use the last policy
            best_iteration = settings.iterations
            algo.save_to_path(checkpoint_dir / "best")
        steps = int(history[-1].get("env_steps", 0))
    finally:
        algo.stop()
    return PolicyRun(str(checkpoint_dir / "best"), best_iteration, None if best == -np.inf else float(best), history,
                     time.perf_counter() - started, steps)


def load_policy_module(checkpoint: str | Path) -> Any:
    """The trained RLModule of a DDPG checkpoint, without building the algorithm."""
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = Path(checkpoint) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE / "default_policy"
    module = cast("TorchRLModule", RLModule.from_checkpoint(path))  # DDPGTorchRLModule
    module.eval()
    return module


def policy_action(module: Any, observation: np.ndarray) -> np.ndarray:
    """The deterministic importance ``mu(s)`` for one ``[R, F]`` observation, in ``[0, 1]``."""
    from ray.rllib.core.columns import Columns

    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: torch.as_tensor(observation, dtype=torch.float32)[None]})
    return np.clip(out[Columns.ACTIONS][0].cpu().numpy(), 0.0, 1.0).astype(np.float32)


class ImportanceSummary:
    """Running summary of the importances a policy hands the predictor: mean and std over all
    entries, the means on observed and on missing entries, the std of the per-row means, and
    ``within_feature_std``: how much one input feature's importance varies from row to row of
    a step (mean over features and steps), i.e. how much the policy depends on the state.
    A near-constant importance is, under Adam's per-parameter normalisation, almost plain
    back-propagation: these numbers tell whether a learned policy differs from ``ones``."""

    def __init__(self) -> None:
        # n, sum, sum sq, observed sum, observed n, sum of row-mean variances, sum of within-feature stds
        self._sums = np.zeros(7)
        self._steps = 0

    def add(self, action: np.ndarray, observed: np.ndarray) -> None:
        a = np.asarray(action, dtype=np.float64)
        seen = np.asarray(observed, dtype=bool)
        rows = a.reshape(-1, a.shape[-1])
        self._sums += (a.size, a.sum(), np.square(a).sum(), a[seen].sum(), seen.sum(), a.mean(axis=-1).var(),
                       rows.std(axis=0).mean())
        self._steps += 1

    def result(self) -> dict[str, float]:
        n, total, squares, seen_total, seen_n, row_var, feature_std = self._sums
        if n == 0:
            return {}
        mean = total / n
        missing_n = n - seen_n
        return {"mean": float(mean), "std": float(np.sqrt(max(squares / n - mean ** 2, 0.0))),
                "mean_observed": float(seen_total / seen_n) if seen_n else float("nan"),
                "mean_missing": float((total - seen_total) / missing_n) if missing_n else float("nan"),
                "row_mean_std": float(np.sqrt(row_var / self._steps)),
                "within_feature_std": float(feature_std / self._steps)}


def train_predictor_with_policy(settings: GILDDPGSettings, module: Any, policy: str = "learned",
                                steps: int | None = None) -> dict[str, Any]:
    """Train a fresh predictor in ``GILEnv`` with the deterministic learned policy (or a fixed
    ``ones``/``mask`` policy), validate every ``eval_every`` steps, keep the best checkpoint
    on validation, and score the test split once. Returns scores, the selected step, the
    predictor state and timing."""
    from gapray.gil.training import task_placeholder, to_tensors
    from gapray_envs.gil_env import GILEnv

    steps = steps or settings.final_steps
    overrides: dict[str, Any] = {"horizon": steps, "max_val_samples": None}
    if policy == "ones":
        overrides["placeholder"] = "zero"  # a = 1 with a zero placeholder: the zero-imputation baseline
    env = GILEnv(settings.env_config(**overrides))
    placeholder = task_placeholder(env.task, env.config.placeholder)
    test = to_tensors(env.task.test, env.task.kind, placeholder, env.config.device)
    observation, info = env.reset(seed=settings.seed)
    assert env.session is not None  # created by reset()
    best, best_state, best_step, history = -np.inf, None, steps, []
    importance = ImportanceSummary()
    started = time.perf_counter()
    for step in range(1, steps + 1):
        if policy == "learned":
            action = policy_action(module, observation)
            importance.add(action, np.asarray(info["mask"]))
        elif policy == "mask":
            action = np.array(info["mask"], dtype=np.float32)
        elif policy == "ones":
            action = np.ones(cast(tuple[int, ...], env.action_space.shape), dtype=np.float32)
        else:
            raise ValueError(f"policy must be learned, mask or ones, got {policy!r}")
        observation, _, _, _, info = env.step(action)
        if step % settings.eval_every == 0 or step == steps:
            val = env.session.scores(env.val_data)
            history.append({"step": step, "loss": info["loss"], **{f"val_{k}": v for k, v in val.items()}})
            if val[settings.select_metric] > best:
                best, best_step = val[settings.select_metric], step
                best_state = copy.deepcopy(env.session.predictor.state_dict())
    seconds = time.perf_counter() - started
    if best_state is not None:
        env.session.predictor.load_state_dict(best_state)
    from gapray.rl.gil_model import PredictorSpec

    training = env.training
    spec = PredictorSpec(env.task.kind, env.task.n_features, env.task.n_classes, tuple(training.hidden_sizes),
                         training.lstm_hidden_size, training.mlp_batch_norm, training.mlp_init, float(placeholder))
    example = env.task.test.X[:2, 0] if env.task.kind == "mlp" else env.task.test.X[:2]
    return {"test": env.session.scores(test), "val": env.session.scores(env.val_data), "best_step": best_step,
            "history": history, "seconds": seconds, "predictor_state": env.session.predictor.state_dict(),
            "importance": importance.result() if policy == "learned" else None,
            "kind": env.task.kind, "spec": spec, "input_example": np.asarray(example, dtype=np.float32)}


def baseline_task_resources(settings: GILDDPGSettings) -> dict[str, float]:
    """Ray resources of the task that trains the ``ones`` and ``mask`` baselines: one CPU, plus one
    GPU when the predictor runs on CUDA. The driver's own node may have no GPU (``cluster.yaml``'s
    head is CPU-only), so the baselines go where a trial would."""
    return {"num_cpus": 1.0, "num_gpus": 1.0 if settings.device.startswith("cuda") else 0.0}


def _train_baselines_here(settings: GILDDPGSettings) -> dict[str, dict[str, Any]]:
    """:func:`train_predictor_with_policy` for ``ones`` and ``mask``; predictor states moved to the CPU
    (the driver that receives them may have no GPU)."""
    out = {policy: train_predictor_with_policy(settings, None, policy) for policy in ("ones", "mask")}
    for result in out.values():
        result["predictor_state"] = {k: v.detach().cpu() for k, v in result["predictor_state"].items()}
    return out


def train_baselines(settings: GILDDPGSettings) -> dict[str, dict[str, Any]]:
    """``ones`` (zero imputation) and ``mask`` (GIL-H) on ``settings``' split, trained in one Ray task
    with :func:`baseline_task_resources` (Ray must be initialised)."""
    import ray

    resources = baseline_task_resources(settings)
    task = ray.remote(num_cpus=resources["num_cpus"], num_gpus=resources["num_gpus"])(_train_baselines_here)
    return cast("dict[str, dict[str, Any]]", ray.get(task.remote(settings)))


# ---------------------------------------------------------------------------------------------
# Tune trial and driver
# ---------------------------------------------------------------------------------------------
def gil_ddpg_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: ``config`` = ``{"settings": dict, "tracking": dict}`` plus
    any searched fields (they override ``settings``)."""
    from ray import tune

    from gapray.rl.gil_model import save_predictor
    from gapray.tracking import TrialRun

    base = dict(config["settings"])
    searched = {k: v for k, v in config.items() if k not in ("settings", "tracking")}
    base.update(searched)
    settings = GILDDPGSettings(**base)
    tracking = config["tracking"]
    context = tune.get_context()
    run = TrialRun.open(tracking["uri"], tracking["experiment_id"], tracking["parent_run_id"],
                        context.get_trial_id(), trial_run_name(settings, searched), dataclasses.asdict(settings))
    try:
        # Everything written here is logged to MLflow and then removed with the folder.
        with tempfile.TemporaryDirectory(prefix=f"gil-ddpg-{run.run_id[:8]}-") as folder:
            work = Path(folder)

            def report(metrics: dict[str, float], iteration: int) -> None:
                run.log_epoch(metrics, iteration)
                tune.report(metrics)

            policy = learn_policy(settings, work / "policy", report)
            module = load_policy_module(policy.checkpoint)
            final = train_predictor_with_policy(settings, module)
            predictor_path = save_predictor(work / PREDICTOR_FILE, final["predictor_state"], final["spec"],
                                            dataclasses.asdict(settings))
            run.log_artifact(predictor_path, PREDICTOR_ARTIFACT_DIR)
            run.log_artifact(policy.checkpoint, "policy_checkpoint")
        summary = {**{f"final_val_{k}": v for k, v in final["val"].items()},
                   **{f"final_test_{k}": v for k, v in final["test"].items()},
                   "final_best_step": final["best_step"], "policy_selected_iteration": policy.selected_iteration,
                   "policy_seconds": policy.seconds, "policy_env_steps": policy.env_steps,
                   "final_predictor_seconds": final["seconds"],
                   **{f"final_importance_{k}": v for k, v in (final["importance"] or {}).items()}}
        run.finish(summary, step=settings.iterations)
        tune.report({**summary, "iteration": settings.iterations + 1, "mlflow_run_id": run.run_id})
    except BaseException:
        run.finish(status="FAILED")
        raise


PREDICTOR_FILE = "final_predictor.pt"
PREDICTOR_ARTIFACT_DIR = "final_model"
REGISTERED_PREDICTOR = "gil-predictor"
"""Registry name of a GIL run's final predictor (alias ``champion``)."""
EXPERIMENT_DESCRIPTION = """GIL (gradient importance learning) trained by RLlib DDPG through Ray Tune (gapray, \
`tuning/gil_ddpg.py`).

- One **parent run per invocation**: `plots/gil_vs_baselines.png` compares GIL's test accuracy, AUC and AP with \
`ones` (zero imputation, a = 1) and `mask` (GIL-H, a = m) trained on the same split (bars over seeds when there \
are several); `comparison.csv` holds the numbers, `outcome.json` everything. Its description links the best trial.
- One **child run per trial** (named `gil-<dataset>-s<seed>`, plus searched learning rates): per RLlib iteration \
(step) the episode return, critic and actor losses and the predictor's validation scores; at the end \
`final_val_*`, `final_test_*` and the importance summary `final_importance_*`; the final predictor and the policy \
checkpoint as artifacts.
- The best trial's final predictor is registered as **`gil-predictor@champion`**: raw inputs with NaN for \
missing values in, class probabilities out.
"""


def trial_run_name(settings: GILDDPGSettings, searched: dict[str, Any] | None = None) -> str:
    """A trial's MLflow run name: ``gil-<dataset>-s<seed>`` plus searched learning rates (``-alr1e-04-clr1e-03``)."""
    name = f"gil-{settings.dataset}-s{settings.seed}"
    if searched and {"actor_lr", "critic_lr"} & set(searched):
        name += f"-alr{settings.actor_lr:.0e}-clr{settings.critic_lr:.0e}"
    return name


def with_predictor_gpu(resources: PlacementGroupFactory, device: str, cluster_gpus: float) -> PlacementGroupFactory:
    """The trial's placement group, plus one GPU in its first bundle (the trial's own process, where
    the env and its predictor run) when the predictor runs on CUDA: Ray hides the GPUs from a
    process that did not ask for one. Fails when the cluster has no GPU (Tune would otherwise keep
    the trial pending for ever)."""
    if not device.startswith("cuda"):
        return resources
    if cluster_gpus < 1:
        raise ValueError(f"device {device!r} needs a GPU, but the Ray cluster has {cluster_gpus:g}")
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    bundles = [dict(bundle) for bundle in resources.bundles]
    bundles[0]["GPU"] = bundles[0].get("GPU", 0.0) + 1.0
    return PlacementGroupFactory(bundles, strategy=resources.strategy)


@dataclass
class GILDDPGOutcome:
    """What :func:`run_gil_ddpg` returns (also written as JSON)."""

    parent_run_id: str
    tracking_uri: str
    best_config: dict[str, Any]
    gil: dict[str, float]
    """The best trial (on validation): ``val_*`` and ``test_*`` accuracy, AUC and AP."""
    baselines: dict[str, dict[str, float]]
    """``ones`` and ``mask`` on the best trial's seed: test scores and ``val_*``."""
    trials: list[dict[str, Any]]
    seconds: float
    per_seed: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """One entry per seed: ``{"seed", "GIL", "ones", "mask"}`` with each method's test scores (GIL: the
    seed's best trial on validation)."""
    registered_model_uri: str | None = None
    """``models:/gil-predictor@champion`` when the best trial's predictor was registered."""
    best_run_id: str = ""
    """MLflow run of the best trial."""


def run_gil_ddpg(settings: GILDDPGSettings, *, tracking_uri: str = "sqlite:///mlflow.db",
                 storage_path: str = "~/ray_results", address: str = "local", num_samples: int = 1,
                 search_lrs: bool = False, name: str | None = None, seeds: Sequence[int] | None = None,
                 register: bool = True) -> GILDDPGOutcome:
    """Tune ``num_samples`` trials of :func:`gil_ddpg_trial` (per seed of ``seeds``, when given), pick the
    best on validation, train the ``ones`` and ``mask`` baselines on each seed's split, log it all to MLflow:
    the comparison plot, table and description on the parent, the best predictor registered as
    :data:`REGISTERED_PREDICTOR` (``register``)."""
    import ray
    from ray import tune
    from ray.tune import RunConfig, TuneConfig, Tuner

    from gapray.sweep.runner import connect_ray, resolve_storage_path
    from gapray.tracking import (
        configure_mlflow_environment,
        ensure_experiment,
        get_or_create_parent_run,
        resolve_tracking_uri,
    )
    from gapray.tracking.runs import log_artifacts, run_link, set_description

    configure_mlflow_environment()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter is silent at verbose=0
    from mlflow.tracking import MlflowClient

    started = time.perf_counter()
    uri = resolve_tracking_uri(tracking_uri)
    experiment_id = ensure_experiment(uri, EXPERIMENT, EXPERIMENT_DESCRIPTION)
    client = MlflowClient(tracking_uri=uri)
    name = name or f"gil-ddpg-{settings.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent = get_or_create_parent_run(client, experiment_id, name, dataclasses.asdict(settings))
    started_ray = connect_ray(address)
    try:
        param_space: dict[str, Any] = {
            "settings": dataclasses.asdict(settings),
            "tracking": {"uri": uri, "experiment_id": experiment_id, "parent_run_id": parent},
        }
        if search_lrs:
            param_space["actor_lr"] = tune.grid_search([1e-4, 5e-4])
            param_space["critic_lr"] = tune.grid_search([1e-3, 1e-4])
        if seeds:
            param_space["seed"] = tune.grid_search(sorted({int(seed) for seed in seeds}))
        metric = f"final_val_{settings.select_metric}"
        # RLlib places env runner i in bundle i of the trial's placement group: reserve the
        # algorithm's own request (driver/learner bundle + one bundle per env runner).
        from gapray.rl.algorithm import DDPG

        # Algorithm.default_resource_request returns a PlacementGroupFactory (its Resources
        # alternative is the old API stack's).
        resources = cast("PlacementGroupFactory", DDPG.default_resource_request(build_ddpg_config(settings)))
        resources = with_predictor_gpu(resources, settings.device, ray.cluster_resources().get("GPU", 0.0))
        trainable = tune.with_resources(gil_ddpg_trial, resources)
        tuner = Tuner(trainable, param_space=param_space,
                      tune_config=TuneConfig(num_samples=num_samples),  # best trial picked below, on validation
                      run_config=RunConfig(name=name, storage_path=resolve_storage_path(storage_path), verbose=0))
        grid = tuner.fit()
        trials = []
        for result in cast("Iterable[Result]", grid):  # ResultGrid: __len__ and __getitem__
            if result.error is None and result.metrics and metric in result.metrics:
                assert result.config is not None  # Tune sets every trial's config
                trials.append({"config": {k: v for k, v in result.config.items() if k not in ("settings", "tracking")},
                               **{k: result.metrics[k] for k in result.metrics
                                  if k.startswith(("final_", "policy_"))},
                               "run_id": result.metrics.get("mlflow_run_id", "")})
        if not trials:
            errors = [str(r.error) for r in cast("Iterable[Result]", grid) if r.error is not None]
            raise RuntimeError(f"no GIL DDPG trial finished: {errors[:1]}")
        best = max(trials, key=lambda t: t[metric])
        per_seed, baselines_of_seed = [], {}
        for seed in sorted({int(t["config"].get("seed", settings.seed)) for t in trials}):
            seed_best = max((t for t in trials if int(t["config"].get("seed", settings.seed)) == seed),
                            key=lambda t: t[metric])
            seed_settings = dataclasses.replace(settings, **seed_best["config"])
            baselines_of_seed[seed] = train_baselines(seed_settings)
            per_seed.append({"seed": seed, "GIL": {k: seed_best[f"final_test_{k}"] for k in ("accuracy", "auc", "ap")},
                             **{p: dict(r["test"]) for p, r in baselines_of_seed[seed].items()}})
        best_seed = int(best["config"].get("seed", settings.seed))
        baselines = baselines_of_seed[best_seed]
        gil = {**{f"val_{k}": best[f"final_val_{k}"] for k in ("accuracy", "auc", "ap")},
               **{f"test_{k}": best[f"final_test_{k}"] for k in ("accuracy", "auc", "ap")}}
        outcome = GILDDPGOutcome(parent, uri, best["config"], gil,
                                 {p: {**s["test"], **{f"val_{k}": v for k, v in s["val"].items()}}
                                  for p, s in baselines.items()},
                                 trials, 0.0, per_seed=per_seed, best_run_id=best["run_id"])
        _log_comparison(client, parent, outcome, settings.dataset)
        if register and best["run_id"]:
            outcome.registered_model_uri = _register_best_predictor(
                client, uri, outcome, name, dataclasses.replace(settings, **best["config"]),
                baselines["ones"]["input_example"])
        link = run_link(uri, experiment_id, best["run_id"], trial_run_name(
            dataclasses.replace(settings, **best["config"]), best["config"])) if best["run_id"] else "?"
        set_description(client, parent, _parent_description(outcome, link))
        outcome.seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "outcome.json"
            path.write_text(json.dumps(dataclasses.asdict(outcome), indent=2, default=str))
            log_artifacts(client, parent, [path])
        client.set_terminated(parent, status="FINISHED")
        return outcome
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    finally:
        if started_ray:
            ray.shutdown()


def _log_comparison(client: Any, parent: str, outcome: GILDDPGOutcome, dataset: str) -> None:
    """The parent's test metrics (means over seeds), ``comparison.csv`` and ``plots/gil_vs_baselines.png``."""
    import pandas as pd

    from gapray.rl.gil_model import comparison_summary, plot_comparison
    from gapray.tracking import log_metrics
    from gapray.tracking.runs import log_artifacts

    summary = comparison_summary(outcome.per_seed)
    log_metrics(client, parent, {f"{method.lower()}_test_{score}": value for method, scores in summary.items()
                                 for score, value in scores.items() if not score.endswith("_std")}, step=0)
    rows = [{"seed": row["seed"], "method": method, **row[method]} for row in outcome.per_seed
            for method in ("GIL", "ones", "mask")]
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "comparison.csv"
        pd.DataFrame(rows).to_csv(table, index=False)
        plot = plot_comparison(outcome.per_seed, Path(folder) / "gil_vs_baselines.png", f"GIL on {dataset}, test split")
        log_artifacts(client, parent, [table])
        log_artifacts(client, parent, [plot], "plots")


def _register_best_predictor(client: Any, uri: str, outcome: GILDDPGOutcome, name: str, settings: GILDDPGSettings,
                             input_example: np.ndarray) -> str:
    """Register the best trial's final predictor (downloaded from its run) as :data:`REGISTERED_PREDICTOR`."""
    from gapray.rl.gil_model import log_and_register_predictor

    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(outcome.best_run_id, f"{PREDICTOR_ARTIFACT_DIR}/{PREDICTOR_FILE}", folder)
        registered = log_and_register_predictor(
            uri, outcome.best_run_id, path, REGISTERED_PREDICTOR, input_example,
            description=(f"Final predictor of the best trial of GIL run `{name}` ({settings.dataset}), trained with "
                         f"the learned importance: test accuracy {outcome.gil['test_accuracy']:.4f}, AUC "
                         f"{outcome.gil['test_auc']:.4f}. Input: raw features with NaN for missing values; "
                         "output: class probabilities."),
            tags={"gapray.gil_run": name, "dataset": settings.dataset, "gapray.parent_run_id": outcome.parent_run_id},
            params=dataclasses.asdict(settings), metrics=dict(outcome.gil))
    return str(registered.model_uri)


def _parent_description(outcome: GILDDPGOutcome, link: str) -> str:
    """The GIL parent run's description (markdown): the best trial as a link and the comparison table."""
    from gapray.rl.gil_model import comparison_summary

    summary = comparison_summary(outcome.per_seed)
    seeds = len(outcome.per_seed)
    over = f"mean over {seeds} seeds" if seeds > 1 else "one seed"
    lines = [f"**Best trial** (validation {outcome.gil.get('val_auc', float('nan')):.4f} AUC): {link}.", "",
             f"Test scores ({over}; `plots/gil_vs_baselines.png`, `comparison.csv`):", "",
             "| method | accuracy | AUC | AP |", "|---|---|---|---|"]
    for method, scores in summary.items():
        lines.append(f"| {method} | {scores['accuracy']:.4f} | {scores['auc']:.4f} | {scores['ap']:.4f} |")
    if outcome.registered_model_uri:
        lines += ["", f"Registered: `{outcome.registered_model_uri}`."]
    return "\n".join(lines)


def format_outcome(outcome: GILDDPGOutcome) -> str:
    """A short text report: GIL vs ones vs mask on test, chosen on validation."""
    lines = [f"MLflow parent run {outcome.parent_run_id} ({outcome.tracking_uri}), {outcome.seconds:.0f} s",
             f"best trial config: {outcome.best_config or 'defaults'}",
             f"{'method':<10} {'test acc':>9} {'test AUC':>9} {'test AP':>9} {'val AUC':>9}"]
    rows = [("GIL", outcome.gil["test_accuracy"], outcome.gil["test_auc"], outcome.gil["test_ap"],
             outcome.gil["val_auc"])]
    rows += [(name, s["accuracy"], s["auc"], s["ap"], s["val_auc"]) for name, s in outcome.baselines.items()]
    lines += [f"{n:<10} {a:>9.4f} {u:>9.4f} {p:>9.4f} {v:>9.4f}" for n, a, u, p, v in rows]
    if len(outcome.per_seed) > 1:
        from gapray.rl.gil_model import comparison_summary

        lines.append(f"over {len(outcome.per_seed)} seeds (test, mean ± std):")
        for method, scores in comparison_summary(outcome.per_seed).items():
            lines.append(f"{method:<10} " + "  ".join(f"{score} {scores[score]:.4f} ± {scores[score + '_std']:.4f}"
                                                      for score in ("accuracy", "auc", "ap")))
    if outcome.registered_model_uri:
        lines.append(f"registered: {outcome.registered_model_uri}")
    lines.append("MLflow UI, experiment 'gil-ddpg': the parent run's plots/gil_vs_baselines.png and description")
    return "\n".join(lines)


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
