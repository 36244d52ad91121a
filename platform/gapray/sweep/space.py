"""The Tune search space, derived from the model's frozen config dataclass.

Every swept name must be a field of the config dataclass (``DEARIConfig``), so the sweep, the
Python API and the command line speak about the same knobs. A trial's config is the base config
with the sampled fields replaced (:func:`config_from_params`); dataclass validation then runs
exactly as in the API.

Sweep rule for the Bayesian schedule: ``unfreeze_every = "off"`` is the deterministic DEARI
(``bayesian=False``); a number switches on the Bayesian RNN (``bayesian=True``) with that
freeze/unfreeze period (DEARI sec. 4.3) and ``n_samples`` Monte Carlo passes; ``None`` keeps
``DEARIConfig``'s own meaning (Bayesian, sampled at every step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ray import tune

ConfigT = TypeVar("ConfigT")
OFF = "off"


@dataclass(frozen=True)
class SweepSpace:
    """Values each swept ``DEARIConfig`` field may take (field names are the config's own)."""

    n_layers: tuple[int, ...] = tuple(range(1, 11))
    """DEARI depth: number of stacked bidirectional RITS layers (paper 5.5 sweeps 1..10)."""
    dml_margin: tuple[float, float] = (0.05, 0.5)
    """Uniform range of the deep-metric-learning margin (paper 4.2, swept)."""
    unfreeze_every: tuple[int | str | None, ...] = (OFF, 50, 100, 200)
    """Bayesian freeze/unfreeze period in training steps; ``"off"`` = deterministic DEARI. Paper: 100."""
    n_samples: tuple[int, ...] = (5, 10, 20)
    """Monte Carlo samples of the Bayesian RNN per unfrozen step and at inference (paper: 10)."""
    lr: tuple[float, float] = (1e-4, 3e-3)
    """Log-uniform range of Adam's learning rate (reference default 5e-4)."""
    hidden_size: tuple[int, ...] = (32, 64, 108, 128)
    """RNN hidden size; must be divisible by the 4 attention heads (paper tables: 108)."""
    cell: tuple[str, ...] = ("lstm",)
    """Recurrent cell of BRITS Eq. 10 (``lstm`` or ``gru``; DEARI's tables use LSTM)."""
    attention_feedforward: tuple[int, ...] = (2048,)
    """Feed-forward width of the transformer encoders between layers (PyTorch's default 2048 = the paper's)."""


SMOKE_SPACE = SweepSpace(
    n_layers=(1, 2),
    dml_margin=(0.05, 0.5),
    unfreeze_every=(OFF, 2),
    n_samples=(2,),
    lr=(5e-4, 3e-3),
    hidden_size=(16,),
)
"""A tiny space for ``--smoke-test``: shallow, narrow models that train in seconds on a CPU."""

DEMO_SPACE = SweepSpace(
    n_layers=(1, 2),
    dml_margin=(0.05, 0.5),
    unfreeze_every=(OFF, 50),
    n_samples=(5,),
    lr=(2e-3, 8e-3),
    hidden_size=(64,),
    cell=("gru",),
    attention_feedforward=(128,),
)
"""The ``--demo`` space: 1-2 GRU layers of 64 units, deterministic or Bayesian (unfrozen every 50 steps,
about once per epoch of the demo's batches of 32, with 5 Monte Carlo passes), learning rates high enough to
beat LOCF within the demo's few epochs."""

DEMO_FIRST_CONFIGS: tuple[dict[str, Any], ...] = (
    {"n_layers": 1, "unfreeze_every": OFF, "lr": 4e-3},
    {"n_layers": 1, "unfreeze_every": 50, "lr": 4e-3},
)
"""The demo's first two trials (Tune's ``points_to_evaluate``; their other fields and the later trials are
sampled): one deterministic and one Bayesian 1-layer config, which beat LOCF on validation after 2 epochs
(see ``DEMO_VALUES``), so a result is there early however the random draws fall."""

RUN_NAME_PARTS: tuple[tuple[str, str], ...] = (
    ("n_layers", "d"), ("hidden_size", "h"), ("dml_margin", "m"), ("unfreeze_every", "u"), ("lr", "lr"),
)
"""Config fields shown in a trial's run name, with their short prefixes (``d2-h64-m0.24-u10-lr5.1e-3``)."""


_LOG_UNIFORM = frozenset({"lr"})
_UNIFORM = frozenset({"dml_margin"})


def _domain(name: str, values: tuple[Any, ...]) -> Any:
    if name in _LOG_UNIFORM:
        low, high = values
        return tune.loguniform(low, high)
    if name in _UNIFORM:
        low, high = values
        return tune.uniform(low, high) if high > low else low
    return tune.choice(list(values)) if len(values) > 1 else values[0]


def space_for(preset: str | None) -> SweepSpace:
    """The default space of a settings preset (``"smoke"``, ``"demo"`` or None for the full space)."""
    return {"smoke": SMOKE_SPACE, "demo": DEMO_SPACE}.get(preset or "", SweepSpace())


def first_configs(preset: str | None) -> list[dict[str, Any]]:
    """The configs a preset's sweep tries first (copies; empty for the full space)."""
    return [dict(config) for config in DEMO_FIRST_CONFIGS] if preset == "demo" else []


def _short(name: str, value: Any) -> str:
    if name in _LOG_UNIFORM and isinstance(value, int | float):
        mantissa, _, exponent = f"{value:.1e}".partition("e")
        return f"{mantissa}e{int(exponent)}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return str(value)


def run_name(params: Mapping[str, Any]) -> str:
    """A trial's MLflow run name from its config, e.g. ``d2-h64-m0.24-u10-lr5.1e-3`` (fields absent are left out)."""
    return "-".join(f"{prefix}{_short(name, params[name])}" for name, prefix in RUN_NAME_PARTS if name in params)


def describe_space(space: SweepSpace) -> dict[str, Any]:
    """The space as plain JSON-ready values, with the sampling rule of each field."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(space):
        values = list(getattr(space, item.name))
        rule = ("loguniform" if item.name in _LOG_UNIFORM else "uniform" if item.name in _UNIFORM
                else "choice" if len(values) > 1 else "fixed")
        out[item.name] = {"sample": rule, "values": values if rule in ("choice", "fixed") else None,
                          "range": values if rule in ("loguniform", "uniform") else None}
        out[item.name] = {k: v for k, v in out[item.name].items() if v is not None}
    return out


def param_space(config_class: type, space: SweepSpace) -> dict[str, Any]:
    """Tune ``param_space`` for ``space``; every key is checked against ``config_class``'s fields."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    out: dict[str, Any] = {}
    for item in dataclasses.fields(space):
        if item.name not in fields:
            raise ValueError(f"swept name {item.name!r} is not a field of {config_class.__name__} "
                             f"(fields: {sorted(fields)})")
        values = getattr(space, item.name)
        if not values:
            raise ValueError(f"sweep space field {item.name!r} is empty")
        out[item.name] = _domain(item.name, tuple(values))
    return out


def config_from_params(base: ConfigT, params: Mapping[str, Any]) -> ConfigT:
    """``base`` with the sampled ``params`` applied (and ``bayesian`` following ``unfreeze_every``)."""
    fields = {f.name for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(f"trial params {unknown} are not fields of {type(base).__name__}")
    changes = dict(params)
    if "unfreeze_every" in changes and "bayesian" in fields and "bayesian" not in changes:
        off = changes["unfreeze_every"] == OFF
        changes["bayesian"] = not off
        changes["unfreeze_every"] = None if off else changes["unfreeze_every"]
    return dataclasses.replace(base, **changes)  # type: ignore[type-var]
