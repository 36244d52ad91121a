"""GIL's behavioural policy (Eq. 42): branch frequencies, decay to floors, the branches' actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from gapray.rl import BehaviourPolicyConfig, DDPGConfig, behaviour_policy, behaviour_probabilities
from gapray.rl.behaviour import BRANCH_ACTOR, BRANCH_HEURISTIC, BRANCH_RANDOM, random_importance


def test_branch_frequencies_match_p1_p2_p3():
    config = BehaviourPolicyConfig(p2=0.5, p3=0.3)
    gen = torch.Generator().manual_seed(0)
    n = 20_000
    actor = torch.full((n, 2, 3), 0.25)
    mask = torch.randint(0, 2, (n, 2, 3)).float()
    action, branch = behaviour_policy(actor, mask, step=0, config=config, generator=gen)
    freq = torch.bincount(branch, minlength=3).float() / n
    assert freq[BRANCH_ACTOR].item() == pytest.approx(0.2, abs=0.015)
    assert freq[BRANCH_HEURISTIC].item() == pytest.approx(0.5, abs=0.015)
    assert freq[BRANCH_RANDOM].item() == pytest.approx(0.3, abs=0.015)
    # Each branch writes its own action over the whole step.
    assert torch.equal(action[branch == BRANCH_ACTOR], actor[branch == BRANCH_ACTOR])
    assert torch.equal(action[branch == BRANCH_HEURISTIC], mask[branch == BRANCH_HEURISTIC])
    random_rows = action[branch == BRANCH_RANDOM]
    assert not torch.isin(random_rows, torch.tensor([0.25])).all()


def test_row_granularity_draws_one_branch_per_row():
    config = BehaviourPolicyConfig(p2=0.5, p3=0.5, granularity="row")
    _, branch = behaviour_policy(torch.zeros(4000, 3, 2), torch.ones(4000, 3, 2), 0, config,
                                 torch.Generator().manual_seed(1))
    assert branch.shape == (4000, 3)
    mixed_steps = (branch.min(dim=1).values != branch.max(dim=1).values).float().mean().item()
    assert mixed_steps == pytest.approx(0.75, abs=0.03)   # 1 - P(all 3 rows agree) = 1 - 2 * 0.5^3


def test_probabilities_decay_geometrically_to_floors():
    config = BehaviourPolicyConfig.tabular()
    assert behaviour_probabilities(config, 0) == pytest.approx((0.1, 0.5, 0.4))
    _, p2, p3 = behaviour_probabilities(config, 100)
    assert p2 == pytest.approx(0.5 * 0.999 ** 100) and p3 == pytest.approx(0.4 * 0.999 ** 100)
    assert behaviour_probabilities(config, 100_000) == pytest.approx((0.5, 0.3, 0.2))
    lstm = BehaviourPolicyConfig.lstm()
    assert behaviour_probabilities(lstm, 0) == pytest.approx((0.25, 0.15, 0.6))
    assert behaviour_probabilities(lstm, 200)[0] == pytest.approx(1.0, abs=1e-4)   # no floor: all actor
    # Empirical frequencies follow the decayed probabilities.
    _, branch = behaviour_policy(torch.zeros(20_000, 1, 1), torch.ones(20_000, 1, 1), 700, config,
                                 torch.Generator().manual_seed(2))
    expected = behaviour_probabilities(config, 700)
    freq = torch.bincount(branch, minlength=3).float() / 20_000
    assert freq.tolist() == pytest.approx(list(expected), abs=0.015)


def test_random_importance_is_bimodal_in_unit_interval():
    x = random_importance((50_000,), sigma=0.2, generator=torch.Generator().manual_seed(3))
    assert x.min() >= 0 and x.max() <= 1
    assert (x < 0.5).float().mean().item() == pytest.approx(0.5, abs=0.01)
    # Half-normal with sigma 0.2 around each mode: E|x - mode| = 0.2 * sqrt(2 / pi) ~ 0.160.
    distance = torch.minimum(x, 1 - x)
    assert distance.mean().item() == pytest.approx(0.2 * np.sqrt(2 / np.pi), abs=0.01)


def test_reference_mlp_random_branch_draws_every_entry_near_one():
    """The reference MLP script's ``timesteps // 2 = 0`` leaves no entry at 0: every random entry
    comes from TN(1, 0.2) on [0, 1], mean 1 - 0.2 * 2 phi(0) = 0.84042, P(< 0.5) =
    (Phi(-2.5) - Phi(-5)) / (1/2 - Phi(-5)) = 0.01242; the default draws half near 0."""
    gen = torch.Generator().manual_seed(4)
    only_random = {"p2": 0.0, "p3": 1.0}
    reference = BehaviourPolicyConfig(**only_random, random_share_at_one=1.0)
    assert BehaviourPolicyConfig.tabular(random_share_at_one=1.0).random_share_at_one == 1.0
    action, branch = behaviour_policy(torch.zeros(2000, 4, 8), torch.ones(2000, 4, 8), 0, reference, gen)
    assert bool((branch == BRANCH_RANDOM).all())
    assert action.mean().item() == pytest.approx(0.84042, abs=0.003)
    assert (action < 0.5).float().mean().item() == pytest.approx(0.01242, abs=0.002)
    default, _ = behaviour_policy(torch.zeros(2000, 4, 8), torch.ones(2000, 4, 8), 0,
                                  BehaviourPolicyConfig(**only_random), gen)
    assert (default < 0.5).float().mean().item() == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="random_share_at_one"):
        BehaviourPolicyConfig(random_share_at_one=1.5)


def test_invalid_configs_are_rejected():
    with pytest.raises(ValueError, match="p2 \\+ p3"):
        BehaviourPolicyConfig(p2=0.7, p3=0.5)
    with pytest.raises(ValueError, match="granularity"):
        BehaviourPolicyConfig(granularity="batch")
    config = DDPGConfig().environment(observation_space=gym.spaces.Box(0, 1, (2, 4)),
                                      action_space=gym.spaces.Box(0, 1, (2, 2)))
    config.exploration(behaviour_policy=BehaviourPolicyConfig())
    with pytest.raises(ValueError, match="observed_mask_slice"):
        config.validate()


def test_module_exploration_uses_the_mask_columns_of_the_observation():
    """p2 = 1: the behavioural action is the observed-indicator read from the mask slice."""
    obs_space = gym.spaces.Box(-1.0, 1.0, (3, 6), np.float32)      # row = (x[2], m[2], zeta, y_hat)
    act_space = gym.spaces.Box(0.0, 1.0, (3, 2), np.float32)
    config = (DDPGConfig().training(actor_hiddens=(8,), critic_hiddens=(8,))
              .exploration(behaviour_policy=BehaviourPolicyConfig(p2=1.0, p3=0.0, p2_floor=1.0, p3_floor=0.0),
                           observed_mask_slice=slice(2, 4)))
    learner = config.build_learner(spaces={"default_policy": (obs_space, act_space)})
    module = learner.module["default_policy"].unwrapped()
    obs = torch.rand(5, 3, 6) * 2 - 1
    obs[..., 2:4] = torch.randint(0, 2, (5, 3, 2)).float()
    out = module.forward_exploration({Columns.OBS: obs}, t=10)
    assert torch.equal(out[Columns.ACTIONS], obs[..., 2:4])


def _matrix_module(behaviour: BehaviourPolicyConfig, **exploration):
    obs_space = gym.spaces.Box(-1.0, 1.0, (3, 6), np.float32)
    act_space = gym.spaces.Box(0.0, 1.0, (3, 2), np.float32)
    config = (DDPGConfig().training(actor_hiddens=(8,), critic_hiddens=(8,))
              .exploration(behaviour_policy=behaviour, observed_mask_slice=slice(2, 4), **exploration))
    return config.build_learner(spaces={"default_policy": (obs_space, act_space)}).module["default_policy"].unwrapped()


def test_actor_pass_is_skipped_only_when_its_action_would_be_discarded():
    calls = []

    def counting(module):
        act = module.pi.act
        module.pi.act = lambda state: (calls.append(state.shape[0]), act(state))[1]
        return module

    obs = torch.rand(1, 3, 6)
    heuristic = counting(_matrix_module(BehaviourPolicyConfig(p2=1.0, p3=0.0, p2_floor=1.0, p3_floor=0.0)))
    heuristic.forward_exploration({Columns.OBS: obs}, t=5)
    random = counting(_matrix_module(BehaviourPolicyConfig(p2=0.0, p3=1.0, p2_floor=0.0, p3_floor=1.0)))
    action = random.forward_exploration({Columns.OBS: obs}, t=5)[Columns.ACTIONS]
    assert calls == [] and action.shape == (1, 3, 2) and torch.all((action >= 0) & (action <= 1))
    warm_up = counting(_matrix_module(BehaviourPolicyConfig(), initial_random_steps=10))
    assert warm_up.forward_exploration({Columns.OBS: obs}, t=5)[Columns.ACTIONS].shape == (1, 3, 2)
    assert calls == []
    actor = counting(_matrix_module(BehaviourPolicyConfig(p2=0.0, p3=0.0, p2_floor=0.0, p3_floor=0.0), noise="none"))
    actor.eval()
    action = actor.forward_exploration({Columns.OBS: obs}, t=5)[Columns.ACTIONS]
    assert calls == [3]                                         # the 3 rows of the one step
    assert torch.equal(action, actor.forward_inference({Columns.OBS: obs})[Columns.ACTIONS])
