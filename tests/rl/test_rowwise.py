"""Row folding: a ``[B, F]`` env step is B transitions that share the step's reward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from gapray.rl import DDPGConfig
from gapray.rl.learner import QF_OPTIMIZER
from gapray.rl.rl_module import QF_PREDS, QF_TARGET_NEXT
from gapray.rl.rowwise import RowLayout

MID = "default_policy"
B, F, D = 3, 5, 2
MATRIX_OBS = gym.spaces.Box(-5.0, 5.0, (B, F), np.float32)
MATRIX_ACT = gym.spaces.Box(0.0, 1.0, (B, D), np.float32)


def matrix_learner():
    config = DDPGConfig().training(actor_hiddens=(8,), critic_hiddens=(8, 4), gamma=0.9, actor_batch_norm=False,
                                   critic_batch_norm=False)
    return config.build_learner(spaces={MID: (MATRIX_OBS, MATRIX_ACT)}), config


def test_layout_reads_rows_from_spaces_and_rejects_mismatched_rows():
    assert RowLayout.from_spaces(MATRIX_OBS, MATRIX_ACT) == RowLayout(rows=B, state_dim=F, action_dim=D, matrix=True)
    flat = RowLayout.from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)))
    assert flat == RowLayout(rows=1, state_dim=3, action_dim=1, matrix=False)
    with pytest.raises(ValueError, match="same number of rows"):
        RowLayout.from_spaces(MATRIX_OBS, gym.spaces.Box(0, 1, (B + 1, D)))


def test_matrix_step_gives_b_transitions_with_the_shared_reward():
    torch.manual_seed(0)
    learner, config = matrix_learner()
    module = learner.module[MID].unwrapped()
    n = 2
    batch = {
        Columns.OBS: torch.randn(n, B, F),
        Columns.ACTIONS: torch.rand(n, B, D),
        Columns.REWARDS: torch.tensor([-0.7, 0.3]),
        Columns.NEXT_OBS: torch.randn(n, B, F),
        Columns.TERMINATEDS: torch.tensor([False, False]),
    }
    fwd = module.forward_train(batch)
    assert fwd[QF_PREDS].shape == (n, B) and fwd[QF_TARGET_NEXT].shape == (n, B)

    # Row i of step k is the transition (s_ki, a_ki, r_k, s'_ki): evaluate it on its own.
    module.eval()
    with torch.no_grad():
        for k in range(n):
            for i in range(B):
                s, a = batch[Columns.OBS][k, i:i + 1], batch[Columns.ACTIONS][k, i:i + 1]
                s2 = batch[Columns.NEXT_OBS][k, i:i + 1]
                q_next = module.target_qf(s2, module.target_pi(s2))
                assert fwd[QF_TARGET_NEXT][k, i].item() == pytest.approx(q_next.item(), abs=1e-5)
                assert fwd[QF_PREDS][k, i].item() == pytest.approx(module.qf(s, a).item(), abs=1e-5)
    module.train()

    learner.compute_loss_for_module(module_id=MID, config=config, batch=batch, fwd_out=fwd)
    targets = batch[Columns.REWARDS][:, None] + 0.9 * fwd[QF_TARGET_NEXT]          # [n, B]: r_k shared over rows
    per_transition = (fwd[QF_PREDS] - targets) ** 2
    assert per_transition.numel() == n * B
    assert learner._temp_losses[(MID, QF_OPTIMIZER)].item() == pytest.approx(per_transition.mean().item(), rel=1e-5)


def test_actor_acts_on_each_row_independently():
    learner, _ = matrix_learner()
    module = learner.module[MID].unwrapped()
    obs = torch.randn(4, B, F)
    actions = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    assert actions.shape == (4, B, D)
    assert torch.all((actions >= 0) & (actions <= 1))
    module.eval()
    with torch.no_grad():
        assert torch.allclose(actions[2, 1], module.pi(obs[2, 1:2])[0], atol=1e-6)


def test_row_subsampling_keeps_state_action_and_next_state_of_the_same_row():
    torch.manual_seed(1)
    config = DDPGConfig().training(actor_hiddens=(8,), critic_hiddens=(8,), actor_batch_norm=False,
                                   critic_batch_norm=False, train_rows_per_step=2)
    module = config.build_learner(spaces={MID: (MATRIX_OBS, MATRIX_ACT)}).module[MID].unwrapped()
    n = 4
    batch = {Columns.OBS: torch.randn(n, B, F), Columns.ACTIONS: torch.rand(n, B, D),
             Columns.NEXT_OBS: torch.randn(n, B, F)}
    fwd = module.forward_train(batch)
    assert fwd[QF_PREDS].shape == (n, 2)
    with torch.no_grad():
        q_all = module.qf(batch[Columns.OBS].reshape(-1, F), batch[Columns.ACTIONS].reshape(-1, D)).reshape(n, B)
        next_all = module.forward_target({Columns.OBS: batch[Columns.NEXT_OBS]})
    for k in range(n):
        rows = [int(torch.argmin((q_all[k] - q).abs())) for q in fwd[QF_PREDS][k]]
        assert len(set(rows)) == 2
        assert torch.allclose(fwd[QF_TARGET_NEXT][k], next_all[k, rows], atol=1e-6)


def test_rows_already_subsampled_by_the_replay_buffer_pass_through():
    """A batch holding ``train_rows_per_step`` rows per step (drawn by the transition buffer) is
    used as it is: Q per row in the batch's own row order."""
    config = DDPGConfig().training(actor_hiddens=(8,), critic_hiddens=(8,), actor_batch_norm=False,
                                   critic_batch_norm=False, train_rows_per_step=2)
    module = config.build_learner(spaces={MID: (MATRIX_OBS, MATRIX_ACT)}).module[MID].unwrapped()
    n = 4
    batch = {Columns.OBS: torch.randn(n, 2, F), Columns.ACTIONS: torch.rand(n, 2, D),
             Columns.NEXT_OBS: torch.randn(n, 2, F)}
    fwd = module.forward_train(batch)
    with torch.no_grad():
        q = module.qf(batch[Columns.OBS].reshape(-1, F), batch[Columns.ACTIONS].reshape(-1, D)).reshape(n, 2)
        q_next = module.forward_target({Columns.OBS: batch[Columns.NEXT_OBS]})
    assert torch.allclose(fwd[QF_PREDS], q, atol=1e-6) and torch.allclose(fwd[QF_TARGET_NEXT], q_next, atol=1e-6)
