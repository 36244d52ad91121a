"""GIL: imputation-free predictors trained with importance-weighted gradients (Gao et al., ICLR 2022).

Public API: the predictors (:class:`MLPPredictor`, :class:`LSTMPredictor`), the importance
update (:mod:`gapray.gil.importance`, Eq. 4), the policies without RL (``ones``, ``mask`` =
GIL-H, ``random``), :class:`GILTrainer` and the tasks (:func:`load_task`). The RL environment is
``gapray_envs.gil_env.GILEnv``.
"""

from gapray.gil.datasets import DATASETS, GILTask, as_sequences, digits_task, load_task, mnist_task, physionet_task
from gapray.gil.importance import DeferredImportance, split_forward_input, split_forward_weight
from gapray.gil.policies import POLICIES, get_policy
from gapray.gil.predictors import LSTMPredictor, MLPPredictor, PredictorOutput, build_predictor, resolve_placeholder
from gapray.gil.rewards import distributional_difference, gil_reward
from gapray.gil.training import GILTrainer, PredictorSession, TrainingConfig, TrainResult

__all__ = [
    "DATASETS",
    "POLICIES",
    "DeferredImportance",
    "GILTask",
    "GILTrainer",
    "LSTMPredictor",
    "MLPPredictor",
    "PredictorOutput",
    "PredictorSession",
    "TrainResult",
    "TrainingConfig",
    "as_sequences",
    "build_predictor",
    "digits_task",
    "distributional_difference",
    "get_policy",
    "gil_reward",
    "load_task",
    "mnist_task",
    "physionet_task",
    "resolve_placeholder",
    "split_forward_input",
    "split_forward_weight",
]
