"""The actor's acting path (:meth:`gapray.rl.networks.Actor.act`): BatchNorm folded into the
linear layers with the running statistics."""

from __future__ import annotations

import pytest
import torch

from gapray.rl.networks import Actor, Critic


def trained_actor(output: str, batch_norm: bool = True) -> Actor:
    """An actor whose BatchNorm layers hold non-trivial running statistics and affine terms."""
    torch.manual_seed(0)
    actor = Actor(6, 3, (16, 8), batch_norm=batch_norm, output=output, low=torch.tensor([-2.0, 0.0, 0.5]),
                  high=torch.tensor([2.0, 1.0, 3.0]), last_init_std=None)
    with torch.no_grad():
        for module in actor.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-1.0, 1.0)
    actor.train()
    for _ in range(20):                          # running statistics from shifted, scaled batches
        actor(3.0 * torch.randn(32, 6) + 1.5)
    return actor


@pytest.mark.parametrize("output", ["sigmoid", "tanh"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_act_equals_the_eval_mode_forward(output: str, batch_norm: bool) -> None:
    actor = trained_actor(output, batch_norm)
    state = 3.0 * torch.randn(50, 6) + 1.5
    fast = actor.act(state)
    actor.eval()
    with torch.no_grad():
        reference = actor(state)
    assert torch.allclose(fast, reference, atol=1e-5, rtol=1e-5)
    assert torch.all(fast >= actor.low) and torch.all(fast <= actor.high)


def test_act_uses_running_statistics_in_training_mode_and_leaves_them_unchanged() -> None:
    actor = trained_actor("sigmoid")
    norm = actor.body[0][1]
    running_mean = norm.running_mean.clone()
    state = torch.randn(40, 6)
    actor.train()
    together = actor.act(state)
    alone = torch.cat([actor.act(state[i:i + 1]) for i in range(len(state))])
    assert torch.allclose(together, alone, atol=1e-6)        # a row's action ignores the other rows
    assert torch.equal(norm.running_mean, running_mean)      # acting does not update the statistics
    assert actor.training
    with torch.no_grad():
        batch_statistics = actor(state)
    assert not torch.allclose(together, batch_statistics, atol=1e-3)   # differs from train-mode forward
    assert not together.requires_grad


@pytest.mark.parametrize(("join", "batch_norm", "expected"), [
    ("post_activation", True, {"state_body.0.0.weight", "state_body.1.0.weight", "action_branch.0.weight",
                               "out.bias"}),
    ("pre_activation", False, {"state_body.0.0.weight", "state_body.0.0.bias", "state_join.weight",
                               "state_join.bias", "action_branch.weight", "out.bias"}),
])
def test_critic_l2_covers_the_tensors_slim_regularises(join: str, batch_norm: bool, expected: set[str]) -> None:
    """The reference's qnetwork.py: hidden weights, biases only where no BatchNorm follows (slim
    creates none there), the output bias but not the output weight, never BatchNorm's parameters."""
    torch.manual_seed(0)
    critic = Critic(5, 3, (8, 6), batch_norm=batch_norm, last_init_std=None, join=join)
    names = {id(p): n for n, p in critic.named_parameters()}
    assert {names[id(p)] for p in critic.regularized_parameters()} == expected
    params = dict(critic.named_parameters())
    hand = sum(float(params[n].detach().pow(2).sum()) for n in expected) / 2
    assert critic.l2_penalty().item() == pytest.approx(hand, rel=1e-6)
