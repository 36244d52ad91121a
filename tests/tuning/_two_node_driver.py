"""Start a two-node Ray cluster on this machine and run a smoke sweep on it (run as a subprocess).

Usage: python _two_node_driver.py OUT_JSON TRACKING_URI STORAGE_PATH DATA_DIR
Writes the trial table, the alive node ids and the sweep's parent run id to OUT_JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import ray
from _helpers import wait_healthy
from ray.cluster_utils import Cluster

from gapray.sweep import SMOKE_SPACE, SweepSettings, format_report, run_sweep


def main(out: str, tracking_uri: str, storage_path: str, data_dir: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        settings = SweepSettings(address=cluster.address, smoke_test=True, tracking_uri=tracking_uri,
                                 storage_path=storage_path, data_dir=data_dir, name="two-node")
        ray.init(address=cluster.address)
        if tracking_uri.startswith("http"):  # the test started the server just before this process
            wait_healthy(tracking_uri, timeout=180)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        # The smoke space, made narrower still (depth 1) so four trials fit the test budget.
        space = dataclasses.replace(SMOKE_SPACE, n_layers=(1,))
        outcome = run_sweep(settings, space=space)
        print(format_report(outcome), flush=True)
        with open(out, "w") as handle:
            json.dump({"table": outcome.table.to_dict("records"), "nodes": nodes,
                       "parent_run_id": outcome.parent_run_id, "test_metrics": outcome.test_metrics,
                       "model_uri": outcome.registered.model_uri if outcome.registered else None,
                       "seconds": outcome.seconds}, handle, default=str)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:5])
