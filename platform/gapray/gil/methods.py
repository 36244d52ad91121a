"""Named training methods for GIL comparisons: each maps ``(task, config)`` to test scores.

The registry is the hook for rows computed elsewhere: the RL helper registers ``GIL`` and
``GIL-D`` with :func:`register_method` (e.g. in a module that ``benchmarks/gil.py --extra-rows``
imports), and every benchmark table picks them up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from gapray.gil.baselines import train_imputed
from gapray.gil.datasets import GILTask
from gapray.gil.training import GILTrainer, TrainingConfig

Method = Callable[[GILTask, TrainingConfig], dict[str, float]]
METHODS: dict[str, Method] = {}


def register_method(name: str, method: Method) -> Method:
    """Add (or replace) the method called ``name``; returns it."""
    METHODS[name] = method
    return method


def policy_method(policy: str, placeholder: str | float | None = None) -> Method:
    """Train with ``policy`` (optionally forcing the placeholder) and return the test scores."""
    def run(task: GILTask, config: TrainingConfig) -> dict[str, float]:
        if placeholder is not None:
            config = dataclasses.replace(config, placeholder=placeholder)
        return GILTrainer(config).fit(task, policy).test

    return run


def imputed_method(imputer: str, **imputer_config: object) -> Method:
    """Impute with ``imputer`` (config overrides for DEARI/BRITS), train with ``ones``, return test scores."""

    def run(task: GILTask, config: TrainingConfig) -> dict[str, float]:
        return train_imputed(task, imputer, config, dict(imputer_config)).test

    return run


register_method("zero-impute (ones)", policy_method("ones", "zero"))
register_method("GIL-H (mask)", policy_method("mask"))  # reference placeholder: 0 (MLP), 3 x max (LSTM)
register_method("mean-impute", imputed_method("mean"))
register_method("deari-impute", imputed_method("deari"))
