"""DDPG/TD3 RLModule on RLlib's new API stack, row-wise for GIL's ``[B, F]`` observations.

Forward passes:

* ``_forward_inference``: the deterministic action ``mu(s)``;
* ``_forward_exploration``: ``mu(s)`` plus Gaussian or Ornstein-Uhlenbeck noise, uniform
  random actions during ``initial_random_steps``, and, for GIL, the behavioural mixture of
  Eq. 42 (:mod:`gapray.rl.behaviour`); it sets ``Columns.ACTIONS`` itself, so RLlib's
  ``GetActions`` connector passes it through;
* ``_forward_train``: ``Q(s, a)`` for the replayed actions (``[N, R]``), the target
  ``Q'(s', mu'(s'))`` (TD3: smoothed target action, minimum over the twin critics) and
  ``Q(s, mu(s))`` for the actor loss with the critic's parameters frozen.

Units: with ``normalize_actions=True`` (RLlib's default) the module acts in ``[-1, 1]`` and
RLlib's connector rescales to the env's Box bounds; otherwise it acts in the env bounds.
The behavioural policy works in env units (importance in ``[0, 1]``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, QNetAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.util.debug import log_once

from gapray.rl.behaviour import BRANCH_ACTOR, BehaviourPolicyConfig, behaviour_branches, behaviour_policy
from gapray.rl.exploration import NOISE_TYPES, OrnsteinUhlenbeckNoise, gaussian_noise
from gapray.rl.networks import Actor, Critic
from gapray.rl.rowwise import RowLayout

if TYPE_CHECKING:
    import gymnasium as gym

QF_PREDS = "qf_preds"
QF_TWIN_PREDS = "qf_twin_preds"
QF_TARGET_NEXT = "q_target_next"
Q_CURR = "q_curr"
ACTIONS_CURR = "actions_curr"
RLMODULE_CONFIG_NOTICE = "RLModule(config=[RLModuleConfig object])"
"""The ``log_once`` key of RLlib's deprecation notice for ``RLModuleConfig`` (see
:meth:`DDPGTorchRLModule.__init__`)."""


@dataclass(frozen=True)
class DDPGModuleSettings:
    """The module's part of :class:`gapray.rl.config.DDPGConfig`, read from ``model_config``."""

    actor_hiddens: tuple[int, ...] = (400, 300)
    """Actor hidden widths (reference 400-300)."""
    critic_hiddens: tuple[int, ...] = (400, 300)
    """Critic state-branch widths; the action joins at the last one (reference 400-300)."""
    actor_batch_norm: bool = True
    """BatchNorm after each actor hidden layer (reference)."""
    critic_batch_norm: bool = True
    """BatchNorm after each critic hidden layer before the action joins (reference)."""
    critic_join: str = "pre_activation"
    """``"pre_activation"`` (Lillicrap et al.) or ``"post_activation"`` (GIL reference, additive)."""
    actor_output: str = "sigmoid"
    """``"sigmoid"`` (reference) or ``"tanh"``, rescaled to the action bounds."""
    last_layer_init_std: float | None = 1e-3
    """Std of the N(0, std) init of both output layers; None keeps PyTorch's default."""
    twin_q: bool = False
    """TD3's two critics (target = minimum); DDPG uses one."""
    target_policy_noise: float = 0.0
    """TD3 target policy smoothing: std of the noise on ``mu'(s')`` (half-range units); 0 = DDPG."""
    target_noise_clip: float = 0.5
    """TD3: the smoothing noise is clipped to ``[-c, c]``."""
    exploration_noise: str = "gaussian"
    """``"gaussian"``, ``"ou"`` (Ornstein-Uhlenbeck) or ``"none"``."""
    exploration_sigma: float = 0.1
    """Noise std in units of half the action range."""
    ou_theta: float = 0.15
    """Ornstein-Uhlenbeck mean reversion."""
    ou_dt: float = 1e-2
    """Ornstein-Uhlenbeck time step."""
    initial_random_steps: int = 0
    """Env steps with uniform random actions before the actor acts (CleanRL's warm-up)."""
    train_rows_per_step: int | None = None
    """Rows drawn (without replacement, the same rows of ``s`` and ``s'``) from each replayed
    matrix step for the losses; None = all ``B`` rows. Bounds the cost for LSTM GIL
    (``B = batch x steps`` rows)."""
    behaviour_policy: dict | None = None
    """GIL Eq. 42 settings (:class:`BehaviourPolicyConfig` as a dict) or None."""
    observed_mask_slice: tuple[int, int] | None = None
    """``(start, stop)`` columns of the observed-indicator inside one observation row."""
    normalize_actions: bool = True
    """Mirror of RLlib's ``normalize_actions``: True = the module acts in ``[-1, 1]``."""

    @classmethod
    def from_model_config(cls, model_config: dict[str, Any] | None) -> DDPGModuleSettings:
        model_config = dict(model_config or {})
        kwargs = {f.name: model_config[f.name] for f in fields(cls) if f.name in model_config}
        for key in ("actor_hiddens", "critic_hiddens", "observed_mask_slice"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(int(v) for v in kwargs[key])
        return cls(**kwargs)


class DDPGTorchRLModule(TorchRLModule, TargetNetworkAPI, QNetAPI, InferenceOnlyAPI):
    """Deterministic actor ``pi``, critic ``qf`` (and ``qf_twin``), their target copies."""

    framework: str = "torch"
    # Set by RLModule.__init__ (Optional there); this module is always built with both
    # spaces, and continuous actions.
    observation_space: gym.Space
    action_space: gym.spaces.Box

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # RLlib 2.60's RLModule.__init__ always builds the deprecated RLModuleConfig (kept for
        # old custom models), whose constructor logs "DeprecationWarning: `RLModule(config=
        # [RLModuleConfig object])` has been deprecated" once per process: in every remote env
        # runner, although this module is built with the new keyword arguments (RLModuleSpec
        # .build). Mark that one notice as already logged. Passing ``config=`` still raises.
        log_once(RLMODULE_CONFIG_NOTICE)
        super().__init__(*args, **kwargs)

    @override(RLModule)
    def setup(self) -> None:
        # DDPGConfig passes model_config as a dict (AlgorithmConfig.model_config).
        self.settings = DDPGModuleSettings.from_model_config(cast("dict[str, Any] | None", self.model_config))
        s = self.settings
        if s.exploration_noise not in NOISE_TYPES:
            raise ValueError(f"exploration_noise must be one of {NOISE_TYPES}, got {s.exploration_noise!r}")
        self.layout = RowLayout.from_spaces(self.observation_space, self.action_space)
        env_low = torch.tensor(np.broadcast_to(self.action_space.low, self.action_space.shape), dtype=torch.float32)
        env_high = torch.tensor(np.broadcast_to(self.action_space.high, self.action_space.shape), dtype=torch.float32)
        if not (torch.isfinite(env_low).all() and torch.isfinite(env_high).all()):
            raise ValueError(f"DDPG needs finite action bounds, got {self.action_space}")
        # Bounds of one action row (rows share their bounds in GIL).
        row_low = env_low.reshape(-1, self.layout.action_dim)[0]
        row_high = env_high.reshape(-1, self.layout.action_dim)[0]
        self.register_buffer("env_low", row_low, persistent=False)
        self.register_buffer("env_high", row_high, persistent=False)
        if s.normalize_actions:
            low, high = -torch.ones_like(row_low), torch.ones_like(row_high)
        else:
            low, high = row_low.clone(), row_high.clone()
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)
        self.behaviour = BehaviourPolicyConfig(**s.behaviour_policy) if s.behaviour_policy else None
        if self.behaviour is not None:
            if not (torch.all(row_low == 0) and torch.all(row_high == 1)):
                raise ValueError(f"the GIL behavioural policy needs actions in [0, 1], got {self.action_space}")
            if s.observed_mask_slice is None:
                raise ValueError("behaviour_policy needs observed_mask_slice (the mask columns of a row)")
            start, stop = s.observed_mask_slice
            if stop - start != self.layout.action_dim or stop > self.layout.state_dim:
                raise ValueError(f"observed_mask_slice {s.observed_mask_slice} must select {self.layout.action_dim} "
                                 f"columns of a {self.layout.state_dim}-wide observation row")
        self._ou = OrnsteinUhlenbeckNoise(s.exploration_sigma, s.ou_theta, s.ou_dt)

        self.pi = Actor(self.layout.state_dim, self.layout.action_dim, s.actor_hiddens,
                        batch_norm=s.actor_batch_norm, output=s.actor_output, low=low, high=high,
                        last_init_std=s.last_layer_init_std)
        if not self.inference_only:
            self.qf = self._make_critic()
            if s.twin_q:
                self.qf_twin = self._make_critic()

    def _make_critic(self) -> Critic:
        s = self.settings
        return Critic(self.layout.state_dim, self.layout.action_dim, s.critic_hiddens,
                      batch_norm=s.critic_batch_norm, last_init_std=s.last_layer_init_std, join=s.critic_join)

    # ---- target networks -------------------------------------------------------------
    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        self.target_pi = make_target_network(self.pi)
        self.target_qf = make_target_network(self.qf)
        if self.settings.twin_q:
            self.target_qf_twin = make_target_network(self.qf_twin)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        pairs = [(self.pi, self.target_pi), (self.qf, self.target_qf)]
        if self.settings.twin_q:
            pairs.append((self.qf_twin, self.target_qf_twin))
        return pairs

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["qf", "qf_twin", "target_pi", "target_qf", "target_qf_twin"]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any]) -> torch.Tensor:  # type: ignore[override]  # a tensor, not a dict
        """Target value ``Q'(s', mu'(s') [+ clipped noise])`` per row: ``[N, R]`` (no gradient)."""
        with torch.no_grad():
            for net in self._target_nets():
                net.eval()
            s2 = self.layout.fold(batch[Columns.OBS].float())
            a2 = self.target_pi(s2)
            s = self.settings
            if s.target_policy_noise > 0:
                half = 0.5 * (self.high - self.low)
                noise = (torch.randn_like(a2) * s.target_policy_noise).clamp(-s.target_noise_clip, s.target_noise_clip)
                a2 = torch.clamp(a2 + noise * half, self.low, self.high)
            q = self.target_qf(s2, a2)
            if s.twin_q:
                q = torch.min(q, self.target_qf_twin(s2, a2))
        return self.layout.per_row(q, batch[Columns.OBS].shape[0])

    def _target_nets(self) -> list[torch.nn.Module]:
        nets = [self.target_pi, self.target_qf]
        if self.settings.twin_q:
            nets.append(self.target_qf_twin)
        return nets

    @override(QNetAPI)
    def compute_q_values(self, batch: dict[str, Any]) -> torch.Tensor:  # type: ignore[override]  # a tensor, not a dict
        """``Q(s, a)`` of the first critic per row: ``[N, R]``."""
        s = self.layout.fold(batch[Columns.OBS].float())
        a = self.layout.fold(batch[Columns.ACTIONS].float())
        return self.layout.per_row(self.qf(s, a), batch[Columns.OBS].shape[0])

    # ---- forward passes --------------------------------------------------------------
    def actor_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``mu(s)`` in module units with the observation's leading shape (``[N, B, d]`` or ``[N, d]``),
        for acting (no gradient; BatchNorm with running statistics, :meth:`Actor.act`)."""
        n = obs.shape[0]
        return self.layout.unfold(self.pi.act(self.layout.fold(obs.float())), n)

    @override(RLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            return {Columns.ACTIONS: self.actor_action(batch[Columns.OBS])}

    @override(RLModule)
    def _forward_exploration(self, batch: dict[str, Any], t: int = 0, **kwargs: Any) -> dict[str, Any]:
        """Behavioural action. The actor's pass over every row is skipped where its output
        would be discarded: during ``initial_random_steps``, and when Eq. 42 gives every step
        (row) of the batch the heuristic or the random branch (the OU state still advances)."""
        s = self.settings
        with torch.no_grad():
            obs = batch[Columns.OBS]
            shape = torch.Size((*obs.shape[:-1], self.layout.action_dim))
            if t < s.initial_random_steps:
                return {Columns.ACTIONS: self.low + torch.rand(shape, device=obs.device) * (self.high - self.low)}
            branch = behaviour_branches(shape, int(t), self.behaviour) if self.behaviour is not None else None
            if branch is None or bool((branch == BRANCH_ACTOR).any()):
                action = self.actor_action(obs)
                half = 0.5 * (self.high - self.low)
                if s.exploration_noise == "gaussian":
                    action = action + gaussian_noise(action.shape, s.exploration_sigma) * half
                elif s.exploration_noise == "ou":
                    action = action + self._ou(action.shape) * half
                action = torch.max(torch.min(action, self.high), self.low)
            else:
                if s.exploration_noise == "ou":
                    self._ou(shape)
                action = self.low.expand(shape)  # every entry is replaced below
            if self.behaviour is not None:
                assert s.observed_mask_slice is not None  # setup() requires it with a behaviour policy
                start, stop = s.observed_mask_slice
                mask = obs[..., start:stop].float()
                env_action, _ = behaviour_policy(self.to_env_units(action), mask, int(t), self.behaviour,
                                                 branch=branch)
                action = self.from_env_units(env_action)
        return {Columns.ACTIONS: action}

    def to_env_units(self, action: torch.Tensor) -> torch.Tensor:
        """Module units -> env units (identity unless ``normalize_actions``)."""
        if not self.settings.normalize_actions:
            return action
        return self.env_low + (action - self.low) / (self.high - self.low) * (self.env_high - self.env_low)

    def from_env_units(self, action: torch.Tensor) -> torch.Tensor:
        """Env units -> module units."""
        if not self.settings.normalize_actions:
            return action
        return self.low + (action - self.env_low) / (self.env_high - self.env_low) * (self.high - self.low)

    def subsample_rows(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Keep ``train_rows_per_step`` random rows of every replayed step (obs, actions and
        next obs share the row indices); flat envs, ``None`` and batches that already hold at
        most that many rows per step (the transition replay buffer draws them) pass through."""
        k = self.settings.train_rows_per_step
        obs = batch[Columns.OBS]
        if not self.layout.matrix or k is None or k >= obs.shape[1]:
            return batch
        # The k largest of i.i.d. uniforms: a uniform k-subset per step (cheaper than a full argsort).
        index = torch.rand(obs.shape[0], obs.shape[1], device=obs.device).topk(k, dim=1).indices
        out = dict(batch)
        for key in (Columns.OBS, Columns.ACTIONS, Columns.NEXT_OBS):
            value = batch[key]
            out[key] = torch.gather(value, 1, index.unsqueeze(-1).expand(-1, -1, value.shape[-1]))
        return out

    @override(RLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        batch = self.subsample_rows(batch)
        layout = self.layout
        s = layout.fold(batch[Columns.OBS].float())
        a = layout.fold(batch[Columns.ACTIONS].float())
        n = batch[Columns.OBS].shape[0]
        out: dict[str, Any] = {QF_PREDS: layout.per_row(self.qf(s, a), n)}
        if self.settings.twin_q:
            out[QF_TWIN_PREDS] = layout.per_row(self.qf_twin(s, a), n)
        out[QF_TARGET_NEXT] = self.forward_target({Columns.OBS: batch[Columns.NEXT_OBS]})
        # Actor objective Q(s, mu(s)): gradients reach the actor only (critic frozen, in
        # inference mode as in the reference's `action_gradients`).
        a_pi = self.pi(s)
        critic_params = list(self.qf.parameters())
        was_training = self.qf.training
        for p in critic_params:
            p.requires_grad_(False)
        self.qf.eval()
        try:
            out[Q_CURR] = layout.per_row(self.qf(s, a_pi), n)
        finally:
            for p in critic_params:
                p.requires_grad_(True)
            self.qf.train(was_training)
        out[ACTIONS_CURR] = a_pi
        return out
