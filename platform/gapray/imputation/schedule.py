"""The freeze/unfreeze training schedule of Bayesian BRITS/DEARI (DEARI sec. 4.3).

Frozen (the default, every step but the sampling ones): the posterior means act as a regular
network and the step trains them on the ordinary loss ("freeze exploits the best model").
Every ``unfreeze_every``-th optimisation step (paper: 100) is a sampling step ("unfreeze
investigates uncertainty"): ``n_samples`` (paper: 10) weight samples run as one batched pass,
the step trains on the mean of their losses plus ``kl_coefficient * KL(q || prior)`` (Bayes by
Backprop, Eq. 26). ``unfreeze_every=None`` never samples: a deterministic model.

Steps are counted from 0; step ``s`` samples when ``(s + 1) % unfreeze_every == 0``, i.e. the
100th, 200th, ... optimisation step.
"""

from __future__ import annotations

from dataclasses import dataclass

from gapray.imputation.bayesian import KLScheme, minibatch_kl_weight


@dataclass(frozen=True)
class FreezeSchedule:
    """When to sample Bayesian weights during training, how many, and how to weight the KL."""

    unfreeze_every: int | None = 100
    """Sample every this many optimisation steps (paper: 100); None: never (deterministic)."""
    n_samples: int = 10
    """Weight samples (Monte Carlo simulations) per sampling step (paper: 10)."""
    kl_weight: float = 1.0
    """Multiplier of the KL term on top of the minibatch weighting."""
    kl_scheme: KLScheme = "uniform"
    """Minibatch KL weighting (Blundell et al. 2015): ``uniform`` 1/M or ``blundell`` pi_i."""

    def __post_init__(self) -> None:
        if self.unfreeze_every is not None and self.unfreeze_every < 1:
            raise ValueError(f"unfreeze_every must be >= 1 or None, got {self.unfreeze_every}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if self.kl_scheme not in ("uniform", "blundell"):
            raise ValueError(f"kl_scheme must be 'uniform' or 'blundell', got {self.kl_scheme!r}")

    @property
    def deterministic(self) -> bool:
        return self.unfreeze_every is None

    def is_sampling_step(self, step: int) -> bool:
        """Whether optimisation step ``step`` (0-based) trains on sampled weights."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.unfreeze_every is not None and (step + 1) % self.unfreeze_every == 0

    def samples_for_step(self, step: int) -> int:
        """Weight samples for ``step``: ``n_samples`` on sampling steps, 0 (frozen) otherwise."""
        return self.n_samples if self.is_sampling_step(step) else 0

    def kl_coefficient(self, batch_index: int, num_batches: int, dataset_size: int = 1) -> float:
        """Factor of ``KL(q || prior)`` in the loss of minibatch ``batch_index`` of ``num_batches``.

        ``kl_weight * pi_i * num_batches / dataset_size``. Bayes by Backprop's minibatch loss is
        ``pi_i KL + sum of the batch's data terms`` (Blundell et al. 2015, sec. 3.4; ``pi_i``
        from :func:`gapray.imputation.bayesian.minibatch_kl_weight`, summing to 1 over the
        epoch). BRITS's data term is a *mean* over the batch's entries, i.e. the sum divided by
        about ``dataset_size / num_batches`` entries (``dataset_size``: observed training
        entries); dividing the KL by the same count gives ``pi_i * num_batches / dataset_size``,
        which is ``1 / dataset_size`` for the uniform scheme: the per-entry ELBO. (Before, the KL
        was divided by both ``num_batches`` and ``dataset_size``: ``num_batches`` times too weak,
        50x on PhysioNet.) The reference port's ``1 / (2^N - 1)`` is a bug (see
        ``minibatch_kl_weight``).
        """
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
        share = minibatch_kl_weight(batch_index, num_batches, self.kl_scheme)
        return self.kl_weight * share * num_batches / dataset_size
