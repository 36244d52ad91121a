"""Start a two-node Ray cluster on this machine and run a smoke sweep on it (run as a subprocess).

Usage: python _two_node_driver.py OUT_JSON TRACKING_URI STORAGE_PATH DATA_DIR

The first trial to start raises once, right after its epoch-1 checkpoint (a marker file in
STORAGE_PATH remembers it), so the sweep also exercises Tune's retry from a checkpoint.
ASHA's grace period equals the 2 smoke epochs, so no trial is stopped early and the retry is
deterministic. Writes the trial table, the alive node ids, the sweep's parent run id and the
failed trial's id to OUT_JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import ray
from _helpers import wait_healthy
from ray.cluster_utils import Cluster

from gapray.sweep import SMOKE_SPACE, SweepSettings, format_report, run_sweep, train_imputer

MARKERS = ""


def fail_first_trial_once(config: dict[str, Any], *, split: Any, context: Any) -> None:
    """``train_imputer``; the first trial to start dies once, just after epoch 1's checkpoint."""
    from ray import tune

    folder = Path(MARKERS)
    trial_id = tune.get_context().get_trial_id()
    try:
        (folder / "first-trial").open("x").write(trial_id)  # atomic: exactly one trial wins
    except FileExistsError:
        pass
    chosen = (folder / "first-trial").read_text() == trial_id
    original = tune.report

    def report_then_fail(metrics: dict[str, Any], *, checkpoint: Any = None) -> None:
        original(metrics, checkpoint=checkpoint)
        if chosen and metrics["epoch"] == 1 and not (folder / "failed").exists():
            (folder / "failed").write_text(trial_id)
            raise RuntimeError("injected failure after epoch 1")

    tune.report = report_then_fail
    try:
        train_imputer(config, split=split, context=context)
    finally:
        tune.report = original


def _reported_node_ids(experiment: Path) -> set[str]:
    """Every node id any trial reported from (all epochs, all attempts), from Tune's result files."""
    return {json.loads(line)["node_id"] for path in experiment.glob("*/result.json")
            for line in path.read_text().splitlines() if line.strip()}


def main(out: str, tracking_uri: str, storage_path: str, data_dir: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        settings = SweepSettings(address=cluster.address, smoke_test=True, tracking_uri=tracking_uri,
                                 storage_path=storage_path, data_dir=data_dir, name="two-node", grace_period=2)
        markers = Path(storage_path) / "markers"
        markers.mkdir(parents=True, exist_ok=True)
        global MARKERS
        MARKERS = str(markers)  # read by the trainable: cloudpickle ships __main__ globals by value
        ray.init(address=cluster.address)
        if tracking_uri.startswith("http"):  # the test started the server just before this process
            wait_healthy(tracking_uri, timeout=180)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        # The smoke space, made narrower still (depth 1) so four trials fit the test budget.
        space = dataclasses.replace(SMOKE_SPACE, n_layers=(1,))
        outcome = run_sweep(settings, space=space, trainable=fail_first_trial_once)
        print(format_report(outcome), flush=True)
        with open(out, "w") as handle:
            json.dump({"table": outcome.table.to_dict("records"), "nodes": nodes,
                       "parent_run_id": outcome.parent_run_id, "test_metrics": outcome.test_metrics,
                       "model_uri": outcome.registered.model_uri if outcome.registered else None,
                       "seconds": outcome.seconds, "failed_trial": (markers / "failed").read_text(),
                       "node_ids_reported": sorted(_reported_node_ids(Path(storage_path) / "two-node"))},
                      handle, default=str)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:5])
