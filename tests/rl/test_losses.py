"""DDPG losses against hand-computed values; Polyak averaging; TD3's delayed actor update."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

from gapray.rl import DDPGConfig
from gapray.rl.learner import POLICY_OPTIMIZER, QF_OPTIMIZER, compounded_tau

MID = "default_policy"
OBS_SPACE = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def _set_linear(layer: torch.nn.Linear, weight: float, bias: float) -> None:
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)


def tiny_learner(**training):
    """A learner with 1-unit networks set by hand:
    mu(s) = tanh(0.5 relu(s)),  Q(s, a) = relu(s + 2a) + 0.5 (targets identical)."""
    config = (DDPGConfig()
              .training(actor_hiddens=(1,), critic_hiddens=(1,), actor_batch_norm=False, critic_batch_norm=False,
                        actor_output="tanh", gamma=0.9, **training))
    learner = config.build_learner(spaces={MID: (OBS_SPACE, ACT_SPACE)})
    module = learner.module[MID].unwrapped()
    _set_linear(module.pi.body[0][0], 1.0, 0.0)
    _set_linear(module.pi.out, 0.5, 0.0)
    _set_linear(module.qf.state_join, 1.0, 0.0)
    with torch.no_grad():
        module.qf.action_branch.weight.fill_(2.0)
    _set_linear(module.qf.out, 1.0, 0.5)
    if config.twin_q:
        module.qf_twin.load_state_dict(module.qf.state_dict())
    module.make_target_networks()
    return learner, module, config


def tiny_batch() -> dict[str, torch.Tensor]:
    return {
        Columns.OBS: torch.tensor([[1.0], [2.0]]),
        Columns.ACTIONS: torch.tensor([[0.5], [-0.5]]),
        Columns.REWARDS: torch.tensor([1.0, -1.0]),
        Columns.NEXT_OBS: torch.tensor([[2.0], [0.0]]),
        Columns.TERMINATEDS: torch.tensor([False, True]),
    }


def test_critic_and_actor_losses_match_hand_computed_values():
    learner, module, config = tiny_learner()
    batch = tiny_batch()
    fwd = module.forward_train(batch)
    loss = learner.compute_loss_for_module(module_id=MID, config=config, batch=batch, fwd_out=fwd)

    q1, q2 = (1 + 1) + 0.5, (2 - 1) + 0.5                  # Q(s, a) of the replayed actions
    y1 = 1.0 + 0.9 * (2 + 2 * math.tanh(1.0) + 0.5)         # r + gamma Q'(s', mu'(s')), mu'(2) = tanh(1)
    y2 = -1.0                                               # terminal: r only
    expected_critic = ((q1 - y1) ** 2 + (q2 - y2) ** 2) / 2
    q_pi_1 = 1 + 2 * math.tanh(0.5) + 0.5                   # Q(1, mu(1))
    q_pi_2 = 2 + 2 * math.tanh(1.0) + 0.5                   # Q(2, mu(2))
    expected_actor = -(q_pi_1 + q_pi_2) / 2

    critic = learner._temp_losses[(MID, QF_OPTIMIZER)]
    actor = learner._temp_losses[(MID, POLICY_OPTIMIZER)]
    assert critic.item() == pytest.approx(expected_critic, rel=1e-5)
    assert actor.item() == pytest.approx(expected_actor, rel=1e-5)
    assert loss.item() == pytest.approx(expected_critic + expected_actor, rel=1e-5)


def test_actor_gradient_leaves_critic_gradient_untouched():
    """The actor's backward pass must not leak into the critic's gradient (and vice versa)."""
    learner, module, config = tiny_learner()
    batch = tiny_batch()
    loss = learner.compute_loss_for_module(module_id=MID, config=config, batch=batch,
                                           fwd_out=module.forward_train(batch))
    critic_only = torch.autograd.grad(learner._temp_losses[(MID, QF_OPTIMIZER)], list(module.qf.parameters()),
                                      retain_graph=True)
    grads = learner.compute_gradients({MID: loss})
    for p, expected in zip(module.qf.parameters(), critic_only):
        assert torch.allclose(grads[learner.get_param_ref(p)], expected)
    # dL_actor/dw_out of the actor: -mean(dQ/da * dmu/dw) with dQ/da = 2 on the active branch.
    s = torch.tensor([1.0, 2.0])
    dmu_dw = (1 - torch.tanh(0.5 * s) ** 2) * s
    assert grads[learner.get_param_ref(module.pi.out.weight)].item() == pytest.approx(-(2 * dmu_dw).mean().item(),
                                                                                       rel=1e-5)


def test_td3_delays_actor_updates_and_uses_min_of_twin_targets():
    learner, module, config = tiny_learner(twin_q=True, policy_delay=2)
    batch = tiny_batch()
    actor_ids = {learner.get_param_ref(p) for p in module.pi.parameters()}
    seen = []
    for _ in range(3):
        loss = learner.compute_loss_for_module(module_id=MID, config=config, batch=batch,
                                               fwd_out=module.forward_train(batch))
        seen.append(bool(actor_ids & set(learner.compute_gradients({MID: loss}))))
    assert seen == [True, False, True]
    with torch.no_grad():
        module.target_qf_twin.out.bias.fill_(-100.0)  # the twin is now far lower: min picks it
    target = module.forward_target({Columns.OBS: torch.tensor([[2.0]])})
    assert target.item() == pytest.approx(2 + 2 * math.tanh(1.0) - 100.0, rel=1e-5)


def test_polyak_update_moves_targets_by_tau():
    learner, module, _ = tiny_learner(tau=0.25)
    with torch.no_grad():
        for net in (module.pi, module.qf):
            for p in net.parameters():
                p.fill_(4.0)
        for net in (module.target_pi, module.target_qf):
            for p in net.parameters():
                p.fill_(0.0)
    learner.after_gradient_based_update(timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 1})
    for net in (module.target_pi, module.target_qf):
        for p in net.parameters():
            assert torch.allclose(p, torch.full_like(p, 1.0))      # 0.25 * 4 + 0.75 * 0
    learner.after_gradient_based_update(timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 2})
    for p in module.target_qf.parameters():
        assert torch.allclose(p, torch.full_like(p, 1.75))         # 0.25 * 4 + 0.75 * 1


def test_reference_critic_join_is_additive_in_state_and_action():
    """The GIL reference sums the branches after their ReLUs: dQ/da cannot depend on s.
    Lillicrap's join (our default) lets it."""
    from gapray.rl.networks import Critic

    torch.manual_seed(0)
    s, a = torch.randn(64, 3), torch.randn(64, 2, requires_grad=True)
    for join, state_dependent in (("post_activation", False), ("pre_activation", True)):
        critic = Critic(3, 2, (16, 8), batch_norm=False, last_init_std=None, join=join)
        a_fixed = a[:1].detach().expand(64, 2).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(s, a_fixed).sum(), a_fixed)
        assert (grad.std(dim=0).max().item() > 1e-4) == state_dependent


