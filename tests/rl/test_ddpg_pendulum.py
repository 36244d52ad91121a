"""DDPG end to end on Pendulum-v1 through RLlib: learning, checkpoint/restore, remote env runners."""

from __future__ import annotations

import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core.columns import Columns

from gapray.rl import DDPG
from gapray.rl.evaluation import evaluate_policy, random_policy_returns
from gapray.rl.presets import pendulum_config

OBS = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (16, 3)), dtype=torch.float32)


def _actions(algo) -> torch.Tensor:
    return algo.get_module().forward_inference({Columns.OBS: OBS})[Columns.ACTIONS]


def test_ddpg_learns_pendulum_and_restores_its_checkpoint_exactly(ray_session, tmp_path):
    """1,500 env steps, one update per step (8 per sampled fragment of 8) on Pendulum-v1 with
    gravity g = 2 (an easier swing-up: at the default g = 10 DDPG needs ~3-10k steps, too
    slow and too flaky for the test budget; benchmarks/ddpg_pendulum.py covers g = 10): the
    deterministic policy must beat uniformly random actions by a wide margin; then
    save/restore must reproduce its actions exactly."""
    env_config = {"g": 2.0}
    config = (pendulum_config(rollout_fragment_length=8, batch_size=64, learning_starts=300, seed=0)
              .environment("Pendulum-v1", env_config=env_config)
              .training(actor_hiddens=(64, 64), critic_hiddens=(64, 64), actor_lr=1e-3, critic_lr=1e-3, tau=0.01,
                        training_intensity=64.0)   # 64 / (8 steps x 1 runner) = 8 updates per fragment
              .reporting(min_sample_timesteps_per_iteration=500))
    algo = config.build_algo()
    assert isinstance(algo, DDPG)
    steps = 0
    while steps < 1500:
        steps = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
    learned = np.mean(evaluate_policy(algo.get_module(), "Pendulum-v1", episodes=5, seed=100, env_config=env_config))
    random = np.mean(random_policy_returns("Pendulum-v1", episodes=5, seed=100, env_config=env_config))
    assert learned > random + 500, (learned, random)

    before = _actions(algo)
    path = algo.save_to_path(tmp_path / "ckpt")
    algo.train()
    assert not torch.equal(_actions(algo), before)
    algo.restore_from_path(path)
    assert torch.equal(_actions(algo), before)
    algo.stop()
    restored = Algorithm.from_checkpoint(path)
    assert isinstance(restored, DDPG)
    assert torch.equal(_actions(restored), before)
    restored.stop()


def test_restore_reaches_remote_env_runners(ray_session, tmp_path):
    """RLlib 2.60 skips weights older than an env runner's own; DDPG pushes restored ones."""
    config = (pendulum_config(num_env_runners=1, batch_size=32, learning_starts=100, seed=0)
              .training(actor_hiddens=(16,), critic_hiddens=(16,))
              .reporting(min_sample_timesteps_per_iteration=200))
    algo = config.build_algo()
    algo.train()
    before = _actions(algo)
    path = algo.save_to_path(tmp_path / "ckpt")
    algo.train()

    def remote_actions(a):
        out = a.env_runner_group.foreach_env_runner(
            lambda runner: runner.module.forward_inference({Columns.OBS: OBS})[Columns.ACTIONS],
            local_env_runner=False)
        return torch.as_tensor(out[0])

    assert not torch.equal(remote_actions(algo), before)
    algo.restore_from_path(path)
    assert torch.equal(remote_actions(algo), before)
    algo.train()                                            # training goes on from the restored weights
    assert np.isfinite(algo.train()["learners"]["default_policy"]["qf_loss"])
    algo.stop()
    restored = Algorithm.from_checkpoint(path)
    assert torch.equal(remote_actions(restored), before)
    restored.stop()


def test_local_env_runner_gets_a_copy_of_the_learners_weights_after_each_step(ray_session):
    """num_env_runners=0: the weights are copied tensor to tensor (no object store), as
    RLlib's sync would set them: equal values, own storage, the learner's sequence number."""
    config = (pendulum_config(batch_size=16, learning_starts=20, seed=0)
              .training(actor_hiddens=(16,), critic_hiddens=(16,))
              .reporting(min_sample_timesteps_per_iteration=40))
    algo = config.build_algo()
    try:
        algo.train()
        algo.train()
        runner = algo.env_runner_group.local_env_runner
        learner = algo.learner_group._learner
        source = learner.module["default_policy"].state_dict()
        target = runner.module.state_dict()
        assert target and set(target) == {k for k in source if k.startswith("pi.")}
        for key, value in target.items():
            assert torch.equal(value, source[key]), key
            assert value.data_ptr() != source[key].data_ptr(), key
        assert runner._weights_seq_no == learner._weights_seq_no > 0
        learner_actions = learner.module["default_policy"].forward_inference({Columns.OBS: OBS})[Columns.ACTIONS]
        assert torch.equal(runner.module.forward_inference({Columns.OBS: OBS})[Columns.ACTIONS], learner_actions)
    finally:
        algo.stop()


def test_gradient_steps_per_update_takes_that_many_steps_in_one_learner_call(ray_session, monkeypatch):
    """rollout_fragment_length 4 with gradient_steps_per_update 4: one sample call and one
    learner call per training step, four gradient steps on four train batches of 16 inside it."""
    from gapray.rl.learner import DDPGTorchLearner

    loss_batches: list[int] = []
    compute_loss = DDPGTorchLearner.compute_loss_for_module

    def recording(self, *, module_id, config, batch, fwd_out):
        loss_batches.append(int(batch[Columns.OBS].shape[0]))
        return compute_loss(self, module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)

    monkeypatch.setattr(DDPGTorchLearner, "compute_loss_for_module", recording)
    config = (pendulum_config(rollout_fragment_length=4, batch_size=16, learning_starts=20, seed=0)
              .training(actor_hiddens=(16,), critic_hiddens=(16,), gradient_steps_per_update=4)
              .reporting(min_sample_timesteps_per_iteration=40))
    algo = config.build_algo()
    try:
        algo.train()
        learner = algo.learner_group._learner
        steps_before = learner._num_critic_updates["default_policy"]
        sampled_before = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"))
        update_calls = []
        update = algo.learner_group.update
        algo.learner_group.update = lambda **kwargs: update_calls.append(kwargs) or update(**kwargs)
        loss_batches.clear()
        algo.training_step()
        assert len(update_calls) == 1
        assert loss_batches == [16, 16, 16, 16]
        assert learner._num_critic_updates["default_policy"] - steps_before == 4
        assert algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime")) - sampled_before == 4
    finally:
        algo.stop()
