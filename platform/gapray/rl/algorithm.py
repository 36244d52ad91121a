"""``DDPG``: the algorithm class. Its ``training_step`` is DQN's (inherited through SAC):
sample -> add to the replay buffer -> sample a train batch -> learner update (with Polyak
target updates) -> sync weights to the env runners."""

from __future__ import annotations

from typing import Any

import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.sac.sac import SAC
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO
from ray.rllib.utils.typing import StateDict

from gapray.rl.config import DDPGConfig


class DDPG(SAC):
    """Deep Deterministic Policy Gradient (Lillicrap et al. 2015), TD3 options included.

    Restoring (``restore_from_path``, ``set_state``, ``Algorithm.from_checkpoint``) pushes
    the restored weights to every env runner. RLlib 2.60 alone does not: an env runner
    ignores weights whose sequence number is not above its own, so after restoring an
    older checkpoint into a running algorithm the env runners kept acting (and, until the
    learner caught up, kept sampling) with the newer weights.
    """

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> DDPGConfig:
        return DDPGConfig()

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