def test_critic_l2_adds_the_reference_decay_to_the_critic_loss_and_gradient():
    """critic_l2 = 0.01 (the reference's) on the join weight (1), its bias (0.3: no BatchNorm after
    it), the action weight (2) and the output bias (0.5), not the output weight: the loss grows by
    0.01 * (1 + 0.09 + 4 + 0.25) / 2 and each of those gradients by 0.01 * w."""
    critic_losses, grads = [], []
    for l2 in (0.0, 0.01):
        learner, module, config = tiny_learner(critic_l2=l2)
        with torch.no_grad():
            module.qf.state_join.bias.fill_(0.3)
        batch = tiny_batch()
        learner.compute_loss_for_module(module_id=MID, config=config, batch=batch, fwd_out=module.forward_train(batch))
        loss = learner._temp_losses[(MID, QF_OPTIMIZER)]
        critic_losses.append(loss.item())
        names, params = zip(*module.qf.named_parameters())
        grads.append(dict(zip(names, torch.autograd.grad(loss, params))))
    assert critic_losses[1] - critic_losses[0] == pytest.approx(0.01 * (1 + 0.09 + 4 + 0.25) / 2, rel=1e-4)
    expected = {"state_join.weight": 0.01, "state_join.bias": 0.003, "action_branch.weight": 0.02,
                "out.weight": 0.0, "out.bias": 0.005}
    assert set(grads[1]) == set(expected)
    for name, value in expected.items():
        assert (grads[1][name] - grads[0][name]).item() == pytest.approx(value, abs=1e-6), name


