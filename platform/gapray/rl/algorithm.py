"""``DDPG``: the algorithm class. Its ``training_step`` is DQN's (inherited through SAC):
sample -> add to the replay buffer -> sample a train batch -> learner update (with Polyak
target updates) -> sync weights to the env runners."""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.sac.sac import SAC
from ray.rllib.utils.annotations import override

from gapray.rl.config import DDPGConfig


class DDPG(SAC):
    """Deep Deterministic Policy Gradient (Lillicrap et al. 2015), TD3 options included."""

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> DDPGConfig:
        return DDPGConfig()
