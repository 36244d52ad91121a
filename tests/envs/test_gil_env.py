"""The GIL environment: spaces, check_env, determinism, rewards, registration, config errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import gapray_envs
from gapray_envs.gil_env import GILEnv, ObservationLayout

MLP = {"dataset": "digits", "hidden_sizes": (16, 16), "batch_size": 16, "horizon": 4, "max_train_samples": 300}
LSTM = {"dataset": "digits", "sequence_steps": 8, "lstm_hidden_size": 8, "batch_size": 8, "horizon": 4,
        "max_train_samples": 300}
VARIANTS = {"mlp": MLP, "lstm": LSTM}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_check_env_passes_without_any_warning(variant: str) -> None:
    env = gymnasium.make(gapray_envs.GIL_ENV_ID, config=VARIANTS[variant]).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_spaces_rows_columns_and_finite_bounds(variant: str) -> None:
    env = GILEnv(VARIANTS[variant])
    steps = 1 if variant == "mlp" else 8
    d = 64 // steps
    rows = VARIANTS[variant]["batch_size"] * steps
    layout = ObservationLayout(d, 8, 10)
    assert env.layout == layout and layout.width == 2 * d + 8 + 10
    assert env.observation_space.shape == (rows, layout.width) and env.observation_space.dtype == np.float32
    assert np.isfinite(env.observation_space.low).all() and np.isfinite(env.observation_space.high).all()
    assert (env.observation_space.low < env.observation_space.high).all()
    assert env.action_space.shape == (rows, d)
    assert (env.action_space.low == 0).all() and (env.action_space.high == 1).all()

    observation, info = env.reset(seed=3)
    for _ in range(3):
        assert env.observation_space.contains(observation)
        # the mask columns are the batch's missing indicators, also handed out in info
        mask = observation[:, layout.mask]
        np.testing.assert_array_equal(mask, info["mask"])
        expected = env.train_data.m[env._pending.batch_index].reshape(rows, d).numpy()
        np.testing.assert_array_equal(mask, expected)
        x = env.train_data.x[env._pending.batch_index].reshape(rows, d).numpy()
        np.testing.assert_array_equal(observation[:, layout.x], x)
        np.testing.assert_allclose(observation[:, layout.y_hat].sum(axis=1), 1.0, rtol=1e-5)
        with torch.no_grad():  # zeta and y_hat columns: the predictor's own outputs for these rows
            index = env._pending.batch_index
            lengths = None if env.train_data.lengths is None else env.train_data.lengths[index]
            output = env.session.predictor(env.train_data.x[index], lengths)
            zeta = output.zeta.reshape(rows, -1)
            logits = output.logits if variant == "mlp" else env.session.predictor.step_logits(output.zeta)
        np.testing.assert_allclose(observation[:, layout.zeta], torch.tanh(zeta @ env._projection).numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(observation[:, layout.y_hat], torch.softmax(logits, -1).reshape(rows, -1).numpy(),
                                   rtol=1e-5, atol=1e-6)
        observation, _, _, _, info = env.step(mask)


def test_same_seed_same_trajectory_other_seed_other_trajectory() -> None:
    def rollout(seed: int) -> tuple[list[np.ndarray], list[float]]:
        env = GILEnv(MLP)
        observation, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        observations, rewards = [observation], []
        for _ in range(3):
            observation, reward, _, _, _ = env.step(rng.random(env.action_space.shape, dtype=np.float32))
            observations.append(observation)
            rewards.append(reward)
        return observations, rewards

    first, second, other = rollout(7), rollout(7), rollout(8)
    for a, b in zip(first[0], second[0]):
        np.testing.assert_array_equal(a, b)
    assert first[1] == second[1]
    assert not np.array_equal(first[0][0], other[0][0])


def test_reward_is_minus_the_batch_loss_after_the_update_and_episode_truncates() -> None:
    env = GILEnv(MLP)
    env.reset(seed=0)
    for step in range(1, MLP["horizon"] + 1):
        index = env._pending.batch_index
        observation, reward, terminated, truncated, info = env.step(np.ones(env.action_space.shape, np.float32))
        loss_after, _ = env.session.evaluate_batch(index)
        assert reward < 0 and reward == pytest.approx(-info["loss"]) and info["loss"] == pytest.approx(loss_after)
        assert not terminated and truncated == (step == MLP["horizon"])
    assert {"val_accuracy", "val_auc", "val_ap"} <= set(info)


def test_reference_reward_timing_uses_the_loss_before_the_update() -> None:
    env = GILEnv({**MLP, "reward_timing": "before_update"})
    env.reset(seed=0)
    index = env._pending.batch_index
    _, reward, _, _, info = env.step(np.ones(env.action_space.shape, np.float32))
    loss_after, _ = env.session.evaluate_batch(index)
    assert reward == pytest.approx(-info["loss_before_update"]) and reward != pytest.approx(-loss_after)


def test_gil_d_reward_adds_c_times_d_on_label_balanced_batches(data_dir: Path) -> None:
    config = {"dataset": "physionet2012", "data_root": str(data_dir), "lstm_hidden_size": 4, "batch_size": 8,
              "horizon": 2, "max_train_samples": 200, "reward": "gil-d", "d_coefficient": 10.0}
    env = GILEnv(config)
    assert env.observation_space.shape == (8 * 48, 2 * 35 + 8 + 2)
    env.reset(seed=0)
    labels = env.train_data.y[env._pending.batch_index].numpy()
    np.testing.assert_array_equal(np.sort(labels), [0, 0, 0, 0, 1, 1, 1, 1])
    _, reward, _, _, info = env.step(np.ones(env.action_space.shape, np.float32))
    assert reward == pytest.approx(-info["loss"] + 10.0 * info["distributional_difference"])


def test_gymnasium_make_builds_the_registered_env() -> None:
    env = gymnasium.make("gapray/GIL-v0", config=MLP)
    observation, _ = env.reset(seed=0)
    assert observation.shape == env.observation_space.shape
    assert isinstance(env.unwrapped, GILEnv)


def test_learning_happens_digits_accuracy_far_above_chance() -> None:
    env = GILEnv({"dataset": "digits", "missing_rate": 0.2, "hidden_sizes": (64, 64), "batch_size": 64,
                  "horizon": 150})
    observation, _ = env.reset(seed=0)
    truncated = False
    while not truncated:
        observation, _, _, truncated, info = env.step(observation[:, env.layout.mask])  # GIL-H: a = m
    assert info["val_accuracy"] > 0.6  # chance: 0.1


def test_save_predictor_round_trip(tmp_path: Path) -> None:
    env = GILEnv(MLP)
    env.reset(seed=0)
    env.step(np.ones(env.action_space.shape, np.float32))
    saved = torch.load(env.save_predictor(tmp_path / "p.pt"), weights_only=False)
    assert saved["kind"] == "mlp" and saved["steps_done"] == 1
    for name, value in env.session.predictor.state_dict().items():
        torch.testing.assert_close(saved["state_dict"][name], value)


@pytest.mark.parametrize(("config", "message"), [
    ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
    ({**MLP, "batch_size": 301}, "batch_size 301 is larger than the training data"),
    ({**MLP, "learning_rat": 0.1}, r"unknown key\(s\) \['learning_rat'\]"),
    ({**MLP, "reward": "gil-d"}, "binary labels"),
    ({**MLP, "horizon": 0}, "horizon must be positive"),
])
def test_bad_configs_fail_with_clear_errors(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GILEnv(config)


def test_bad_actions_fail_with_clear_errors() -> None:
    env = GILEnv(MLP)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(16, 63\), expected \(16, 64\)"):
        env.step(np.ones((16, 63), np.float32))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        env.step(np.full(env.action_space.shape, 1.5, np.float32))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        env.step(np.full(env.action_space.shape, np.nan, np.float32))


def test_rllib_ppo_iteration_runs_on_the_registered_env(ray_session: object) -> None:
    from ray.rllib.algorithms.ppo import PPOConfig

    name = gapray_envs.register_rllib_env(flatten=True)
    assert gapray_envs.register_rllib_env() == "gapray/GIL-v0"
    config = (
        PPOConfig()
        .environment(name, env_config={**MLP, "batch_size": 8, "horizon": 8}, clip_actions=True)
        .env_runners(num_env_runners=0, rollout_fragment_length=16)
        .training(train_batch_size_per_learner=16, minibatch_size=16, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [8]})
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 16
    assert result["env_runners"]["episode_return_mean"] < 0
