"""DDPG/TD3 Learner: critic and actor losses, one optimizer each.

Target networks and their Polyak update ``theta' <- tau theta + (1 - tau) theta'`` follow
RLlib's ``DQNTorchLearner`` (``after_gradient_based_update``: every
``target_network_update_freq`` sampled steps, every pair the module returns from
``get_target_network_pairs``, actor and critics); :func:`polyak_update` does the same
arithmetic over the same state dict in place instead of rebuilding and reloading it.

Losses (Lillicrap et al. 2015, Eq. 6-7; Fujimoto et al. 2018 for TD3):

* critic: ``mean_i w_i (Q(s_i, a_i) - y_i)^2`` with
  ``y_i = r + gamma^n (1 - done) Q'(s'_i, mu'(s'_i))`` (:func:`gapray.rl.rowwise.shared_td_target`);
  rows of a GIL step share ``r``; TD3 sums the loss of both critics against the same target;
* actor: ``-mean_i Q(s_i, mu(s_i))`` (first critic), updated every ``policy_delay`` steps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from ray.rllib.algorithms.dqn.dqn_learner import DQNLearner
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    LAST_TARGET_UPDATE_TS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_TARGET_UPDATES,
    TD_ERROR_KEY,
)
from ray.rllib.utils.typing import ModuleID, ParamDict, TensorType

from gapray.rl.rl_module import Q_CURR, QF_PREDS, QF_TARGET_NEXT, QF_TWIN_PREDS, DDPGTorchRLModule
from gapray.rl.rowwise import shared_td_target

if TYPE_CHECKING:
    from gapray.rl.config import DDPGConfig

QF_LOSS_KEY = "qf_loss"
QF_OPTIMIZER = "qf"
POLICY_OPTIMIZER = "policy"


def critic_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                kind: str = "mse") -> torch.Tensor:
    """Weighted TD regression ``mean(w * l(q - y))``; ``q``, ``target`` ``[N, R]``, ``weights`` ``[N]``."""
    if kind == "mse":
        per = (q - target).pow(2)
    elif kind == "huber":
        per = torch.nn.functional.huber_loss(q, target, reduction="none", delta=1.0)
    else:
        raise ValueError(f"critic_loss kind must be 'mse' or 'huber', got {kind!r}")
    if weights is not None:
        per = per * weights.to(per.dtype).unsqueeze(-1)
    return per.mean()


@torch.no_grad()
def polyak_update(main_net: torch.nn.Module, target_net: torch.nn.Module, tau: float) -> None:
    """``theta' <- tau theta + (1 - tau) theta'`` over the target's whole state dict (parameters
    and BatchNorm statistics), as RLlib's ``update_target_network``, but in place: one
    ``foreach`` pass over the floating-point tensors instead of a new state dict and a
    ``load_state_dict``. Integer buffers (``num_batches_tracked``) get RLlib's arithmetic and cast."""
    main, target = main_net.state_dict(), target_net.state_dict()
    floats = [k for k, v in target.items() if v.is_floating_point()]
    if floats:
        targets = [target[k] for k in floats]
        torch._foreach_mul_(targets, 1.0 - tau)
        torch._foreach_add_(targets, [main[k].to(target[k].dtype) for k in floats], alpha=tau)
    for k, v in target.items():
        if not v.is_floating_point():
            v.copy_(tau * main[k] + (1.0 - tau) * v)


def compounded_tau(tau: float, steps: int) -> float:
    """The Polyak coefficient of ``steps`` successive updates with ``tau`` toward a fixed main
    network: ``1 - (1 - tau)^steps`` (one update after a learner call of several gradient steps)."""
    return 1.0 - (1.0 - tau) ** steps


def _adam(params: list[torch.Tensor]) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel for all tensors: about 4x cheaper than PyTorch's
    per-tensor CPU default for these small networks, where the step is a visible share of a
    DDPG update); the per-tensor implementation where a parameter's device has no fused kernel."""
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, fused=fused or None)


def actor_loss(q_of_policy: torch.Tensor) -> torch.Tensor:
    """Deterministic policy gradient objective: ``-mean Q(s, mu(s))`` (Silver et al. 2014)."""
    return -q_of_policy.mean()


