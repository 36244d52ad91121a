"""``DDPG``: the algorithm class. Its ``training_step`` is DQN's (RLlib 2.60, new API stack):
sample -> add to the replay buffer -> sample a train batch -> learner update (with Polyak
target updates) -> sync weights to the env runners, with one shortcut: when the learner and
the only env runner live in this process (``num_env_runners=0``, one local learner), the
weights are copied tensor to tensor into the env runner's module. RLlib's
``EnvRunnerGroup.sync_weights`` converts them to numpy, puts them into the object store (for
remote runners that do not exist) and loads them back, which cost about a tenth of an update."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import ray
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.dqn.dqn import calculate_rr_weights
from ray.rllib.algorithms.sac.sac import SAC
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_RESULTS,
    REPLAY_BUFFER_SAMPLE_TIMER,
    REPLAY_BUFFER_UPDATE_PRIOS_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TD_ERROR_KEY,
    TIMERS,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.replay_buffers.utils import update_priorities_in_episode_replay_buffer
from ray.rllib.utils.typing import StateDict

from gapray.rl.config import DDPGConfig
from gapray.rl.replay import TransitionEpisodeReplayBuffer

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
    from ray.rllib.core.learner.learner_group import LearnerGroup
    from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
    from ray.rllib.env.env_runner_group import EnvRunnerGroup
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
    from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer
    from ray.rllib.utils.typing import EpisodeType, ModuleID


class DDPG(SAC):
    """Deep Deterministic Policy Gradient (Lillicrap et al. 2015), TD3 options included.

    Restoring (``restore_from_path``, ``set_state``, ``Algorithm.from_checkpoint``) pushes
    the restored weights to every env runner. RLlib 2.60 alone does not: an env runner
    ignores weights whose sequence number is not above its own, so after restoring an
    older checkpoint into a running algorithm the env runners kept acting (and, until the
    learner caught up, kept sampling) with the newer weights.
    """

    # Optional (None) on Algorithm until setup(); a set-up DDPG has all of them (new API
    # stack, online: an env runner group, a learner group and an episode replay buffer).
    config: DDPGConfig  # type: ignore[assignment]  # Algorithm already replaces Trainable's dict
    metrics: MetricsLogger
    env_runner_group: EnvRunnerGroup
    learner_group: LearnerGroup
    local_replay_buffer: EpisodeReplayBuffer  # type: ignore[assignment]  # Algorithm types it by its `= None`

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> DDPGConfig:  # type: ignore[override]  # a SACConfig, not a DQNConfig
        return DDPGConfig()

    @override(Algorithm)
    def setup(self, config: AlgorithmConfig) -> None:  # type: ignore[override]  # Algorithm's, not Trainable's dict
        super().setup(config)
        buffer = getattr(self, "local_replay_buffer", None)
        if isinstance(buffer, TransitionEpisodeReplayBuffer):
            # The buffer draws the learner's `train_rows_per_step` rows of each replayed step
            # (see gapray.rl.replay), seeded like the rest of the run.
            buffer.rows_per_step = self.config.train_rows_per_step
            if self.config.seed is not None:
                buffer.rng = np.random.default_rng(self.config.seed)

    @override(SAC)
    def training_step(self) -> None:
        """DQN's ``_training_step_new_api_stack`` (RLlib 2.60), the weight sync aside (see
        :meth:`sync_env_runner_weights`), and ``gradient_steps_per_update`` train batches drawn
        at once and passed to one learner call as that many minibatches."""
        if not self.config.enable_env_runner_and_connector_v2:
            return super().training_step()
        # Annotated List[float], returns ints.
        store_weight, sample_and_train_weight = cast(list[int], calculate_rr_weights(self.config))
        for _ in range(store_weight):
            with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
                # With _return_metrics: (episodes, env runner metrics), which the annotation omits.
                episodes, env_runner_results = cast(
                    "tuple[list[SingleAgentEpisode], list[dict[str, Any]]]",
                    synchronous_parallel_sample(
                        worker_set=self.env_runner_group, concat=True, sample_timeout_s=self.config.sample_timeout_s,
                        _uses_new_env_runners=True, _return_metrics=True))
            self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
                self.local_replay_buffer.add(episodes)

        if self.config.count_steps_by == "agent_steps":
            current_ts = sum(self.metrics.peek((ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME),
                                               default={}).values())
        else:
            current_ts = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        if current_ts < self.config.num_steps_sampled_before_learning_starts:
            return None

        # `gradient_steps_per_update` train batches in one learner call, one gradient step each.
        gradient_steps = int(self.config.gradient_steps_per_update)
        minibatches: dict[str, Any] = {} if gradient_steps == 1 else {
            "minibatch_size": self.config.train_batch_size_per_learner, "num_epochs": 1}
        for _ in range(sample_and_train_weight):
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
                episodes = cast("list[SingleAgentEpisode]", self.local_replay_buffer.sample(
                    num_items=self.config.total_train_batch_size * gradient_steps, n_step=self.config.n_step,
                    batch_length_T=self._module_is_stateful * self.config.model_config.get("max_seq_len", 0),
                    lookback=int(self._module_is_stateful),
                    min_batch_length_T=getattr(self.config, "burn_in_len", 0),
                    gamma=self.config.gamma, beta=self.config.replay_buffer_config.get("beta"),
                    sample_episodes=True))
                self.metrics.aggregate([self.local_replay_buffer.get_metrics()], key=REPLAY_BUFFER_RESULTS)
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(
                    episodes=cast("list[EpisodeType]", episodes),
                    **minibatches,
                    timesteps={
                        NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)),
                        NUM_AGENT_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                            (ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME)),
                    })
                # TD errors feed prioritized replay only: keep them out of the results.
                td_errors: dict[ModuleID, Any] = defaultdict(list)
                for result in learner_results:
                    for module_id, module_results in result.items():
                        if TD_ERROR_KEY in module_results:
                            td_errors[module_id].extend(convert_to_numpy(module_results.pop(TD_ERROR_KEY).peek()))
                td_errors = {mid: {TD_ERROR_KEY: np.concatenate(e, axis=0)} for mid, e in td_errors.items()}
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_UPDATE_PRIOS_TIMER)):
                update_priorities_in_episode_replay_buffer(replay_buffer=self.local_replay_buffer,
                                                           td_errors=td_errors)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.sync_env_runner_weights(set(learner_results[0].keys()) - {ALL_MODULES})
        return None

    def sync_env_runner_weights(self, module_ids: set[str]) -> None:
        """Pushes the learner's (inference-only) weights of ``module_ids`` to the env runners.

        With one local learner and only the local env runner, each tensor of the env
        runner's module state is copied from the learner module's tensor of the same name
        (what ``EnvRunnerGroup.sync_weights`` + ``set_state`` end up doing, without the
        numpy round trip and the object store); the runner takes the learner's weights
        sequence number. Otherwise RLlib's ``sync_weights``."""
        group, learner = self.env_runner_group, self.learner_group._learner
        runner = cast("SingleAgentEnvRunner | MultiAgentEnvRunner | None", group.local_env_runner)
        if group.num_remote_env_runners() > 0 or learner is None or runner is None:
            # Annotated list[str]; RLlib's DQN passes the same set (it is only iterated).
            group.sync_weights(from_worker_or_learner_group=self.learner_group,
                               policies=module_ids,  # type: ignore[arg-type]
                               global_vars=None, inference_only=True)
            return
        seq_no = learner._weights_seq_no
        if seq_no != 0 and runner._weights_seq_no >= seq_no:  # RLlib's rule: never go back to older weights
            return
        for module_id in module_ids:
            source = cast("TorchRLModule", learner.module[module_id]).state_dict()
            module = runner.module[module_id] if isinstance(runner.module, MultiRLModule) else runner.module
            target = cast("TorchRLModule", module).state_dict()
            torch._foreach_copy_([target[k] for k in target], [source[k] for k in target])
        if seq_no > 0:
            runner._weights_seq_no = seq_no

    @override(Algorithm)
    def set_state(self, state: StateDict) -> None:
        super().set_state(state)
        if COMPONENT_LEARNER_GROUP in state:
            self.force_sync_env_runner_weights()

    @override(Algorithm)
    def restore_from_path(self, path: Any, *args: Any, **kwargs: Any) -> None:
        super().restore_from_path(path, *args, **kwargs)
        self.force_sync_env_runner_weights()

    def force_sync_env_runner_weights(self) -> None:
        """Sets the learner's (inference-only) module state and weights sequence number on
        every env runner, local and remote, regardless of the runner's own sequence number."""
        state = self.learner_group.get_state(components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}",
                                             inference_only=True)[COMPONENT_LEARNER]
        payload = ray.put({COMPONENT_RL_MODULE: state[COMPONENT_RL_MODULE],
                           WEIGHTS_SEQ_NO: state.get(WEIGHTS_SEQ_NO, 0)})

        def _set(runner: Any) -> None:
            runner._weights_seq_no = 0  # accept the restored (possibly older) sequence number
            runner.set_state(ray.get(payload))

        for group in (self.env_runner_group, getattr(self, "eval_env_runner_group", None)):
            if group is not None:
                group.foreach_env_runner(_set, local_env_runner=True)