def test_in_place_polyak_update_matches_rllibs_state_dict_update():
    """Parameters and BatchNorm statistics (running mean/var, the integer batch count)."""
    import copy

    from ray.rllib.utils.torch_utils import update_target_network

    from gapray.rl.learner import polyak_update
    from gapray.rl.networks import Critic

    torch.manual_seed(0)
    main = Critic(5, 2, (8, 8), batch_norm=True, last_init_std=1e-3)
    for _ in range(3):
        main(torch.randn(16, 5), torch.randn(16, 2))              # moves the running statistics
    target = Critic(5, 2, (8, 8), batch_norm=True, last_init_std=1e-3)
    ours = copy.deepcopy(target)
    update_target_network(main, target, 0.3)
    polyak_update(main, ours, 0.3)
    for (key, expected), actual in zip(target.state_dict().items(), ours.state_dict().values()):
        assert expected.dtype == actual.dtype, key
        assert torch.allclose(expected.double(), actual.double(), rtol=1e-6, atol=1e-7), key


def test_polyak_compounds_over_the_gradient_steps_of_one_learner_call():
    """A learner call of n gradient steps moves the targets as n Polyak steps toward fixed
    weights would: by 1 - (1 - tau)^n."""
    assert compounded_tau(0.25, 1) == 0.25
    assert compounded_tau(0.25, 2) == pytest.approx(1 - 0.75 ** 2)
    learner, module, _ = tiny_learner(tau=0.25)
    with torch.no_grad():
        for p in module.qf.parameters():
            p.fill_(4.0)
        for p in module.target_qf.parameters():
            p.fill_(0.0)
    learner._num_critic_updates[MID] += 2                      # two gradient steps in this call
    learner.after_gradient_based_update(timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 1})
    for p in module.target_qf.parameters():
        assert torch.allclose(p, torch.full_like(p, 4.0 * (1 - 0.75 ** 2)))   # 1.75
    learner._num_critic_updates[MID] += 1                      # then a call of one step: plain tau
    learner.after_gradient_based_update(timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 2})
    for p in module.target_qf.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.25 * 4.0 + 0.75 * 1.75))


@pytest.mark.parametrize("poison", [None, float("nan"), float("inf")])
def test_apply_gradients_matches_rllibs_path_with_finite_and_non_finite_gradients(poison):
    """The fused finite check takes the fast path only when every gradient is finite; a nan or
    inf gradient goes through RLlib's own handling (by default: set to zero, then step)."""
    from ray.rllib.core.learner.torch.torch_learner import TorchLearner

    results = []
    for apply in ("ours", "rllib"):
        learner, module, _ = tiny_learner()
        before = {name: p.detach().clone() for name, p in module.named_parameters()}
        torch.manual_seed(0)
        grads = {pid: torch.randn_like(p) for pid, p in learner._params.items()}
        if poison is not None:
            first = next(iter(grads))
            grads[first].view(-1)[0] = poison
        if apply == "ours":
            learner.apply_gradients(grads)
        else:
            TorchLearner.apply_gradients(learner, grads)
        results.append({name: p.detach().clone() for name, p in module.named_parameters()})
        assert any(not torch.equal(results[-1][name], before[name]) for name in before)   # the optimizers stepped
    assert results[0].keys() == results[1].keys()
    for name in results[0]:
        assert torch.equal(results[0][name], results[1][name]), name
        assert torch.isfinite(results[0][name]).all(), name
