"""The GIL env's step against an update computed here by hand from the same batch (GIL Eq. 3-4).

For the batch in the observation, with the predictor's weights before the step:
``grad W_enc = sum_i Delta_i (x_i * a_i)^T`` (per sample for the MLP, per sample and step for the
LSTM, ``Delta`` = the loss gradient at the encoder's pre-activation), every other parameter keeps
its plain gradient, Adam's first step moves each weight by ``lr * g / (|g| + eps)``, and the
reward is minus the batch loss after the update. The batch is recovered from the observation's
``x`` and ``m`` columns (no private state). Two different actions must lead to different next
states and rewards.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gapray_envs.gil_env import GILEnv

MLP = {"dataset": "digits", "hidden_sizes": (16, 16), "batch_size": 16, "horizon": 4, "max_train_samples": 300}
LSTM = {"dataset": "digits", "sequence_steps": 8, "lstm_hidden_size": 8, "batch_size": 8, "horizon": 4,
        "max_train_samples": 300}
VARIANTS = {"mlp": MLP, "lstm": LSTM}


def batch_of(env: GILEnv, observation: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The training rows ``x`` ``[B, (T,) d]`` and labels ``y`` whose observation this is."""
    layout, data = env.layout, env.train_data
    per_sample = data.x.reshape(len(data.x), -1)
    rows = torch.as_tensor(observation[:, layout.x]).reshape(-1, per_sample.shape[1])
    masks = torch.as_tensor(observation[:, layout.mask]).reshape(-1, per_sample.shape[1])
    matches = (rows[:, None] == per_sample[None]).all(-1)
    matches &= (masks[:, None] == data.m.reshape(len(data.m), -1)[None]).all(-1)
    labels = []
    for match in matches:
        candidates = torch.nonzero(match).flatten()
        assert len(candidates) >= 1 and len(set(data.y[candidates].tolist())) == 1, "ambiguous batch row"
        labels.append(int(data.y[candidates[0]]))
    return rows.reshape(-1, *data.x.shape[1:]), torch.tensor(labels)


