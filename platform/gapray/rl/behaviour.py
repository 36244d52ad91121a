"""GIL's behavioural policy (GIL paper Appendix D, Eq. 42).

    beta(s) = pi_theta(s)                 with probability p1 = 1 - p2 - p3
              m (the missing indicator)   with probability p2
              a random importance         with probability p3

Reference choices (``gaoqitong/gradient-importance-learning``):

* one draw per env step decides the branch for the whole ``[B, d]`` action
  (``granularity="step"``); ``"row"`` draws per row instead (our option);
* the random importance draws from two normals truncated to ``[0, 1]``, centred at 0 and 1
  with sigma 0.2. The reference LSTM script takes exactly half of the entries from each,
  shuffled (``seq_lstm_GIL_train.py`` line 345). The reference MLP script asks for
  ``num_input * (timesteps // 2) * batch_size`` entries at 0 and
  ``num_input * (timesteps // 2 + 1) * batch_size`` at 1 with ``timesteps = 1``
  (``tabular_mlp_GIL_train.py`` line 258): ``timesteps // 2 = 0``, so *every* entry comes from
  the normal centred at 1. We draw each entry's mode independently, at 1 with probability
  ``random_share_at_one`` (default 1/2, the LSTM script's share; 1.0 = the MLP script);
* the heuristic is ``a = 1 - missing`` = the *observed* indicator: importance 1 on observed
  entries and 0 on missing ones. ``m`` below follows the gapray convention (1 = observed);
* ``p2`` and ``p3`` decay geometrically per step: tabular ``0.5 / 0.4`` by ``x0.999`` down to
  ``0.3 / 0.2``; LSTM ``0.15 / 0.6`` by ``x0.95`` with no floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

GRANULARITIES = ("step", "row")
BRANCH_ACTOR, BRANCH_HEURISTIC, BRANCH_RANDOM = 0, 1, 2


@dataclass(frozen=True)
class BehaviourPolicyConfig:
    """Settings of Eq. 42. Defaults: the reference's tabular (MLP) script."""

    p2: float = 0.5
    """Initial probability of the missing-mask heuristic ``a = m``."""
    p3: float = 0.4
    """Initial probability of a random importance."""
    p2_decay: float = 0.999
    """Per-step multiplicative decay of ``p2``."""
    p3_decay: float = 0.999
    """Per-step multiplicative decay of ``p3``."""
    p2_floor: float = 0.3
    """``p2`` never decays below this."""
    p3_floor: float = 0.2
    """``p3`` never decays below this."""
    random_sigma: float = 0.2
    """Standard deviation of the two truncated normals (at 0 and at 1) of the random branch."""
    random_share_at_one: float = 0.5
    """Probability that an entry of the random branch comes from the normal centred at 1 (else at
    0). 0.5: half and half (reference LSTM). Reference MLP: 1.0 (its ``timesteps // 2 = 0`` leaves
    no entry at 0, so random actions are all near 1)."""
    granularity: str = "step"
    """``"step"``: one branch per env step (reference); ``"row"``: one branch per row."""

    def __post_init__(self) -> None:
        for name in ("p2", "p3", "p2_floor", "p3_floor"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"BehaviourPolicyConfig.{name} must lie in [0, 1], got {value}")
        if self.p2 + self.p3 > 1.0 + 1e-9:
            raise ValueError(f"BehaviourPolicyConfig: p2 + p3 must be <= 1, got {self.p2} + {self.p3}")
        for name in ("p2_decay", "p3_decay"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"BehaviourPolicyConfig.{name} must lie in (0, 1], got {getattr(self, name)}")
        if self.random_sigma <= 0:
            raise ValueError(f"BehaviourPolicyConfig.random_sigma must be > 0, got {self.random_sigma}")
        if not 0.0 <= self.random_share_at_one <= 1.0:
            raise ValueError(f"BehaviourPolicyConfig.random_share_at_one must lie in [0, 1], "
                             f"got {self.random_share_at_one}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"BehaviourPolicyConfig.granularity must be one of {GRANULARITIES}, "
                             f"got {self.granularity!r}")

    @classmethod
    def tabular(cls, random_share_at_one: float = 0.5) -> BehaviourPolicyConfig:
        """Reference MLP (tabular) probabilities: p3 0.4, p2 0.5, x0.999 per step, floors 0.2 / 0.3
        (``tabular_mlp_GIL_train.py`` lines 30-33, 309-312). Its random branch is the reference's
        with ``random_share_at_one=1.0``; the default keeps half the entries near 0."""
        return cls(random_share_at_one=random_share_at_one)

    @classmethod
    def lstm(cls, random_share_at_one: float = 0.5) -> BehaviourPolicyConfig:
        """Reference LSTM setting: p3 0.6, p2 0.15, x0.95 per step, no floors, random entries half
        near 0 and half near 1 (``seq_lstm_GIL_train.py`` lines 31-34, 345, 399-400)."""
        return cls(p2=0.15, p3=0.6, p2_decay=0.95, p3_decay=0.95, p2_floor=0.0, p3_floor=0.0,
                   random_share_at_one=random_share_at_one)

    def to_dict(self) -> dict:
        return asdict(self)


