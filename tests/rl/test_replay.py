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