def hand_gradients(predictor: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   importance: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of the mean cross entropy, the encoder weight's importance-weighted.

    ``Delta`` comes from a forward pass that exposes the encoder pre-activation ``u = x W_enc^T``
    (for the LSTM a textbook loop over steps), the encoder gradient is then
    ``sum_i Delta_i^T (x_i * a_i)`` written out; the other gradients are plain back-propagation.
    """
    predictor = copy.deepcopy(predictor)
    names = dict(predictor.named_parameters())
    if predictor.kind == "mlp":
        u = x @ predictor.encoder.weight.t()
        u.retain_grad()
        h = torch.relu(u + predictor.encoder.bias)
        for layer in predictor.hidden:
            h = torch.relu(layer(h))
        logits = predictor.output(h)
        encoder = "encoder.weight"
    else:
        u = x @ predictor.weight_ih.t()  # [B, T, 4H]
        u.retain_grad()
        h = c = x.new_zeros(x.shape[0], predictor.hidden_size)
        for t in range(x.shape[1]):
            gates = u[:, t] + predictor.bias_ih + h @ predictor.weight_hh.t() + predictor.bias_hh
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        logits = predictor.output(h)  # digits sequences have full length
        encoder = "weight_ih"
    F.cross_entropy(logits, y).backward()
    grads = {name: p.grad.detach().clone() for name, p in names.items()}
    delta = u.grad.reshape(-1, u.shape[-1])
    weighted_input = (x * importance).reshape(-1, x.shape[-1])
    grads[encoder] = delta.t() @ weighted_input  # sum over samples (and steps) of Delta (x * a)^T
    return grads


@pytest.mark.parametrize(("variant", "deferred"), [("mlp", True), ("lstm", True), ("mlp", False)])
def test_a_step_applies_the_action_as_gil_importance_and_rewards_the_loss_after_the_update(
        variant: str, deferred: bool) -> None:
    """Both update paths of the session: the deferred importance on the observation's forward pass,
    and a fresh split forward (Eq. 4), which also gets a float64 action."""
    env = GILEnv(VARIANTS[variant])
    observation, _ = env.reset(seed=0)
    env.session.deferred = deferred
    generator = torch.Generator().manual_seed(1)
    for step in range(2):
        x, y = batch_of(env, observation)
        predictor = env.session.predictor
        before = copy.deepcopy(predictor)
        action = torch.rand(env.action_space.shape, generator=generator)
        action[:, : action.shape[1] // 3] = 0.0  # some features get no encoder gradient at all
        action[:, action.shape[1] // 3] = -5e-7  # within the bounds check's tolerance: clamped to 0
        importance = action.clamp(0.0, 1.0).reshape(x.shape)
        expected = hand_gradients(before, x, y, importance)
        plain = hand_gradients(before, x, y, torch.ones_like(importance))
        observation, reward, terminated, truncated, info = env.step(
            action.numpy() if deferred else action.numpy().astype(np.float64))
        assert not terminated and not truncated
        encoder = "encoder.weight" if variant == "mlp" else "weight_ih"
        assert not torch.allclose(expected[encoder], plain[encoder], atol=1e-4)  # the action matters here
        for name, param in predictor.named_parameters():
            torch.testing.assert_close(param.grad, expected[name], atol=1e-6, rtol=1e-4,
                                       msg=lambda text, name=name: f"{name}: {text}")
        if step == 0:  # Adam's first step moves every weight by lr * g / (|g| + eps) of the gradient just
            lr = env.config.learning_rate  # checked (g = 0 where a = 0: those weights stay)
            for old, new in zip(before.parameters(), predictor.parameters()):
                g = new.grad
                torch.testing.assert_close(new.detach(), old.detach() - lr * g / (g.abs() + 1e-8),
                                           atol=1e-7, rtol=1e-5)
            # zero importance (also the clamped -5e-7 column): the encoder weight's column does not move
            stay = action.shape[1] // 3 + 1
            assert torch.equal(dict(predictor.named_parameters())[encoder].detach()[:, :stay],
                               dict(before.named_parameters())[encoder].detach()[:, :stay])
        with torch.no_grad():  # reward: minus the batch's loss under the updated weights
            loss_after = F.cross_entropy(predictor(x).logits, y)
            loss_before = F.cross_entropy(before(x).logits, y)
        assert info["loss_before_update"] == pytest.approx(float(loss_before), rel=1e-5)
        decay = env.config.lr_decay_rate ** ((step + 1) / env.config.lr_decay_steps)  # continuous decay
        assert info["learning_rate"] == pytest.approx(env.config.learning_rate * decay, rel=1e-9)
        assert reward == pytest.approx(-float(loss_after), rel=1e-5)
        assert info["loss"] == pytest.approx(float(loss_after), rel=1e-5)
        # the next observation: the next batch's rows and the updated predictor's own outputs
        next_x, _ = batch_of(env, observation)
        with torch.no_grad():
            probabilities = torch.softmax(predictor(next_x).logits, dim=-1)
        y_hat = torch.as_tensor(observation[:, env.layout.y_hat])
        if variant == "mlp":
            torch.testing.assert_close(y_hat, probabilities, atol=1e-5, rtol=1e-4)
        else:  # per step for the LSTM; the last step's row of each sample is its prediction
            last_rows = y_hat.reshape(next_x.shape[0], next_x.shape[1], -1)[:, -1]
            torch.testing.assert_close(last_rows, probabilities, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_two_different_actions_give_different_next_states_and_rewards(variant: str) -> None:
    outcomes = []
    for fill in (1.0, 0.0, "random"):
        env = GILEnv(VARIANTS[variant])
        observation, _ = env.reset(seed=0)
        shape = env.action_space.shape
        action = np.random.default_rng(0).random(shape, dtype=np.float32) if fill == "random" else \
            np.full(shape, fill, dtype=np.float32)
        next_observation, reward, *_ = env.step(action)
        outcomes.append((observation, next_observation, reward))
    first, *others = outcomes
    layout = env.layout
    for other in others:
        np.testing.assert_array_equal(other[0], first[0])  # same start
        # same next batch (same seed), so the x and m columns agree; the predictor's columns do not
        np.testing.assert_array_equal(other[1][:, : layout.zeta.start], first[1][:, : layout.zeta.start])
        assert np.abs(other[1][:, layout.zeta.start:] - first[1][:, layout.zeta.start:]).max() > 1e-4
        assert other[2] != pytest.approx(first[2], rel=1e-6, abs=1e-7)
    assert outcomes[1][2] != pytest.approx(outcomes[2][2], rel=1e-6, abs=1e-7)


def test_gil_d_reward_uses_the_configured_coefficient(data_dir: Path) -> None:
    """GIL-D (Eq. 43): ``-loss + c * D`` with the configured ``c`` (not the paper's default 10)."""
    env = GILEnv({"dataset": "physionet2012", "data_root": str(data_dir), "lstm_hidden_size": 4, "batch_size": 8,
                  "horizon": 2, "max_train_samples": 200, "reward": "gil-d", "d_coefficient": 3.0})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.ones(env.action_space.shape, np.float32))
    assert abs(info["distributional_difference"]) > 1e-3  # so the coefficient matters
    assert reward == pytest.approx(-info["loss"] + 3.0 * info["distributional_difference"], rel=1e-6)


def test_actions_are_checked_and_integer_actions_work() -> None:
    env = GILEnv(MLP)
    env.reset(seed=0)
    shape = env.action_space.shape
    with pytest.raises(ValueError, match=r"^GILEnv action must be numeric, got dtype bool$"):
        env.step(np.ones(shape, dtype=bool))
    bad = np.full(shape, 0.5, dtype=np.float32)
    bad[3, 4] = -0.5
    with pytest.raises(ValueError, match=r"^GILEnv action must lie in \[0, 1\], got values in \[-0.5, 0.5\]$"):
        env.step(bad)
    _, reward_int, *_ = env.step(np.ones(shape, dtype=np.int64))  # integer 0/1 importance is accepted
    again = GILEnv(MLP)
    again.reset(seed=0)
    _, reward_float, *_ = again.step(np.ones(shape, dtype=np.float32))
    assert reward_int == reward_float


def test_step_before_reset_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"^GILEnv.step\(\) called before reset\(\)$"):
        GILEnv(MLP).step(np.ones((16, 64), dtype=np.float32))


