"""A quiet console for sweeps: one line per trial instead of Tune's status tables.

Tune runs with ``verbose=0``; this driver-side callback prints when a trial starts (its MLflow
run name, :func:`gapray.sweep.space.run_name`) and how it ended (epochs trained, best
validation MAE and its epoch), so the console reads as a short log of the sweep.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ray import tune

from gapray.sweep.space import run_name


def trial_line(trial: Any, event: str, max_epochs: int) -> str:
    """The console line of ``trial`` for ``event``: ``started``, ``finished``, ``failed`` or ``budget`` (ended
    by the sweep's time budget)."""
    name = run_name(trial.config or {})
    if event == "started":
        return f"  {trial.trial_id} {name}: started"
    result = trial.last_result or {}
    epochs = int(result.get("epoch", 0) or 0)
    if event == "budget" and not epochs:
        return f"  {trial.trial_id} {name}: not trained (time budget spent)"
    if event == "failed" or not epochs:
        return f"  {trial.trial_id} {name}: FAILED after {epochs} epochs (see the Tune log of the trial)"
    stopped = " (time budget)" if event == "budget" else " (stopped early)" if epochs < max_epochs else ""
    best, at = float(result.get("best_val_mae", float("nan"))), int(result.get("best_epoch", 0) or 0)
    return f"  {trial.trial_id} {name}: {epochs} epochs{stopped}, best val MAE {best:.4f} at epoch {at}"


class ConsoleReporter(tune.Callback):
    """Prints :func:`trial_line` when a trial starts, completes or errors, and at the end for the trials the
    time budget ended (Tune reports no completion for those; on the driver)."""

    def __init__(self, max_epochs: int, stream: TextIO | None = None) -> None:
        self.max_epochs = max_epochs
        self.stream = stream
        self._ended: set[str] = set()

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._print(trial_line(trial, "started", self.max_epochs))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended.add(trial.trial_id)
        self._print(trial_line(trial, "finished", self.max_epochs))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended.add(trial.trial_id)
        self._print(trial_line(trial, "failed", self.max_epochs))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in trials:
            if trial.trial_id not in self._ended:
                self._ended.add(trial.trial_id)
                self._print(trial_line(trial, "budget", self.max_epochs))
