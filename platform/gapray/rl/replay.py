"""A transition replay buffer for large observations (GIL's ``[R, F]`` matrices).

RLlib's ``EpisodeReplayBuffer`` keeps whole episodes and appends every sampled chunk to its
episode with ``np.concatenate`` (and evicts with ``np.delete``): each add copies the episode
so far. GIL's episodes are long (one predictor training run, 500-2,000 steps) and each
observation is megabytes (PhysioNet LSTM: 6,144 rows x 80 columns = 2 MB), so the copies grow
quadratically (profiled: ~90 ms per env step after a few dozen steps, growing). This buffer
stores one-step transitions ``(o_t, a_t, r_t, o_t+1, terminated)`` in preallocated ring
arrays and returns them as the 1-step ``SingleAgentEpisode`` s that DQN's ``training_step``
and SAC's learner connector expect, like ``EpisodeReplayBuffer.sample`` with ``n_step=1``.

Use it with ``replay_buffer_config={"type": TRANSITION_BUFFER, "capacity": steps}``.

Row subsampling (``rows_per_step``, set by :class:`gapray.rl.algorithm.DDPG` from
``train_rows_per_step``): the learner only ever uses ``k`` random rows of each replayed
``[R, F]`` step (the same rows of ``o_t``, ``a_t`` and ``o_t+1``, drawn without replacement;
:meth:`gapray.rl.rl_module.DDPGTorchRLModule.subsample_rows`). Drawing them here, before the
learner connectors stack the batch, moves ``k`` rows instead of ``R`` per step (PhysioNet: 16
of 6,144 rows; the full stack copied 2 x 8 x 2 MB per update). The returned episodes then hold
``[k, F]`` observations and the module passes them through unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

TRANSITION_BUFFER = "gapray.rl.replay.TransitionEpisodeReplayBuffer"
"""Import path for ``replay_buffer_config["type"]`` (RLlib keys its episode-buffer handling on
the substring ``EpisodeReplayBuffer``)."""


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class TransitionEpisodeReplayBuffer(EpisodeReplayBuffer):
    """Uniform replay of one-step transitions in ring arrays; ``capacity`` counts env steps."""

    def __init__(self, capacity: int = 10_000, *, batch_size_B: int = 16, batch_length_T: int = 1,
                 metrics_num_episodes_for_smoothing: int = 100, seed: int | None = None,
                 rows_per_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(capacity=capacity, batch_size_B=batch_size_B, batch_length_T=batch_length_T,
                         metrics_num_episodes_for_smoothing=metrics_num_episodes_for_smoothing, **kwargs)
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(seed)
        self._arrays: dict[str, np.ndarray] | None = None
        self._size = 0
        self._next = 0
        self._added = 0
        self._spaces: tuple[Any, Any] = (None, None)
        self.rows_per_step = rows_per_step
        """Rows drawn from each sampled ``[R, F]`` step (None: all rows; flat steps are kept whole)."""

    def _allocate(self, obs: np.ndarray, action: np.ndarray) -> dict[str, np.ndarray]:
        """The ring arrays, written once here so that their pages are committed now: an oversized
        capacity fails at the first add with a clear error instead of hours into a run, and the
        adds do not pay the first-touch page faults (MNIST GIL: about 4 ms per step for the first
        pass through a 1.6 GB buffer)."""
        c = self.capacity
        layout = {"obs": ((c, *obs.shape[1:]), obs.dtype), "next_obs": ((c, *obs.shape[1:]), obs.dtype),
                  "actions": ((c, *action.shape[1:]), action.dtype), "rewards": ((c,), np.dtype(np.float32)),
                  "terminateds": ((c,), np.dtype(bool))}
        need = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in layout.values())
        available = available_memory_bytes()
        if available is not None and need > available:
            raise MemoryError(
                f"TransitionEpisodeReplayBuffer: {c} steps of {obs.shape[1:]} observations and "
                f"{action.shape[1:]} actions need {need / 2**30:.2f} GiB, but only {available / 2**30:.2f} GiB "
                "of memory is available; lower replay_buffer_config['capacity'] (GIL: GILDDPGSettings.replay_rows)")
        arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in layout.items()}
        for array in arrays.values():
            array.fill(0)
        return arrays

    # RLlib's EpisodeReplayBuffer.add has this same signature, which its interface's
    # add(batch, **kwargs) does not admit.
    def add(self, episodes: list[SingleAgentEpisode] | SingleAgentEpisode) -> None:  # type: ignore[override]
        """Appends every step of the (chunks of) episodes as a transition; the oldest go first."""
        if isinstance(episodes, SingleAgentEpisode):
            episodes = [episodes]
        for episode in episodes:
            steps = len(episode)
            if steps == 0:
                continue
            obs = np.asarray(episode.get_observations(slice(0, steps + 1)))
            actions = np.asarray(episode.get_actions(slice(0, steps)))
            rewards = np.asarray(episode.get_rewards(slice(0, steps)), dtype=np.float32)
            if self._arrays is None:
                self._arrays = self._allocate(obs, actions)
                self._spaces = (episode.observation_space, episode.action_space)
            terminated = np.zeros(steps, bool)
            terminated[-1] = bool(episode.is_terminated)
            index = (self._next + np.arange(steps)) % self.capacity
            self._arrays["obs"][index] = obs[:-1]
            self._arrays["next_obs"][index] = obs[1:]
            self._arrays["actions"][index] = actions
            self._arrays["rewards"][index] = rewards
            self._arrays["terminateds"][index] = terminated
            self._next = int((self._next + steps) % self.capacity)
            self._size = min(self._size + steps, self.capacity)
            self._added += steps

    def __len__(self) -> int:
        return self._size

    def get_num_timesteps(self, module_id: Any = None) -> int:
        return self._size

    def get_added_timesteps(self, module_id: Any = None) -> int:
        return self._added

    # RLlib's EpisodeReplayBuffer.sample is annotated with SampleBatchType | SingleAgentEpisode
    # but returns a list of episodes (_sample_episodes), as this one does.
    def sample(self, num_items: int | None = None, *, batch_size_B: int | None = None,  # type: ignore[override]
               n_step: Any = 1, gamma: float = 0.99, **kwargs: Any) -> list[SingleAgentEpisode]:
        """``num_items`` transitions drawn uniformly with replacement, as 1-step episodes
        (with ``rows_per_step`` random rows of each matrix step, see the module docstring)."""
        if n_step not in (1, None):
            raise ValueError(f"TransitionEpisodeReplayBuffer supports n_step=1 only, got {n_step}")
        if self._arrays is None or self._size == 0:
            raise ValueError("TransitionEpisodeReplayBuffer.sample() called on an empty buffer")
        count = int(num_items or batch_size_B or self.batch_size_B)
        picks = self.rng.integers(0, self._size, size=count)
        a = self._arrays
        observation_space, action_space = self._spaces
        rows, k = a["obs"].shape[1], self.rows_per_step
        subsample = k is not None and a["obs"].ndim == 3 and a["actions"].ndim == 3 and k < rows
        episodes = []
        for i in picks:
            obs, next_obs, action = a["obs"][i], a["next_obs"][i], a["actions"][i]
            if subsample:
                kept = self.rng.choice(rows, size=k, replace=False)
                obs, next_obs, action = obs[kept], next_obs[kept], action[kept]
            episode = SingleAgentEpisode(
                observations=[obs, next_obs], actions=[action],
                rewards=[float(a["rewards"][i])], infos=[{}, {}], terminated=bool(a["terminateds"][i]), truncated=False,
                observation_space=observation_space, action_space=action_space, len_lookback_buffer=0,
            )
            episode.extra_model_outputs["n_step"] = InfiniteLookbackBuffer(np.ones(1), lookback=0)
            episode.extra_model_outputs["weights"] = InfiniteLookbackBuffer(np.ones(1), lookback=0)
            episodes.append(episode)
        self.sampled_timesteps += count
        return episodes

    def get_state(self) -> dict[str, Any]:
        return {"arrays": self._arrays, "size": self._size, "next": self._next, "added": self._added,
                "spaces": self._spaces}

    def set_state(self, state: dict[str, Any]) -> None:
        self._arrays, self._size, self._next = state["arrays"], state["size"], state["next"]
        self._added, self._spaces = state["added"], state["spaces"]
