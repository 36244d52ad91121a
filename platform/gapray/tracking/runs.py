"""One parent run per sweep, one child run per trial, found again on resume.

Layout (DESIGN.md section 5): the parent run carries the sweep's settings and summary; each
child run carries ``mlflow.parentRunId`` and the Tune trial id in ``gapray.trial_id``. Before a
trial creates its run it looks for one with its trial id under the same parent, so a trial that
restarts (retry after a failure, resumed sweep) continues its own run, and a finished trial,
which Tune never restarts, keeps exactly one run.

Everything goes through :class:`mlflow.tracking.MlflowClient` with explicit run ids: no global
"active run", so trials running as threads or processes cannot log into each other's runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from gapray.tracking.store import DESCRIPTION_TAG

PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
ROLE_TAG = "gapray.role"
SWEEP_TAG = "gapray.sweep"
TRIAL_ID_TAG = "gapray.trial_id"
TRIAL_STATUS_TAG = "gapray.trial_status"
ATTEMPT_TAG = "gapray.attempts"

_MAX_PARAM_LENGTH = 6000
_BATCH = 900  # MLflow's log_batch accepts at most 1000 entities


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings flattened to ``a.b`` keys, values as MLflow param strings (``None`` as ``off``)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = ("off" if value is None else str(value))[:_MAX_PARAM_LENGTH]
    return flat


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Finite numbers only: Tune's and the model's result dicts also hold strings, dicts and NaN."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def find_parent_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> Any | None:
    """The parent run of the sweep ``sweep_name`` (most recent first), or ``None``."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'parent' and tags.`{SWEEP_TAG}` = {_quote(sweep_name)}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def latest_unfinished_parent(client: MlflowClient, experiment_id: str) -> Any | None:
    """The most recent parent run still RUNNING (a sweep whose driver died), or ``None``."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'parent' and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def get_or_create_parent_run(
    client: MlflowClient, experiment_id: str, sweep_name: str, params: Mapping[str, Any] | None = None
) -> str:
    """Reuse the sweep's parent run if it exists (resume), else create it with ``params``."""
    existing = find_parent_run(client, experiment_id, sweep_name)
    if existing is not None:
        if existing.info.status != "RUNNING":
            client.update_run(existing.info.run_id, status="RUNNING")
        return str(existing.info.run_id)
    run = client.create_run(
        experiment_id, run_name=sweep_name, tags={ROLE_TAG: "parent", SWEEP_TAG: sweep_name}
    )
    if params:
        log_params(client, run.info.run_id, params)
    return str(run.info.run_id)


def find_child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every child run of ``parent_run_id``."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_RUN_TAG}` = {_quote(parent_run_id)}",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_child_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> Any | None:
    """The child run of trial ``trial_id`` under ``parent_run_id``, or ``None``."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{PARENT_RUN_TAG}` = {_quote(parent_run_id)} and tags.`{TRIAL_ID_TAG}` = {_quote(trial_id)}"
        ),
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0] if runs else None


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params, skipping keys the run already has with the same value (a resumed run)."""
    flat = flatten_params(params)
    existing = client.get_run(run_id).data.params
    fresh = [Param(k, v) for k, v in flat.items() if existing.get(k) != v]
    for start in range(0, len(fresh), _BATCH):
        client.log_batch(run_id, params=fresh[start:start + _BATCH])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
    """Log the finite numeric entries of ``metrics`` at ``step`` in one batch."""
    timestamp = int(time.time() * 1000)
    entries = [Metric(k, v, timestamp, step) for k, v in numeric_metrics(metrics).items()]
    for start in range(0, len(entries), _BATCH):
        client.log_batch(run_id, metrics=entries[start:start + _BATCH])


@dataclass
class TrialRun:
    """The child run of one Tune trial; created or found again by :meth:`open`."""

    client: MlflowClient
    run_id: str
    resumed: bool

    @classmethod
    def open(
        cls,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        trial_id: str,
        trial_name: str,
        params: Mapping[str, Any],
    ) -> TrialRun:
        """Continue the trial's existing child run, or create it with ``params`` and the parent tag."""
        client = MlflowClient(tracking_uri=tracking_uri)
        existing = find_child_run(client, experiment_id, parent_run_id, trial_id)
        if existing is not None:
            run_id = str(existing.info.run_id)
            attempts = int(existing.data.tags.get(ATTEMPT_TAG, "1")) + 1
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, ATTEMPT_TAG, str(attempts))
            return cls(client, run_id, resumed=True)
        run = client.create_run(
            experiment_id,
            run_name=trial_name,
            tags={PARENT_RUN_TAG: parent_run_id, TRIAL_ID_TAG: trial_id, ROLE_TAG: "trial", ATTEMPT_TAG: "1"},
        )
        run_id = str(run.info.run_id)
        log_params(client, run_id, params)
        return cls(client, run_id, resumed=False)

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int) -> None:
        log_metrics(self.client, self.run_id, metrics, step=epoch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, metrics: Mapping[str, Any] | None = None, status: str = "FINISHED", step: int = 0) -> None:
        """Log ``metrics`` (under their own names, at ``step``) and close the run."""
        if metrics:
            log_metrics(self.client, self.run_id, metrics, step=step)
        self.client.set_terminated(self.run_id, status=status)


def close_trial_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, trial_status: Mapping[str, str]
) -> int:
    """Close child runs left RUNNING by trials that Tune stopped (ASHA) or that errored.

    ``trial_status`` maps trial id to Tune's final status (``TERMINATED``, ``ERROR``, ...).
    A stopped trial's process is ended by Tune between two epochs, so it cannot close its own
    run. Returns how many runs were closed.
    """
    closed = 0
    for run in find_child_runs(client, experiment_id, parent_run_id):
        trial_id = run.data.tags.get(TRIAL_ID_TAG)
        status = trial_status.get(trial_id or "")
        if status is None:
            continue
        client.set_tag(run.info.run_id, TRIAL_STATUS_TAG, status)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="FAILED" if status == "ERROR" else "FINISHED")
            closed += 1
    return closed


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def set_description(client: MlflowClient, run_id: str, markdown: str) -> None:
    """The run's description in the MLflow UI (markdown: links, lists)."""
    client.set_tag(run_id, DESCRIPTION_TAG, markdown)


def run_link(tracking_uri: str, experiment_id: str, run_id: str, text: str) -> str:
    """A markdown link to a run's page in the MLflow UI: relative (``#/experiments/E/runs/R``, resolved
    against the page that shows it) for a local store, absolute for an ``http(s)://`` server."""
    route = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        route = f"{tracking_uri.rstrip('/')}/{route}"
    return f"[{text}]({route})"


def log_artifacts(
    client: MlflowClient, run_id: str, paths: Iterable[str | Path], artifact_path: str | None = None
) -> None:
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)