def behaviour_probabilities(config: BehaviourPolicyConfig, step: int) -> tuple[float, float, float]:
    """``(p1, p2, p3)`` after ``step`` env steps: ``p_k(t) = max(floor_k, p_k decay_k^t)``."""
    p2 = max(config.p2_floor, config.p2 * config.p2_decay ** step) if config.p2 > 0 else 0.0
    p3 = max(config.p3_floor, config.p3 * config.p3_decay ** step) if config.p3 > 0 else 0.0
    total = p2 + p3
    if total > 1.0:  # floors above the decayed values can only shrink the actor's share
        p2, p3 = p2 / total, p3 / total
    return 1.0 - p2 - p3, p2, p3


def random_importance(shape: torch.Size | tuple[int, ...], sigma: float = 0.2,
                      generator: torch.Generator | None = None, share_at_one: float = 0.5) -> torch.Tensor:
    """Entries from ``(1 - q) TN(0, sigma; [0, 1]) + q TN(1, sigma; [0, 1])`` with ``q = share_at_one``
    (inverse-CDF sampling)."""
    mode = (torch.rand(shape, generator=generator) < share_at_one).float()
    # Standardised bounds of [0, 1] around each mode.
    lower = (0.0 - mode) / sigma
    upper = (1.0 - mode) / sigma
    cdf_lo, cdf_hi = torch.special.ndtr(lower), torch.special.ndtr(upper)
    u = cdf_lo + (cdf_hi - cdf_lo) * torch.rand(shape, generator=generator)
    u = u.clamp(1e-7, 1 - 1e-7)
    return (mode + sigma * torch.special.ndtri(u)).clamp(0.0, 1.0)


def behaviour_branches(action_shape: torch.Size | tuple[int, ...], step: int, config: BehaviourPolicyConfig,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The branch of Eq. 42 per step ``[N]`` (or per row ``[N, B]``) for actions of
    ``action_shape`` after ``step`` env steps: 0 actor, 1 heuristic, 2 random.

    Drawn before the actor runs, so that a caller can skip the actor's pass when no step
    (or row) takes the actor's branch."""
    _, p2, p3 = behaviour_probabilities(config, step)
    branch_shape = tuple(action_shape[:1]) if config.granularity == "step" else tuple(action_shape[:-1])
    draw = torch.rand(branch_shape, generator=generator)
    branch = torch.full(branch_shape, BRANCH_ACTOR, dtype=torch.long)
    branch[draw < p3 + p2] = BRANCH_HEURISTIC
    branch[draw < p3] = BRANCH_RANDOM
    return branch


def behaviour_policy(actor_action: torch.Tensor, observed_mask: torch.Tensor, step: int,
                     config: BehaviourPolicyConfig, generator: torch.Generator | None = None,
                     branch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """GIL Eq. 42: mixes the actor's importance, the mask heuristic and random importances.

    Args:
        actor_action: ``[N, B, d]`` (or ``[N, d]``) importance from the actor (plus any noise),
            in ``[0, 1]``; ignored where the branch is not the actor's.
        observed_mask: same shape, 1 where the input entry is observed, 0 where missing.
        step: env steps taken so far (drives the decay of p2 and p3).
        config: the mixture's settings.
        generator: optional torch RNG.
        branch: the branches already drawn by :func:`behaviour_branches` (None: drawn here).

    Returns:
        ``(action, branch)``: the behavioural action (same shape) and the branch chosen per
        step ``[N]`` (or per row ``[N, B]``): 0 actor, 1 heuristic, 2 random.
    """
    if actor_action.shape != observed_mask.shape:
        raise ValueError(f"behaviour_policy: actor action {tuple(actor_action.shape)} and mask "
                         f"{tuple(observed_mask.shape)} differ in shape")
    if branch is None:
        branch = behaviour_branches(actor_action.shape, step, config, generator)
    branch_shape = tuple(branch.shape)
    expand = branch.reshape(*branch_shape, *([1] * (actor_action.ndim - len(branch_shape))))
    action = torch.where(expand == BRANCH_HEURISTIC, observed_mask.to(actor_action.dtype), actor_action)
    if bool((branch == BRANCH_RANDOM).any()):  # drawn only when some step/row takes the random branch
        random_a = random_importance(actor_action.shape, config.random_sigma, generator, config.random_share_at_one)
        action = torch.where(expand == BRANCH_RANDOM, random_a, action)
    return action, branch