def test_an_importance_of_the_wrong_shape_is_refused_naming_both_shapes() -> None:
    """The env reshapes the action to the encoder input; a mismatch must say which shapes clashed."""
    from gapray.gil.importance import DeferredImportance, split_forward_input

    with pytest.raises(ValueError, match=r"^importance has shape \(2, 3\), the input \(2, 4\)$"):
        split_forward_input(torch.ones(2, 4), torch.ones(2, 3))
    deferred = DeferredImportance(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"^importance has shape \(4, 2\), the input \(2, 4\)$"):
        deferred.apply(torch.ones(4, 2))
    deferred.apply(torch.ones(2, 4))
    with pytest.raises(RuntimeError, match=r"^the importance of this forward pass was already applied$"):
        deferred.apply(torch.ones(2, 4))


def test_an_action_just_outside_0_1_within_the_tolerance_is_clamped_into_it() -> None:
    """Rounding may push an importance a hair past [0, 1]; within 1e-6 it is accepted and clamped, so the
    importance the step applies is a GIL importance (in [0, 1]), and the action itself is left as it was."""
    env = GILEnv(MLP)
    env.reset(seed=0)
    action = np.full(env.action_space.shape, 0.5, dtype=np.float32)
    action[0, 0], action[0, 1] = np.float32(1.0 + 5e-7), np.float32(-5e-7)
    assert action[0, 0] > 1.0 and action[0, 1] < 0.0
    before = action.copy()
    importance = env._check_action(action)
    assert importance[0, 0].item() == 1.0 and importance[0, 1].item() == 0.0
    rest = torch.cat([importance[0, 2:], importance[1:].flatten()])
    assert torch.equal(rest, torch.full_like(rest, 0.5))
    assert np.array_equal(action, before)


def test_reset_without_a_seed_starts_from_the_configured_seed_once_and_the_mask_is_read_only() -> None:
    """The first ``reset()`` without a seed uses ``config.seed`` (two envs agree); later ones continue the
    env's RNG (a new predictor and batch). The mask handed out in ``info`` cannot be written to."""
    a, b = GILEnv(MLP), GILEnv(MLP)
    first_a, info = a.reset()
    first_b, _ = b.reset()
    assert np.array_equal(first_a, first_b)
    second_a, _ = a.reset()
    assert not np.array_equal(second_a, first_a)
    with pytest.raises(ValueError, match="read-only"):
        info["mask"][0] = 1.0
