"""A smoke sweep on a two-node Ray cluster on this machine, tracked by a real ``mlflow server``.

The cluster (``ray.cluster_utils.Cluster``: a head and a worker node, one CPU each) runs in a
subprocess with its own Ray temp dir, so it never meets the test session's Ray. One trial is
made to raise once after its first checkpoint. The sweep runs once for this module; each test
then checks one behaviour: spread over nodes, retry from the checkpoint, the MLflow layout read
back over the REST API, and the champion model loaded through the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import MlflowRest, running_mlflow_server, subprocess_env

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[tuple[MlflowRest, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("two-node")
    with running_mlflow_server(folder) as server:
        process = subprocess.run(
            [sys.executable, str(HERE / "_two_node_driver.py"), str(folder / "outcome.json"), server.uri,
             str(folder / "results"), str(data_dir)],
            env=subprocess_env(), cwd=folder, capture_output=True, text=True, timeout=400,
        )
        (folder / "driver.log").write_text(process.stdout + process.stderr)
        assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-4000:]
        server.wait()
        outcome = json.loads((folder / "outcome.json").read_text())
        outcome["stdout"] = process.stdout
        yield server, outcome


def _experiment(server: MlflowRest) -> str:
    return str(server.get("experiments/get-by-name", experiment_name="deari-sweep")["experiment"]["experiment_id"])


def _children(server: MlflowRest, parent_run_id: str) -> list[dict[str, Any]]:
    return server.search_runs(_experiment(server), f"tags.`mlflow.parentRunId` = '{parent_run_id}'")


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_trials_spread_over_both_nodes_and_all_finish(sweep: tuple[MlflowRest, dict[str, Any]]) -> None:
    _, outcome = sweep
    table = outcome["table"]
    assert len(table) == 4 and {row["status"] for row in table} == {"TERMINATED"}
    assert all(row["epochs"] == 2 for row in table)  # grace period = max epochs: ASHA stopped none
    maes = [row["val_mae"] for row in table]
    assert maes == sorted(maes) and len(set(maes)) == len(maes)  # sorted; distinct configs score differently
    assert len(outcome["nodes"]) == 2 and set(outcome["node_ids_reported"]) == set(outcome["nodes"]), (
        outcome["node_ids_reported"], outcome["nodes"], outcome["stdout"][-3000:])
    # MRE = MAE / mean|x| over the same held-out entries; z-scored values have mean|x| in (2/3, 1) (Jensen: <= RMS = 1)
    assert outcome["test_metrics"]["mae"] < outcome["test_metrics"]["mre"] < 1.5 * outcome["test_metrics"]["mae"]
    assert "Sweep two-node: 4 trials" in outcome["stdout"] and "\n  best trial (d1-h16-" in outcome["stdout"]


def test_trial_that_raised_once_was_retried_from_its_checkpoint(sweep: tuple[MlflowRest, dict[str, Any]]) -> None:
    server, outcome = sweep
    failed = outcome["failed_trial"]
    row = next(r for r in outcome["table"] if r["trial_id"] == failed)
    assert row["status"] == "TERMINATED" and row["epochs"] == 2
    run = next(c for c in _children(server, outcome["parent_run_id"]) if _tags(c)["gapray.trial_id"] == failed)
    assert _tags(run)["gapray.attempts"] == "2"  # the retry continued the same child run
    history = server.get("metrics/get-history", run_id=run["info"]["run_id"], metric_key="val_mae")["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2]  # epoch 1 was not trained again


def test_runs_are_laid_out_in_mlflow_as_parent_and_children(sweep: tuple[MlflowRest, dict[str, Any]]) -> None:
    server, outcome = sweep
    parents = server.search_runs(_experiment(server), "tags.`gapray.role` = 'parent'")
    assert [p["info"]["run_id"] for p in parents] == [outcome["parent_run_id"]]
    assert parents[0]["info"]["status"] == "FINISHED"
    parent_metrics = {m["key"]: m["value"] for m in parents[0]["data"]["metrics"]}
    assert parent_metrics["test_mae"] == pytest.approx(outcome["test_metrics"]["mae"])
    files = {f["path"] for f in server.get("artifacts/list", run_id=outcome["parent_run_id"])["files"]}
    assert {"trials.csv", "plots"} <= files  # MLflow 3 keeps the logged model as its own entity
    plots = server.get("artifacts/list", run_id=outcome["parent_run_id"], path="plots")["files"]
    assert [f["path"] for f in plots] == ["plots/mae_vs_depth_margin.png"]

    children = _children(server, outcome["parent_run_id"])
    assert sorted(_tags(c)["gapray.trial_id"] for c in children) == sorted(r["trial_id"] for r in outcome["table"])
    for child in children:
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        assert {"n_layers", "hidden_size", "dml_margin", "lr", "bayesian", "unfreeze_every", "n_samples"} <= set(params)
        assert child["info"]["status"] == "FINISHED"
        assert {"val_mae", "train_loss", "best_val_mae", "best_epoch"} <= {m["key"] for m in child["data"]["metrics"]}
        if params["bayesian"] == "True":
            listed = server.get("artifacts/list", run_id=child["info"]["run_id"], path="plots").get("files", [])
            assert [f["path"] for f in listed] == ["plots/uncertainty.png"]
    alias = server.get("registered-models/alias", name="deari", alias="champion")["model_version"]
    assert alias["run_id"] == outcome["table"][0]["run_id"]  # the best trial's run is the model's source


def test_champion_loads_through_the_server_and_imputes(sweep: tuple[MlflowRest, dict[str, Any]]) -> None:
    import mlflow.pyfunc

    server, outcome = sweep
    # models:/ URIs resolve through the registry named by MLFLOW_REGISTRY_URI (set for this test only).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", server.uri)
        patch.setenv("MLFLOW_REGISTRY_URI", server.uri)
        model = mlflow.pyfunc.load_model(outcome["model_uri"])
    X = np.random.default_rng(0).normal(size=(3, 48, 35)).astype(np.float32)
    X[:, ::3, :] = np.nan
    imputed = model.predict(X)
    assert imputed.shape == X.shape and np.isfinite(imputed).all()
    observed = ~np.isnan(X)
    np.testing.assert_allclose(imputed[observed], X[observed], rtol=1e-6)
