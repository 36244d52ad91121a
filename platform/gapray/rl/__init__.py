"""DDPG (and TD3) on RLlib's new API stack, row-wise for GIL's matrix observations.

Public API: :class:`DDPGConfig`, :class:`DDPG`, :class:`DDPGTorchLearner`,
:class:`DDPGTorchRLModule`, :class:`BehaviourPolicyConfig` (GIL Eq. 42).
"""

from gapray.rl.algorithm import DDPG
from gapray.rl.behaviour import BehaviourPolicyConfig, behaviour_policy, behaviour_probabilities
from gapray.rl.config import DDPGConfig
from gapray.rl.learner import DDPGTorchLearner
from gapray.rl.rl_module import DDPGTorchRLModule

__all__ = [
    "DDPG",
    "BehaviourPolicyConfig",
    "DDPGConfig",
    "DDPGTorchLearner",
    "DDPGTorchRLModule",
    "behaviour_policy",
    "behaviour_probabilities",
]
