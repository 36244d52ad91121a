"""Driver-side Tune callback that closes a trial's MLflow child run as soon as Tune ends the trial.

A trial that ASHA stops (at a rung, or at ``max_t``) is ended by Tune right after a report, so
the trial cannot log its final metrics or close its own run. This callback runs on the driver
when Tune ends the trial and logs ``final/<metric>`` from the trial's last result, tags Tune's
status and closes the run.
"""

from __future__ import annotations

from typing import Any

from ray import tune

FINAL_METRICS = ("train_loss", "val_mae", "val_mre", "epoch", "epoch_seconds", "samples_per_second",
                 "time_total_s", "training_iteration")


class CloseTrialRunCallback(tune.Callback):
    """On ``on_trial_complete``/``on_trial_error``: tag the child run with Tune's status and close it."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id

    def _close(self, trial: Any, tune_status: str, run_status: str) -> None:
        from mlflow.tracking import MlflowClient

        from gapray.tracking.runs import TRIAL_STATUS_TAG, find_child_run, log_metrics, numeric_metrics

        client = MlflowClient(tracking_uri=self.tracking_uri)
        run = find_child_run(client, self.experiment_id, self.parent_run_id, str(trial.trial_id))
        if run is None:  # the trial failed before it opened its run
            return
        client.set_tag(run.info.run_id, TRIAL_STATUS_TAG, tune_status)
        final = {k: v for k, v in numeric_metrics(trial.last_result or {}).items() if k in FINAL_METRICS}
        log_metrics(client, run.info.run_id, {f"final/{k}": v for k, v in final.items()}, step=0)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status=run_status)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "TERMINATED", "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "ERROR", "FAILED")
