"""The transition replay buffer: chunks of one episode become consecutive transitions."""

from __future__ import annotations

import numpy as np
import pytest
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from gapray.rl.replay import TransitionEpisodeReplayBuffer


def _chunk(start: int, steps: int, terminated: bool = False) -> SingleAgentEpisode:
    """Observation t is a [2, 3] matrix filled with t; action t is t + 0.5; reward t is -t."""
    return SingleAgentEpisode(
        observations=[np.full((2, 3), float(t), np.float32) for t in range(start, start + steps + 1)],
        actions=[np.full((2, 1), t + 0.5, np.float32) for t in range(start, start + steps)],
        rewards=[-float(t) for t in range(start, start + steps)], terminated=terminated, len_lookback_buffer=0)


def test_chunks_become_transitions_and_the_oldest_are_overwritten():
    buffer = TransitionEpisodeReplayBuffer(capacity=5, seed=0)
    buffer.add(_chunk(0, 3))
    buffer.add([_chunk(3, 4, terminated=True)])            # the episode's next chunk: steps 3..6
    assert len(buffer) == 5 and buffer.get_added_timesteps() == 7
    seen = set()
    for episode in buffer.sample(200):
        obs, next_obs = episode.get_observations(0), episode.get_observations(1)
        t = int(obs[0, 0])
        seen.add(t)
        assert np.all(obs == t) and np.all(next_obs == t + 1)
        assert episode.get_actions(0)[0, 0] == t + 0.5 and episode.get_rewards(0) == -t
        assert episode.is_terminated == (t == 6)
        assert episode.get_extra_model_outputs("n_step")[0] == 1
    assert seen == {2, 3, 4, 5, 6}                          # steps 0 and 1 were evicted


def test_multi_step_sampling_is_refused():
    buffer = TransitionEpisodeReplayBuffer(capacity=4)
    buffer.add(_chunk(0, 2))
    with pytest.raises(ValueError, match="n_step=1"):
        buffer.sample(2, n_step=3)


def _matrix_chunk(steps: int, rows: int = 6) -> SingleAgentEpisode:
    """Row r of observation t holds 100 t + r; row r of action t holds 100 t + r + 0.5."""
    return SingleAgentEpisode(
        observations=[np.stack([np.full(3, 100 * t + r, np.float32) for r in range(rows)]) for t in range(steps + 1)],
        actions=[np.stack([np.full(1, 100 * t + r + 0.5, np.float32) for r in range(rows)]) for t in range(steps)],
        rewards=[0.0] * steps, len_lookback_buffer=0)


def test_rows_per_step_draws_the_same_distinct_rows_of_state_action_and_next_state():
    buffer = TransitionEpisodeReplayBuffer(capacity=10, seed=0, rows_per_step=2)
    buffer.add(_matrix_chunk(4))
    kept = set()
    for episode in buffer.sample(300):
        obs, next_obs, action = episode.get_observations(0), episode.get_observations(1), episode.get_actions(0)
        assert obs.shape == (2, 3) and next_obs.shape == (2, 3) and action.shape == (2, 1)
        t, rows = int(obs[0, 0]) // 100, obs[:, 0].astype(int) % 100
        assert len(set(rows)) == 2                                  # without replacement
        assert np.array_equal(next_obs[:, 0], obs[:, 0] + 100)      # the same rows of o_t+1 ...
        assert np.array_equal(action[:, 0], obs[:, 0] + 0.5)        # ... and of a_t
        kept.update((t, int(r)) for r in rows)
    assert len(kept) == 4 * 6                                       # every row of every step gets drawn


def test_rows_per_step_keeps_whole_steps_when_not_smaller_or_flat():
    for rows_per_step in (None, 6, 10):
        buffer = TransitionEpisodeReplayBuffer(capacity=10, seed=0, rows_per_step=rows_per_step)
        buffer.add(_matrix_chunk(2))
        assert buffer.sample(1)[0].get_observations(0).shape == (6, 3)
    flat = TransitionEpisodeReplayBuffer(capacity=10, seed=0, rows_per_step=1)
    flat.add(SingleAgentEpisode(observations=[np.zeros(3, np.float32)] * 3, actions=[np.zeros(1, np.float32)] * 2,
                                rewards=[0.0, 0.0], len_lookback_buffer=0))
    assert flat.sample(1)[0].get_observations(0).shape == (3,)


def test_a_capacity_larger_than_the_available_memory_is_refused_at_the_first_add(monkeypatch):
    import gapray.rl.replay as replay

    monkeypatch.setattr(replay, "available_memory_bytes", lambda: 1000)
    buffer = TransitionEpisodeReplayBuffer(capacity=100, seed=0)   # 100 x (2 x 24 + 8 + 5) bytes > 1000
    with pytest.raises(MemoryError, match=r"100 steps of \(2, 3\) observations.*lower replay_buffer_config"):
        buffer.add(_chunk(0, 3))
    assert len(buffer) == 0
    monkeypatch.setattr(replay, "available_memory_bytes", lambda: None)   # unknown: no check
    buffer.add(_chunk(0, 3))
    assert len(buffer) == 3
