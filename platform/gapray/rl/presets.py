"""Ready-made :class:`DDPGConfig` s: Pendulum-v1 (CleanRL's DDPG settings) and GIL (reference)."""

from __future__ import annotations

from gapray.rl.config import DDPGConfig


def pendulum_config(*, num_env_runners: int = 0, rollout_fragment_length: int = 4, batch_size: int = 256,
                    learning_starts: int = 1000, seed: int | None = 0, smoothing_episodes: int = 10) -> DDPGConfig:
    """DDPG on ``Pendulum-v1`` with CleanRL's hyper-parameters (``ddpg_continuous_action.py``:
    256-256 networks without BatchNorm, tanh output, Adam 3e-4, tau 5e-3, gamma 0.99,
    batch 256, Gaussian noise 0.1), uniform random actions for ``learning_starts`` steps.

    One learner update per ``rollout_fragment_length`` env steps (per env runner): CleanRL
    updates every step; RLlib's per-update overhead makes 4 the wall-time compromise. Add
    ``.training(gradient_steps_per_update=rollout_fragment_length)`` for CleanRL's one gradient
    step per env step (measured: above -250 after 5k env steps instead of 12k; 1,574 s for 30k
    steps on a loaded machine against 645 s on a quiet one,
    ``benchmarks/results/ddpg_pendulum_per_step_updates.md``).
    """
    return (
        DDPGConfig()
        .environment("Pendulum-v1", normalize_actions=True)
        .env_runners(num_env_runners=num_env_runners, rollout_fragment_length=rollout_fragment_length)
        .training(actor_hiddens=(256, 256), critic_hiddens=(256, 256), actor_batch_norm=False,
                  critic_batch_norm=False, actor_output="tanh", last_layer_init_std=None,
                  actor_lr=3e-4, critic_lr=3e-4, tau=5e-3, gamma=0.99, train_batch_size_per_learner=batch_size,
                  num_steps_sampled_before_learning_starts=learning_starts,
                  replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": 100_000})
        .exploration(noise="gaussian", sigma=0.1, initial_random_steps=learning_starts)
        .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=1000,
                   metrics_num_episodes_for_smoothing=smoothing_episodes)
        .debugging(seed=seed)
    )
