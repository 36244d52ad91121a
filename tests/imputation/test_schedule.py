"""Freeze/unfreeze schedule of Bayesian training (DEARI sec. 4.3)."""

from __future__ import annotations

import pytest

from gapray.imputation.schedule import FreezeSchedule


def test_sampling_happens_at_exactly_every_nth_step() -> None:
    schedule = FreezeSchedule(unfreeze_every=100, n_samples=10)
    sampling = [s for s in range(450) if schedule.is_sampling_step(s)]
    assert sampling == [99, 199, 299, 399]
    assert schedule.samples_for_step(99) == 10 and schedule.samples_for_step(100) == 0
    every_step = FreezeSchedule(unfreeze_every=1, n_samples=3)
    assert all(every_step.is_sampling_step(s) for s in range(5))


def test_none_is_deterministic() -> None:
    schedule = FreezeSchedule(unfreeze_every=None)
    assert schedule.deterministic and not any(schedule.is_sampling_step(s) for s in range(1000))


def test_kl_coefficient_is_the_per_entry_elbo_weight() -> None:
    """Uniform: each minibatch's mean data term gets KL / (observed entries), whatever the number
    of minibatches; Blundell: pi_i * M / N, and over an epoch the batches' KL shares still sum
    to the whole KL once (times the batch's share 1/M of the data)."""
    schedule = FreezeSchedule(kl_weight=2.0, kl_scheme="uniform")
    assert schedule.kl_coefficient(0, 4, dataset_size=10) == pytest.approx(2.0 / 10)
    assert schedule.kl_coefficient(3, 50, dataset_size=10) == pytest.approx(2.0 / 10)
    blundell = FreezeSchedule(kl_weight=1.0, kl_scheme="blundell")
    assert blundell.kl_coefficient(0, 3) == pytest.approx(4 / 7 * 3)
    assert sum(blundell.kl_coefficient(i, 3, dataset_size=6) / 3 for i in range(3)) == pytest.approx(1 / 6)


@pytest.mark.parametrize("kwargs", [{"unfreeze_every": 0}, {"n_samples": 0}, {"kl_weight": -1.0}, {"kl_scheme": "x"}])
def test_invalid_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FreezeSchedule(**kwargs)