class DDPGTorchLearner(DQNTorchLearner):
    """Two optimizers per module: ``"qf"`` (all critics) and ``"policy"`` (actor)."""

    @override(DQNTorchLearner)
    def build(self) -> None:
        super().build()
        self._temp_losses: dict[tuple[ModuleID, str], torch.Tensor] = {}
        self._num_critic_updates: dict[ModuleID, int] = defaultdict(int)
        self._critic_updates_at_last_call: dict[ModuleID, int] = defaultdict(int)

    @override(DQNTorchLearner)
    def configure_optimizers_for_module(self, module_id: ModuleID, config: Any = None) -> None:
        assert self._module is not None  # built by Learner.build() before the optimizers
        module = cast(DDPGTorchRLModule, self._module[module_id])
        # TorchLearner.get_parameters returns list(module.parameters()) of any torch module
        # (RLlib annotates it RLModule -> Sequence).
        parameters_of = cast(Callable[[torch.nn.Module], list[torch.Tensor]], self.get_parameters)
        critic_params = parameters_of(module.qf)
        if config.twin_q:
            critic_params += parameters_of(module.qf_twin)
        self.register_optimizer(module_id=module_id, optimizer_name=QF_OPTIMIZER,
                                optimizer=_adam(critic_params), params=critic_params,
                                lr_or_lr_schedule=config.critic_lr)
        actor_params = parameters_of(module.pi)
        self.register_optimizer(module_id=module_id, optimizer_name=POLICY_OPTIMIZER,
                                optimizer=_adam(actor_params), params=actor_params,
                                lr_or_lr_schedule=config.actor_lr)

    @override(DQNTorchLearner)
    def apply_gradients(self, gradients_dict: ParamDict) -> None:
        """RLlib's ``TorchLearner.apply_gradients`` with a fast path: it checks every gradient
        tensor for nan/inf twice, one Python-level pass per tensor each time. When one fused
        norm over all gradients is finite, every gradient is, and the result is the same as
        RLlib's: the gradients are set and each optimizer steps. Otherwise (a nan/inf, or a norm
        that overflows), and with gradient scalers or learning-rate scheduler classes, RLlib's
        own path runs and handles it as configured (``torch_skip_nan_gradients``)."""
        if gradients_dict and self._grad_scalers is None and self._lr_scheduler_classes is None:
            grads = cast(list[torch.Tensor], list(gradients_dict.values()))
            if bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
                for pid, grad in gradients_dict.items():
                    self._params[pid].grad = grad
                for module_id, optimizer_names in self._module_optimizers.items():
                    for optimizer_name in optimizer_names:
                        self.get_optimizer(module_id, optimizer_name).step()
                return
        super().apply_gradients(gradients_dict)

    @override(DQNTorchLearner)
    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        """DQN's target-network schedule (``target_network_update_freq``, the same metrics) with
        :func:`polyak_update` for each pair. A learner call with ``n`` gradient steps
        (``gradient_steps_per_update``) moves the targets by ``compounded_tau(tau, n)``."""
        super(DQNLearner, self).after_gradient_based_update(timesteps=timesteps)
        timestep = timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)
        for module_id, module in self.module._rl_modules.items():
            config = cast("DDPGConfig", self.config.get_config_for_module(module_id))
            steps = self._num_critic_updates[module_id] - self._critic_updates_at_last_call[module_id]
            self._critic_updates_at_last_call[module_id] = self._num_critic_updates[module_id]
            if (timestep - self.last_update_ts_by_mid[module_id] >= config.target_network_update_freq
                    and isinstance(module.unwrapped(), TargetNetworkAPI)):
                tau = compounded_tau(config.tau, max(steps, 1))
                for main_net, target_net in module.unwrapped().get_target_network_pairs():
                    polyak_update(main_net, target_net, tau)
                self.metrics.log_value((module_id, NUM_TARGET_UPDATES), 1, reduce="lifetime_sum")
                self.last_update_ts_by_mid[module_id] = timestep
                self.metrics.log_value((module_id, LAST_TARGET_UPDATE_TS), timestep, reduce="max")

    @override(DQNTorchLearner)
    def compute_loss_for_module(self, *, module_id: ModuleID, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, TensorType]) -> TensorType:
        out = cast(dict[str, torch.Tensor], fwd_out)  # a torch module's outputs
        rewards = batch[Columns.REWARDS]
        n_step = batch.get("n_step")
        discount = config.gamma ** (n_step.to(rewards.dtype) if torch.is_tensor(n_step) else (n_step or 1))
        target = shared_td_target(rewards, batch[Columns.TERMINATEDS], out[QF_TARGET_NEXT], discount)
        weights = batch.get("weights")
        q = out[QF_PREDS]
        loss_q = critic_loss(q, target, weights, config.critic_loss)
        td_error = (q - target).abs()
        if config.twin_q:
            loss_q = loss_q + critic_loss(out[QF_TWIN_PREDS], target, weights, config.critic_loss)
            td_error = 0.5 * (td_error + (out[QF_TWIN_PREDS] - target).abs())
        if config.critic_l2 > 0:
            assert self._module is not None
            module = cast(DDPGTorchRLModule, self._module[module_id].unwrapped())
            loss_q = loss_q + config.critic_l2 * module.qf.l2_penalty()
            if config.twin_q:
                loss_q = loss_q + config.critic_l2 * module.qf_twin.l2_penalty()
        loss_pi = actor_loss(out[Q_CURR])

        # One TD error per replayed env step (mean over its rows) for prioritized replay.
        self.metrics.log_value(key=(module_id, TD_ERROR_KEY), value=td_error.mean(dim=-1).detach(),
                               reduce="item_series")
        self.metrics.log_dict({
            QF_LOSS_KEY: loss_q,
            POLICY_LOSS_KEY: loss_pi,
            "qf_mean": q.mean(),
            "qf_max": q.max(),
            "qf_min": q.min(),
            "td_error_mean": td_error.mean(),
        }, key=module_id, window=1)
        self._temp_losses[(module_id, QF_OPTIMIZER)] = loss_q
        self._temp_losses[(module_id, POLICY_OPTIMIZER)] = loss_pi
        return loss_q + loss_pi

    @override(DQNTorchLearner)
    def compute_gradients(self, loss_per_module: dict[ModuleID, TensorType], **kwargs: Any) -> ParamDict:
        """One backward pass per optimizer (as SAC does); the actor's is skipped between
        TD3's delayed policy updates."""
        grads: ParamDict = {}
        for module_id in set(loss_per_module) - {ALL_MODULES}:
            config = cast("DDPGConfig", self.config.get_config_for_module(module_id))
            update_actor = self._num_critic_updates[module_id] % config.policy_delay == 0
            self._num_critic_updates[module_id] += 1
            for optim_name, optim in self.get_optimizers_for_module(module_id):
                optim.zero_grad(set_to_none=True)
                loss = self._temp_losses.pop((module_id, optim_name))
                if optim_name == POLICY_OPTIMIZER and not update_actor:
                    continue
                loss.backward(retain_graph=True)
                params = self.filter_param_dict_for_optimizer(self._params, optim)
                grads.update({pid: p.grad for pid, p in params.items() if p.grad is not None})
        self._temp_losses.clear()
        return grads
