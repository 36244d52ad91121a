"""Resumable training runs: one checkpoint file per run, outside the repository, saved every epoch.

A long run (DEARI to early stopping is hours on a CPU) must survive the end of a session and a
``SIGKILL``. :meth:`RecurrentImputer.fit` saves the whole training state atomically after every
epoch when given a ``checkpoint_path`` (weights, Adam state, early-stopping state, per-epoch
history with timings; shuffling, dropout and Bayesian sampling are seeded per epoch and the
freeze schedule counts global steps, so no RNG stream needs saving). This module names the
files and resumes from them:

- :func:`run_dir` is ``$GAPRAY_CACHE_DIR/runs/<kind>/<name>`` (default ``~/.cache/gapray/...``);
- :func:`resume_or_start` returns the saved model when a checkpoint exists (its configuration
  must match the requested one, except the fields in :data:`RESUMABLE_CHANGES`), else the new
  model unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from gapray.data.cache import cache_root

#: Config fields that may differ between the interrupted run and its continuation: where it runs,
#: the per-call time budget, the epoch limit (raising it continues a run that hit it) and the
#: early-stopping patience (raising it continues an early-stopped run exactly as if it had been
#: started with that patience: the references train all 300 epochs and keep the best one).
RESUMABLE_CHANGES = frozenset({"device", "max_seconds", "epochs", "patience", "point_estimate"})
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointMismatch(ValueError):
    """A checkpoint exists for this run name but was written with other settings."""


def run_dir(kind: str, name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache root>/runs/<kind>/<name>``: where a run keeps its checkpoint (created on first save)."""
    for label, part in (("kind", kind), ("name", name)):
        if not part or not re.fullmatch(r"[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*", part) or ".." in part:
            raise ValueError(f"run {label} {part!r} must be letters, digits and _.=+- (and / between parts)")
    return cache_root(cache_dir) / "runs" / kind / name


def config_differences(saved: dict[str, Any], requested: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields (outside :data:`RESUMABLE_CHANGES`) whose saved and requested values differ."""
    keys = (set(saved) | set(requested)) - RESUMABLE_CHANGES
    return {k: (saved.get(k), requested.get(k)) for k in sorted(keys) if saved.get(k) != requested.get(k)}


def resume_or_start(model: Any, checkpoint_path: str | os.PathLike[str]) -> tuple[Any, bool]:
    """``(model, resumed)``: the checkpointed model continued with ``model``'s settings, or ``model``.

    Baselines without training (no ``save``/``load``) are returned unchanged. The continued model
    takes the requested ``epochs``, ``max_seconds``, ``device`` and ``patience`` (an early-stopped
    run whose counter is below the new patience trains on); any other difference raises
    :class:`CheckpointMismatch` naming the fields, so a run is never continued under settings it
    did not start with.
    """
    path = Path(checkpoint_path)
    if not path.exists() or not hasattr(model, "save"):
        return model, False
    saved = type(model).load(path, device=model.config.device)
    differences = config_differences(saved.config.to_dict(), model.config.to_dict())
    if differences:
        described = ", ".join(f"{k}: saved {a!r}, requested {b!r}" for k, (a, b) in differences.items())
        raise CheckpointMismatch(f"checkpoint {path} was written with other settings ({described}); "
                                 f"delete it to start again, or pass the same settings to resume")
    saved.config = saved.config.replace(**{k: getattr(model.config, k) for k in RESUMABLE_CHANGES})
    if saved.state.stopped:  # only early stopping sets the flag: it holds while the counter reaches the patience
        saved.state.stopped = saved.state.bad_epochs >= saved.config.patience
    return saved, True
