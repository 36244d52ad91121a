"""``DDPGConfig``: RLlib 2.60 has no DDPG, so it is built on SAC's config the way RLlib
builds TQC (``ray/rllib/algorithms/tqc/``).

Reused from ``SACConfig``: the episode replay buffer, ``tau``, ``n_step``, ``actor_lr``,
``critic_lr``, ``twin_q``, ``training_intensity``, ``num_steps_sampled_before_learning_starts``
and SAC's learner connector (adds ``NEXT_OBS``). Defaults follow the GIL reference
(DESIGN.md sec. 4): actor/critic 400-300 with BatchNorm, sigmoid output, last layers from
N(0, 1e-3), ``tau = 1e-3``, ``gamma = 0.99``, actor lr 1e-4, critic lr 1e-3 (the reference MLP
script's; its LSTM script uses 5e-4 / 1e-4). The reference's critic L2 (0.01) is
``critic_l2``, off by default.

Unlike RLlib's default, ``normalize_actions`` is False: the module acts in the env's units.

Example (Pendulum)::

    config = (DDPGConfig().environment("Pendulum-v1")
              .training(actor_output="tanh", actor_batch_norm=False, critic_batch_norm=False))
    algo = config.build_algo()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Self, cast

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.sac.sac import SACConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from gapray.rl.behaviour import BehaviourPolicyConfig
from gapray.rl.env_runner import ChunkSummaryEnvRunner
from gapray.rl.exploration import NOISE_TYPES
from gapray.rl.networks import ACTOR_OUTPUTS, CRITIC_JOINS

if TYPE_CHECKING:
    # RLlib's "leave unchanged" sentinel is the default of parameters typed by the value they
    # set (as in RLlib's own config methods), so it type-checks as Any.
    NotProvided: Any
else:
    from ray.rllib.algorithms.algorithm_config import NotProvided

MODULE_KEYS = (
    "actor_hiddens", "critic_hiddens", "actor_batch_norm", "critic_batch_norm", "critic_join", "actor_output",
    "last_layer_init_std", "twin_q", "target_policy_noise", "target_noise_clip", "exploration_noise",
    "exploration_sigma", "ou_theta", "ou_dt", "initial_random_steps", "observed_mask_slice", "train_rows_per_step",
)


class DDPGConfig(SACConfig):
    """Configuration of :class:`gapray.rl.algorithm.DDPG` (DDPG, or TD3 with the TD3 options)."""

    def __init__(self, algo_class: type | None = None) -> None:
        if algo_class is None:
            from gapray.rl.algorithm import DDPG

            algo_class = DDPG
        super().__init__(algo_class=algo_class)
        # Networks (GIL reference).
        self.actor_hiddens: tuple[int, ...] = (400, 300)
        self.critic_hiddens: tuple[int, ...] = (400, 300)
        self.actor_batch_norm = True
        self.critic_batch_norm = True
        self.critic_join = "pre_activation"
        self.actor_output = "sigmoid"
        self.last_layer_init_std: float | None = 1e-3
        # Losses and optimisation.
        self.twin_q = False
        self.tau = 1e-3
        self.gamma = 0.99
        self.actor_lr = 1e-4
        self.critic_lr = 1e-3
        self.critic_loss = "mse"
        self.critic_l2 = 0.0
        # TD3 options.
        self.target_policy_noise = 0.0
        self.target_noise_clip = 0.5
        self.policy_delay = 1
        self.gradient_steps_per_update = 1
        # Exploration.
        self.exploration_noise = "gaussian"
        self.exploration_sigma = 0.1
        self.ou_theta = 0.15
        self.ou_dt = 1e-2
        self.initial_random_steps = 0
        self.behaviour_policy: BehaviourPolicyConfig | None = None
        self.observed_mask_slice: tuple[int, int] | None = None
        self.train_rows_per_step: int | None = None
        # Replay and batches.
        self.replay_buffer_config = {"type": "EpisodeReplayBuffer", "capacity": 100_000}
        self.train_batch_size_per_learner = 64
        self.num_steps_sampled_before_learning_starts = 1000
        # The actor's output is already inside the Box bounds (rescaled sigmoid/tanh), so the
        # module acts in env units, as the GIL reference does; `normalize_actions=True` also
        # works (the module then acts in [-1, 1] and RLlib rescales).
        self.normalize_actions = False
        self.clip_actions = True
        # Keeps only length/return/duration of returned episode chunks (RLlib keeps whole
        # chunks, observations included, until the episode ends: 10 MB per GIL env step).
        self.env_runner_cls = ChunkSummaryEnvRunner  # type: ignore[assignment]  # RLlib annotates the default None

    @override(SACConfig)
    def training(
        self,
        *,
        actor_hiddens: Sequence[int] = NotProvided,
        critic_hiddens: Sequence[int] = NotProvided,
        actor_batch_norm: bool = NotProvided,
        critic_batch_norm: bool = NotProvided,
        critic_join: str = NotProvided,
        actor_output: str = NotProvided,
        last_layer_init_std: float | None = NotProvided,
        critic_loss: str = NotProvided,
        critic_l2: float = NotProvided,
        target_policy_noise: float = NotProvided,
        target_noise_clip: float = NotProvided,
        policy_delay: int = NotProvided,
        train_rows_per_step: int | None = NotProvided,
        gradient_steps_per_update: int = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """Network, loss and TD3 settings; everything else goes to ``SACConfig.training``.

        Args:
            actor_hiddens: actor hidden widths (reference ``(400, 300)``).
            critic_hiddens: critic state-branch widths; the action joins the last one.
            actor_batch_norm: BatchNorm in the actor's hidden layers.
            critic_batch_norm: BatchNorm in the critic's hidden layers.
            critic_join: ``"pre_activation"`` (Lillicrap et al.: the action enters before the
                ReLU of the last hidden layer) or ``"post_activation"`` (the GIL reference:
                summed after both ReLUs, which makes Q additive in state and action).
            actor_output: ``"sigmoid"`` (reference) or ``"tanh"``, rescaled to the bounds.
            last_layer_init_std: std of the N(0, std) init of the output layers, or None.
            critic_loss: ``"mse"`` (DDPG) or ``"huber"``.
            critic_l2: weight of ``sum(w^2)/2`` over the tensors the reference regularises
                (:meth:`gapray.rl.networks.Critic.regularized_parameters`: hidden weights, the
                output bias); the reference uses 0.01; default 0 (off).
            target_policy_noise: TD3 target smoothing noise std (half-range units); 0 = off.
            target_noise_clip: TD3 clip of the smoothing noise.
            policy_delay: update the actor every this many critic updates (TD3: 2).
            train_rows_per_step: rows drawn from each replayed ``[B, F]`` step for the losses
                (None: all ``B``); the train batch holds ``train_batch_size_per_learner``
                env steps, i.e. that many times this many transitions.
            gradient_steps_per_update: gradient steps per learner update call, each on its own
                train batch drawn from the replay buffer (the Polyak update compounds to
                ``1 - (1 - tau)^n`` over them). With ``rollout_fragment_length = n`` this keeps
                the reference's one gradient step per env step while RLlib's fixed cost of a
                training step (sampling call, learner call, metrics, weight sync) is paid once
                per ``n`` env steps; the acting weights then lag by up to ``n - 1`` env steps.
        """
        super().training(**kwargs)
        for name, widths in (("actor_hiddens", actor_hiddens), ("critic_hiddens", critic_hiddens)):
            if widths is not NotProvided:
                setattr(self, name, tuple(int(v) for v in widths))
        for name, value in (
            ("actor_batch_norm", actor_batch_norm), ("critic_batch_norm", critic_batch_norm),
            ("critic_join", critic_join),
            ("actor_output", actor_output), ("last_layer_init_std", last_layer_init_std),
            ("critic_loss", critic_loss), ("critic_l2", critic_l2),
            ("target_policy_noise", target_policy_noise), ("target_noise_clip", target_noise_clip),
            ("policy_delay", policy_delay), ("train_rows_per_step", train_rows_per_step),
            ("gradient_steps_per_update", gradient_steps_per_update),
        ):
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    def exploration(
        self,
        *,
        noise: str = NotProvided,
        sigma: float = NotProvided,
        ou_theta: float = NotProvided,
        ou_dt: float = NotProvided,
        initial_random_steps: int = NotProvided,
        behaviour_policy: BehaviourPolicyConfig | None = NotProvided,
        observed_mask_slice: tuple[int, int] | slice | None = NotProvided,
    ) -> Self:
        """Exploration of ``_forward_exploration``.

        Args:
            noise: ``"gaussian"``, ``"ou"`` or ``"none"``.
            sigma: noise std in units of half the action range.
            ou_theta: Ornstein-Uhlenbeck mean reversion.
            ou_dt: Ornstein-Uhlenbeck time step.
            initial_random_steps: env steps of uniform random actions first.
            behaviour_policy: GIL Eq. 42 mixture (:class:`BehaviourPolicyConfig`) or None.
            observed_mask_slice: columns of the observed-indicator in one observation row
                (a ``slice`` such as ``ObservationLayout.mask`` or ``(start, stop)``).
        """
        if noise is not NotProvided:
            self.exploration_noise = noise
        if sigma is not NotProvided:
            self.exploration_sigma = sigma
        if ou_theta is not NotProvided:
            self.ou_theta = ou_theta
        if ou_dt is not NotProvided:
            self.ou_dt = ou_dt
        if initial_random_steps is not NotProvided:
            self.initial_random_steps = initial_random_steps
        if behaviour_policy is not NotProvided:
            self.behaviour_policy = behaviour_policy
        if observed_mask_slice is not NotProvided:
            if isinstance(observed_mask_slice, slice):
                observed_mask_slice = (observed_mask_slice.start or 0, observed_mask_slice.stop)
            self.observed_mask_slice = (None if observed_mask_slice is None
                                        else cast(tuple[int, int], tuple(observed_mask_slice)))
        return self

    @override(SACConfig)
    def validate(self) -> None:
        from gapray.rl.replay import TRANSITION_BUFFER, TransitionEpisodeReplayBuffer

        buffer_type = self.replay_buffer_config.get("type")
        transition_buffer = buffer_type == TRANSITION_BUFFER or (
            isinstance(buffer_type, type) and issubclass(buffer_type, TransitionEpisodeReplayBuffer))
        if transition_buffer:
            # SACConfig.validate accepts RLlib's episode buffers by exact name only;
            # `update_from_dict` turns the import path into the class: store the path again
            # (Algorithm tests `"EpisodeReplayBuffer" in type`).
            self.replay_buffer_config["type"] = "EpisodeReplayBuffer"
        if self.env_runner_cls is ChunkSummaryEnvRunner and self.is_multi_agent:
            self.env_runner_cls = None  # RLlib's MultiAgentEnvRunner (the summary runner is single-agent)
        try:
            super().validate()
        finally:
            self.replay_buffer_config["type"] = TRANSITION_BUFFER if transition_buffer else buffer_type
        problems = []
        if transition_buffer and self.n_step not in (1, None):
            problems.append(f"the transition replay buffer supports n_step=1 only, got {self.n_step}")
        if self.actor_output not in ACTOR_OUTPUTS:
            problems.append(f"actor_output must be one of {ACTOR_OUTPUTS}, got {self.actor_output!r}")
        if self.critic_join not in CRITIC_JOINS:
            problems.append(f"critic_join must be one of {CRITIC_JOINS}, got {self.critic_join!r}")
        if self.exploration_noise not in NOISE_TYPES:
            problems.append(f"exploration noise must be one of {NOISE_TYPES}, got {self.exploration_noise!r}")
        if self.exploration_sigma < 0:
            problems.append(f"exploration sigma must be >= 0, got {self.exploration_sigma}")
        if not 0 < self.tau <= 1:
            problems.append(f"tau must lie in (0, 1], got {self.tau}")
        if not self.actor_hiddens or not self.critic_hiddens:
            problems.append("actor_hiddens and critic_hiddens need at least one layer each")
        if self.critic_loss not in ("mse", "huber"):
            problems.append(f"critic_loss must be 'mse' or 'huber', got {self.critic_loss!r}")
        if self.critic_l2 < 0:
            problems.append(f"critic_l2 must be >= 0, got {self.critic_l2}")
        if self.target_policy_noise < 0 or self.target_noise_clip < 0:
            problems.append("target_policy_noise and target_noise_clip must be >= 0")
        if self.train_rows_per_step is not None and int(self.train_rows_per_step) < 1:
            problems.append(f"train_rows_per_step must be >= 1 or None, got {self.train_rows_per_step}")
        if int(self.gradient_steps_per_update) < 1:
            problems.append(f"gradient_steps_per_update must be >= 1, got {self.gradient_steps_per_update}")
        if int(self.policy_delay) < 1:
            problems.append(f"policy_delay must be >= 1, got {self.policy_delay}")
        if self.behaviour_policy is not None:
            if not isinstance(self.behaviour_policy, BehaviourPolicyConfig):
                problems.append("behaviour_policy must be a BehaviourPolicyConfig")
            if self.observed_mask_slice is None:
                problems.append("behaviour_policy needs observed_mask_slice (the mask columns of an observation row)")
        if problems:
            raise ValueError("DDPGConfig: " + "; ".join(problems))

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from gapray.rl.rl_module import DDPGTorchRLModule

        return RLModuleSpec(module_class=DDPGTorchRLModule)

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        from gapray.rl.learner import DDPGTorchLearner

        return DDPGTorchLearner

    @property
    @override(SACConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        module = {key: getattr(self, key) for key in MODULE_KEYS}
        module["behaviour_policy"] = asdict(self.behaviour_policy) if self.behaviour_policy is not None else None
        module["normalize_actions"] = bool(self.normalize_actions)
        return super()._model_config_auto_includes | module
