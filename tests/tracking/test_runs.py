"""Parent/child run bookkeeping on a real sqlite MLflow store: reuse on resume, no duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gapray.tracking import (
    PARENT_RUN_TAG,
    TRIAL_ID_TAG,
    TrialRun,
    close_trial_runs,
    ensure_experiment,
    find_child_runs,
    get_or_create_parent_run,
    latest_unfinished_parent,
    mlflow_ui_command,
    numeric_metrics,
    resolve_tracking_uri,
)


def test_relative_sqlite_uri_becomes_absolute_and_plain_paths_are_refused(tmp_path: Path) -> None:
    assert resolve_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("http://10.0.0.5:5000") == "http://10.0.0.5:5000"
    with pytest.raises(ValueError, match="plain path"):
        resolve_tracking_uri("mlruns")


def test_experiment_is_created_once_with_artifacts_beside_the_database(mlflow_uri: str) -> None:
    first = ensure_experiment(mlflow_uri, "deari-sweep")
    assert ensure_experiment(mlflow_uri, "deari-sweep") == first
    location = MlflowClient(mlflow_uri).get_experiment(first).artifact_location
    db_dir = Path(mlflow_uri.removeprefix("sqlite:///")).parent
    assert location == (db_dir / "mlartifacts").as_uri()
    assert mlflow_ui_command(mlflow_uri).startswith(f"mlflow ui --backend-store-uri {mlflow_uri}")


def test_resumed_sweep_reuses_its_parent_and_each_trial_keeps_one_child_run(mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    experiment = ensure_experiment(mlflow_uri, "deari-sweep")
    parent = get_or_create_parent_run(client, experiment, "sweep-a", params={"num_samples": 4, "space": {"lr": 1}})
    assert client.get_run(parent).data.params == {"num_samples": "4", "space.lr": "1"}
    assert latest_unfinished_parent(client, experiment).info.run_id == parent

    first = TrialRun.open(mlflow_uri, experiment, parent, "t1", "trial_1", {"n_layers": 2, "unfreeze_every": None})
    first.log_epoch({"val_mae": 0.5, "note": "text", "bad": float("nan")}, epoch=1)
    first.finish({"best_val_mae": 0.5}, step=1)
    # The driver dies and the sweep is resumed: same parent; t1 finished, t2 restarts from a checkpoint.
    assert get_or_create_parent_run(client, experiment, "sweep-a") == parent
    second = TrialRun.open(mlflow_uri, experiment, parent, "t2", "trial_2", {"n_layers": 1})
    again = TrialRun.open(mlflow_uri, experiment, parent, "t2", "trial_2", {"n_layers": 1})
    assert (second.resumed, again.resumed, again.run_id) == (False, True, second.run_id)

    children = find_child_runs(client, experiment, parent)
    assert sorted(r.data.tags[TRIAL_ID_TAG] for r in children) == ["t1", "t2"]
    assert all(r.data.tags[PARENT_RUN_TAG] == parent for r in children)
    run1 = client.get_run(first.run_id)
    assert run1.data.params == {"n_layers": "2", "unfreeze_every": "off"}
    assert set(run1.data.metrics) == {"val_mae", "best_val_mae"}  # strings and NaN dropped, no final/ copies
    assert [m.step for m in client.get_metric_history(first.run_id, "best_val_mae")] == [1]
    assert client.get_run(again.run_id).data.tags["gapray.attempts"] == "2"

    # t2 was stopped by ASHA (its process ended without closing the run): the driver closes it.
    assert close_trial_runs(client, experiment, parent, {"t1": "TERMINATED", "t2": "TERMINATED"}) == 1
    statuses = {r.data.tags[TRIAL_ID_TAG]: r.info.status for r in find_child_runs(client, experiment, parent)}
    assert statuses == {"t1": "FINISHED", "t2": "FINISHED"}
    other = get_or_create_parent_run(client, experiment, "sweep-b")
    assert other != parent and find_child_runs(client, experiment, other) == []


def test_numeric_metrics_keeps_finite_numbers_only() -> None:
    metrics = {"a": 1, "b": 2.5, "c": True, "d": "x", "e": float("inf"), "f": None}
    assert numeric_metrics(metrics) == {"a": 1.0, "b": 2.5}


def test_sweep_refuses_to_reuse_a_name_and_to_resume_nothing(mlflow_uri: str, tmp_path: Path) -> None:
    from gapray.sweep import SweepError, SweepSettings, run_sweep

    settings = SweepSettings(tracking_uri=mlflow_uri, storage_path=str(tmp_path), name="taken")
    with pytest.raises(SweepError, match="no sweep 'taken'"):
        run_sweep(SweepSettings(tracking_uri=mlflow_uri, storage_path=str(tmp_path), name="taken", resume=True))
    with pytest.raises(SweepError, match="no unfinished sweep"):
        run_sweep(SweepSettings(tracking_uri=mlflow_uri, storage_path=str(tmp_path), resume=True))
    client = MlflowClient(mlflow_uri)
    get_or_create_parent_run(client, ensure_experiment(mlflow_uri, "deari-sweep"), "taken")
    with pytest.raises(SweepError, match="already exists.*--resume"):
        run_sweep(settings)


def test_experiment_and_run_descriptions_and_links_to_runs(mlflow_uri: str) -> None:
    from gapray.tracking.runs import run_link, set_description
    from gapray.tracking.store import DESCRIPTION_TAG

    experiment = ensure_experiment(mlflow_uri, "described", description="What this experiment holds")
    client = MlflowClient(mlflow_uri)
    assert client.get_experiment(experiment).tags[DESCRIPTION_TAG] == "What this experiment holds"
    client.set_experiment_tag(experiment, DESCRIPTION_TAG, "edited in the UI")
    assert ensure_experiment(mlflow_uri, "described", description="default text") == experiment
    assert client.get_experiment(experiment).tags[DESCRIPTION_TAG] == "edited in the UI"  # the user's text stays

    run = get_or_create_parent_run(client, experiment, "s")
    set_description(client, run, "see " + run_link(mlflow_uri, experiment, "abc", "d1-h64"))
    assert client.get_run(run).data.tags[DESCRIPTION_TAG] == f"see [d1-h64](#/experiments/{experiment}/runs/abc)"
    assert run_link("http://h:5000/", "7", "r", "x") == "[x](http://h:5000/#/experiments/7/runs/r)"
