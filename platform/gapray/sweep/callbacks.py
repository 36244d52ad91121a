"""Driver-side Tune callback that closes a trial's MLflow child run as soon as Tune ends the trial.

A trial that ASHA stops (at a rung, or at ``max_t``) is ended by Tune right after a report, so
the trial cannot close its own run. This callback runs on the driver when Tune ends the trial,
tags Tune's status and closes the run. (The trial logs every epoch's metrics, ``best_val_mae``
and ``best_epoch`` included, itself: no ``final/`` copies.)
"""

from __future__ import annotations

from typing import Any

from ray import tune


class CloseTrialRunCallback(tune.Callback):
    """On ``on_trial_complete``/``on_trial_error``: tag the child run with Tune's status and close it."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def _close(self, trial: Any, tune_status: str, run_status: str) -> None:
        from mlflow.tracking import MlflowClient

        from gapray.tracking.runs import TRIAL_STATUS_TAG, find_child_run

        client = MlflowClient(tracking_uri=self.tracking_uri)
        run = find_child_run(client, self.experiment_id, self.parent_run_id, str(trial.trial_id))
        if run is None:  # the trial failed before it opened its run
            return
        client.set_tag(run.info.run_id, TRIAL_STATUS_TAG, tune_status)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status=run_status)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "TERMINATED", "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "ERROR", "FAILED")
