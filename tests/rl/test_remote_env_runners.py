"""GIL trained by DDPG with two remote env runners: both runners' samples reach the learner.

Each remote runner records the reward of every step it samples (RLlib seeds runner ``i`` with
``seed + i``, so the two runners train different predictors and see different losses); the
learner group's ``update`` is wrapped to record the rewards of the transitions it is handed.
The rewards the learner trained on must come from both runners, and only from them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from gapray.rl.gil_training import SMOKE_TEST, GILDDPGSettings, GILMetricsCallback, build_ddpg_config

RUNNERS = 2


def _recording_callback() -> type:
    """A callback class defined here, so that Ray pickles it by value for the remote runners."""

    class RecordRewards(GILMetricsCallback):
        def on_episode_step(self, *, episode: Any, env_runner: Any = None, **kwargs: Any) -> None:
            rewards = env_runner.__dict__.setdefault("recorded_rewards", [])
            rewards.append(float(np.float32(episode.get_rewards(-1))))

    return RecordRewards


def test_two_remote_env_runners_both_feed_the_learner(ray_session: Any) -> None:
    ray = ray_session
    free = ray.available_resources().get("CPU", 0.0)
    if free < RUNNERS:
        pytest.fail(f"the session's Ray has {free} free CPUs; {RUNNERS} remote env runners need {RUNNERS}")
    settings = GILDDPGSettings(**{**SMOKE_TEST, "num_env_runners": RUNNERS, "seed": 0})
    algo = build_ddpg_config(settings).callbacks(_recording_callback()).build_algo()
    trained_on: list[float] = []
    update = algo.learner_group.update

    def recording_update(*args: Any, episodes: Any = None, **kwargs: Any) -> Any:
        trained_on.extend(float(np.float32(r)) for episode in episodes for r in episode.get_rewards())
        return update(*args, episodes=episodes, **kwargs)

    algo.learner_group.update = recording_update
    try:
        assert algo.env_runner_group.num_remote_env_runners() == RUNNERS
        results = [algo.train() for _ in range(2)]
        recorded = dict(algo.env_runner_group.foreach_env_runner(
            lambda runner: (runner.worker_index, list(runner.__dict__.get("recorded_rewards", []))),
            local_env_runner=True))
    finally:
        algo.stop()

    assert recorded[0] == []                                     # the local runner samples nothing
    by_runner = {index: set(recorded[index]) for index in range(1, RUNNERS + 1)}
    assert all(by_runner.values()), {i: len(r) for i, r in by_runner.items()}
    assert not by_runner[1] & by_runner[2]                       # two differently seeded predictors
    sampled = sum(len(recorded[index]) for index in by_runner)
    assert results[-1]["env_runners"]["num_env_steps_sampled_lifetime"] == sampled
    assert trained_on, "the learner was never updated"
    assert set(trained_on) <= by_runner[1] | by_runner[2]
    for index, rewards in by_runner.items():
        assert set(trained_on) & rewards, f"no transition of env runner {index} reached the learner"
    assert np.isfinite(results[-1]["learners"]["default_policy"]["qf_loss"])


def test_building_the_module_logs_no_rlmodule_config_deprecation() -> None:
    """RLlib 2.60's RLModule.__init__ builds the deprecated RLModuleConfig and logs a notice once
    per process (every remote env runner printed it); DDPGTorchRLModule marks it as logged."""
    from ray.util.debug import reset_log_once

    from gapray.rl.gil_training import probe_env
    from gapray.rl.rl_module import RLMODULE_CONFIG_NOTICE

    settings = GILDDPGSettings(**SMOKE_TEST)
    spec = build_ddpg_config(settings).get_rl_module_spec(env=probe_env(settings))
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    logger = logging.getLogger("ray._common.deprecation")
    logger.addHandler(handler)
    try:
        reset_log_once(RLMODULE_CONFIG_NOTICE)                  # as in a fresh runner process
        spec.build()
    finally:
        logger.removeHandler(handler)
    assert not [m for m in messages if "RLModuleConfig" in m], messages
