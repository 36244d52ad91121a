"""Fault tolerance: a sweep whose driver is SIGKILLed mid-way resumes with ``--resume`` without
re-running finished trials or duplicating runs. (The retry of a trial that raises once is checked
in test_cluster_sweep.py, on the two-node sweep.)"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _helpers import REPO_ROOT, subprocess_env
from mlflow.tracking import MlflowClient

from gapray.tracking import TRIAL_ID_TAG, find_child_runs, find_parent_run

ONE_CPU_DRIVER = (
    "import runpy, sys, ray\n"
    "from gapray.sweep.runner import WORKER_ENV\n"
    "ray.init(address='local', num_cpus=1, include_dashboard=False, runtime_env={'env_vars': WORKER_ENV})\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
"""Runs the sweep script on a local Ray with one CPU (the script then joins it instead of starting
one with every CPU): one trial at a time, so the kill after the first finished trial always
lands mid-sweep, however many cores the machine has."""


def _sweep_command(tmp_path: Path, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", ONE_CPU_DRIVER, str(REPO_ROOT / "tuning" / "deari_sweep.py"), "--smoke-test",
            "--name", "killed",
            "--num-samples", "3",
            "--storage-path", str(tmp_path / "results"), "--data-dir", str(data_dir),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *extra]


def _children(uri: str) -> tuple[Any, list[Any]]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("deari-sweep")
    parent = None if experiment is None else find_parent_run(client, experiment.experiment_id, "killed")
    if parent is None:
        return client, []
    return client, find_child_runs(client, experiment.experiment_id, parent.info.run_id)


def _finished_trial_runs(database: Path) -> int:
    """Finished trial runs, read with plain sqlite3: an MlflowClient here would race the driver's schema set-up."""
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            (count,) = connection.execute(
                "SELECT COUNT(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                "WHERE tags.key = 'gapray.role' AND tags.value = 'trial' AND runs.status = 'FINISHED'"
            ).fetchone()
        return int(count)
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return 0


def _persisted_terminated_trials(experiment_dir: Path) -> set[str]:
    """Trial ids that Tune's latest saved experiment state (``experiment_state-*.json`` under the
    storage path, what ``--resume`` restores) records as TERMINATED. An MLflow run can be FINISHED
    a few seconds before Tune saves its trial's state: a kill in between reruns that trial, as Tune
    documents, so only the persisted ones must not run again."""
    states = sorted(experiment_dir.glob("experiment_state-*.json"))
    if not states:
        return set()
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
    except (OSError, ValueError, KeyError):  # being written: not saved yet
        return set()
    trials = (json.loads(state) for state, _runtime in trial_data)
    return {t["trial_id"] for t in trials if t.get("status") == "TERMINATED"}


def test_killed_driver_resumes_without_rerunning_finished_trials_or_duplicating_runs(
    tmp_path: Path, data_dir: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = subprocess_env()
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed below
    driver = subprocess.Popen(_sweep_command(tmp_path, data_dir), cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        experiment_dir = tmp_path / "results" / "killed"
        # kill once a trial has finished and Tune has saved that (what --resume restores)
        while not (_finished_trial_runs(tmp_path / "mlflow.db") and _persisted_terminated_trials(experiment_dir)):
            assert driver.poll() is None, f"sweep ended before it was killed:\n{(tmp_path / 'first.log').read_text()}"
            assert time.monotonic() < deadline, "no finished trial saved by Tune within 300 s"
            time.sleep(0.5)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        time.sleep(3.0)  # Ray's GCS and raylet follow their driver; its agents may linger
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    client, before = _children(uri)
    persisted = _persisted_terminated_trials(tmp_path / "results" / "killed")
    done_before = {c.data.tags[TRIAL_ID_TAG]: c for c in before
                   if c.info.status == "FINISHED" and c.data.tags[TRIAL_ID_TAG] in persisted}
    history_before = {t: [m.step for m in client.get_metric_history(c.info.run_id, "val_mae")]
                      for t, c in done_before.items()}
    assert 1 <= len(done_before) < 3  # one trial at a time: killed mid-sweep

    resumed = subprocess.run(_sweep_command(tmp_path, data_dir, "--resume"), cwd=tmp_path, env=subprocess_env(),
                             capture_output=True, text=True, timeout=800)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    assert "Sweep killed: 3 trials" in resumed.stdout and "mlflow ui --backend-store-uri" in resumed.stdout

    client, after = _children(uri)
    trial_ids = [c.data.tags[TRIAL_ID_TAG] for c in after]
    assert len(after) == 3 and len(set(trial_ids)) == 3  # one child run per trial, none duplicated
    assert all(c.info.status == "FINISHED" for c in after)
    by_trial = {c.data.tags[TRIAL_ID_TAG]: c for c in after}
    for trial_id, run in done_before.items():  # finished trials were not started again
        assert by_trial[trial_id].info.run_id == run.info.run_id
        assert by_trial[trial_id].data.tags["gapray.attempts"] == "1"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mae")] == history_before[trial_id]
    experiment = client.get_experiment_by_name("deari-sweep").experiment_id
    parent = find_parent_run(client, experiment, "killed")
    assert parent.info.status == "FINISHED" and "test_mae" in parent.data.metrics
    assert len(client.search_runs([experiment], "tags.`gapray.role` = 'parent'")) == 1  # the parent was reused
