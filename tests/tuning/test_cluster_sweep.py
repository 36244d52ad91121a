"""A smoke sweep on a two-node Ray cluster on this machine, tracked by a real ``mlflow server``.

The cluster (``ray.cluster_utils.Cluster``: a head and a worker node, one CPU each) runs in a
subprocess with its own Ray temp dir, so it never meets the test session's Ray. The runs are
then read back over MLflow's REST API, and the champion model is loaded through the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from _helpers import MlflowRest, subprocess_env
from _helpers import mlflow_server as mlflow_server  # the fixture

HERE = Path(__file__).resolve().parent


def test_smoke_sweep_spreads_over_two_nodes_and_logs_to_a_real_mlflow_server(
    mlflow_server: MlflowRest, tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "outcome.json"
    process = subprocess.run(
        [sys.executable, str(HERE / "_two_node_driver.py"), str(out), mlflow_server.uri, str(tmp_path / "results"),
         str(data_dir)],
        env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=400,
    )
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-4000:]
    mlflow_server.wait()
    outcome = json.loads(out.read_text())
    table = outcome["table"]

    # Tune: 4 trials, all finished, sorted by validation MAE, spread over both nodes.
    assert len(table) == 4 and {row["status"] for row in table} == {"TERMINATED"}
    maes = [row["val_mae"] for row in table]
    assert maes == sorted(maes) and all(0 < m < 2 for m in maes)
    assert {row["node_id"] for row in table} == set(outcome["nodes"]) and len(outcome["nodes"]) == 2
    assert 0 < outcome["test_metrics"]["mae"] < 2 and 0 < outcome["test_metrics"]["mre"] < 2
    assert "mlflow ui" not in process.stdout or "http://127.0.0.1" in process.stdout

    # MLflow over REST: one parent (finished) with 4 children, params, per-epoch metrics, artifacts.
    experiment_id = mlflow_server.get("experiments/get-by-name", experiment_name="deari-sweep")["experiment"][
        "experiment_id"]
    parents = mlflow_server.search_runs(experiment_id, "tags.`gapray.role` = 'parent'")
    assert [p["info"]["run_id"] for p in parents] == [outcome["parent_run_id"]]
    assert parents[0]["info"]["status"] == "FINISHED"
    parent_metrics = {m["key"]: m["value"] for m in parents[0]["data"]["metrics"]}
    assert abs(parent_metrics["test_mae"] - outcome["test_metrics"]["mae"]) < 1e-9
    children = mlflow_server.search_runs(experiment_id, f"tags.`mlflow.parentRunId` = '{outcome['parent_run_id']}'")
    assert len(children) == 4
    tags = [{t["key"]: t["value"] for t in c["data"]["tags"]} for c in children]
    assert sorted(t["gapray.trial_id"] for t in tags) == sorted(row["trial_id"] for row in table)
    for child, child_tags, in zip(children, tags):
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        assert {"n_layers", "hidden_size", "dml_margin", "lr", "bayesian", "unfreeze_every", "n_samples"} <= set(params)
        assert child["info"]["status"] == "FINISHED"
        history = mlflow_server.get("metrics/get-history", run_id=child["info"]["run_id"], metric_key="val_mae")
        steps = [m["step"] for m in history["metrics"]]
        row = next(r for r in table if r["trial_id"] == child_tags["gapray.trial_id"])
        assert steps == list(range(1, row["epochs"] + 1))  # one value per epoch, no duplicates
        if params["bayesian"] == "True":
            plots = mlflow_server.get("artifacts/list", run_id=child["info"]["run_id"], path="plots")
            assert [f["path"] for f in plots.get("files", [])] == ["plots/uncertainty.png"]
    files = {f["path"] for f in mlflow_server.get("artifacts/list", run_id=outcome["parent_run_id"])["files"]}
    assert {"trials.csv", "plots"} <= files  # MLflow 3 keeps the logged model as its own entity, not a run artifact
    alias = mlflow_server.get("registered-models/alias", name="deari", alias="champion")["model_version"]
    assert alias["run_id"] == outcome["parent_run_id"]

    # The champion loads through the server and imputes: observed values are kept.
    import mlflow.pyfunc

    mlflow.set_tracking_uri(mlflow_server.uri)
    model = mlflow.pyfunc.load_model(outcome["model_uri"])
    X = np.random.default_rng(0).normal(size=(3, 48, 35)).astype(np.float32)
    X[:, ::3, :] = np.nan
    imputed = model.predict(X)
    assert imputed.shape == X.shape and np.isfinite(imputed).all()
    observed = ~np.isnan(X)
    np.testing.assert_allclose(imputed[observed], X[observed], rtol=1e-6)
