"""A sweep-wide time budget that never ends a sweep empty-handed.

Tune's own ``time_budget_s`` stops everything when the time is up, even when no trial has
reported an epoch yet (a loaded machine, slow worker start-up), and the sweep then has nothing
to show. :class:`TimeBudgetStopper` stops all trials once the budget is spent *and* at least one
trial has trained ``min_epochs`` epochs; trials keep their best checkpoint as usual. The clock
starts when the stopper is built (the sweep starts) and restarts when a resumed sweep unpickles it.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Stopper


class TimeBudgetStopper(Stopper):
    """``stop_all()`` once ``seconds`` have passed and some trial reported ``epoch >= min_epochs``."""

    def __init__(self, seconds: float, min_epochs: int = 1, clock: Any = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self.seconds = float(seconds)
        self.min_epochs = max(int(min_epochs), 1)
        self._clock = clock
        self._started = clock()
        self._most_epochs = 0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self._most_epochs = max(self._most_epochs, int(result.get("epoch", 0) or 0))
        return False

    def stop_all(self) -> bool:
        return self._clock() - self._started >= self.seconds and self._most_epochs >= self.min_epochs

    def __getstate__(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "min_epochs": self.min_epochs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["seconds"], state["min_epochs"])  # type: ignore[misc]  # a resumed sweep: a new clock
