"""ChunkSummaryEnvRunner: RLlib's episode metrics without keeping the returned chunks' data."""

from __future__ import annotations

from collections import defaultdict

import pytest
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from gapray.rl.env_runner import ChunkSummary, ChunkSummaryEnvRunner
from gapray.rl.presets import pendulum_config


def _sample_chunks(runner, calls: int, steps: int) -> dict[str, list]:
    chunks: dict[str, list] = defaultdict(list)
    for _ in range(calls):
        for episode in runner.sample(num_timesteps=steps, random_actions=True):
            chunks[episode.id_].append((len(episode), float(episode.get_return())))
    return chunks


@pytest.mark.parametrize("runner_cls", [ChunkSummaryEnvRunner, SingleAgentEnvRunner])
def test_episode_metrics_match_the_sampled_chunks_and_only_summaries_are_kept(ray_session, runner_cls):
    config = pendulum_config(rollout_fragment_length=10, seed=0).env_runners(env_runner_cls=runner_cls)
    runner = runner_cls(config=config)
    try:
        chunks = _sample_chunks(runner, calls=25, steps=10)      # Pendulum: one 200-step episode + 50 steps
        kept = [c for cs in runner._ongoing_episodes_for_metrics.values() for c in cs]
        assert kept
        if runner_cls is ChunkSummaryEnvRunner:
            assert all(isinstance(c, ChunkSummary) for c in kept)
        done = [eid for eid, cs in chunks.items() if sum(n for n, _ in cs) == 200]
        assert len(done) == 1
        metrics = MetricsLogger.peek_results(runner.get_metrics())
        assert metrics["episode_len_mean"] == 200
        assert metrics["episode_return_mean"] == pytest.approx(sum(r for _, r in chunks[done[0]]), rel=1e-6)
    finally:
        runner.stop()


def test_chunk_summary_holds_length_return_and_duration(ray_session):
    config = pendulum_config(rollout_fragment_length=7, seed=1)
    runner = SingleAgentEnvRunner(config=config)
    try:
        episode = runner.sample(num_timesteps=7, random_actions=True)[0]
        summary = ChunkSummary(episode)
        assert (summary.id_, len(summary)) == (episode.id_, 7)
        assert summary.get_return() == pytest.approx(float(episode.get_return()))
        assert summary.get_duration_s() == pytest.approx(episode.get_duration_s())
    finally:
        runner.stop()
