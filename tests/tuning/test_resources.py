"""Per-trial resources are chosen from the cluster so that no trial can stay PENDING forever."""

from __future__ import annotations

import pytest

from gapray.sweep.resources import ResourceError, choose_trial_resources

CPU_ONLY = [{"CPU": 2.0}, {"CPU": 4.0}]
GPU_CLUSTER = [{"CPU": 4.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]


def test_cpu_cluster_gets_cpu_trials_packed_by_cpu_count() -> None:
    chosen = choose_trial_resources(CPU_ONLY, cpus_per_trial=1.0)
    assert chosen.as_dict() == {"cpu": 1.0, "gpu": 0.0}
    assert chosen.device == "cpu"
    assert chosen.max_concurrent == 6  # 2 + 4 CPUs, one per trial


def test_gpu_cluster_gets_one_gpu_per_trial_by_default() -> None:
    chosen = choose_trial_resources(GPU_CLUSTER, cpus_per_trial=2.0)
    assert chosen.gpu == 1.0 and chosen.device == "cuda"
    assert chosen.max_concurrent == 2  # one per GPU node; the CPU-only head takes none


def test_fractional_gpu_packs_trials_on_each_gpu() -> None:
    chosen = choose_trial_resources(GPU_CLUSTER, cpus_per_trial=1.0, gpus_per_trial=0.25)
    assert chosen.max_concurrent == 8  # 4 per GPU on two GPU nodes


def test_zero_gpus_forces_cpu_on_a_gpu_cluster() -> None:
    chosen = choose_trial_resources(GPU_CLUSTER, cpus_per_trial=4.0, gpus_per_trial=0)
    assert chosen.gpu == 0 and chosen.max_concurrent == 1 + 2 + 2


def test_forced_gpu_without_gpus_is_a_clear_error() -> None:
    with pytest.raises(ResourceError, match="no GPU"):
        choose_trial_resources(CPU_ONLY, gpus_per_trial=1)


def test_request_larger_than_every_node_is_refused_instead_of_pending() -> None:
    with pytest.raises(ResourceError, match="PENDING forever"):
        choose_trial_resources(CPU_ONLY, cpus_per_trial=8.0)
    with pytest.raises(ResourceError, match="PENDING forever"):
        choose_trial_resources(GPU_CLUSTER, cpus_per_trial=1.0, gpus_per_trial=2)


@pytest.mark.parametrize("gpus", [1.5, -1.0])
def test_impossible_amounts_are_rejected(gpus: float) -> None:
    with pytest.raises(ResourceError, match="gpus per trial"):
        choose_trial_resources(GPU_CLUSTER, gpus_per_trial=gpus)


def test_live_single_node_cluster_resources(ray_session: object) -> None:
    from gapray.sweep.resources import alive_node_resources

    nodes = alive_node_resources()
    chosen = choose_trial_resources(nodes)
    assert chosen.gpu == 0 and chosen.max_concurrent == 2  # the session Ray has 2 CPUs and no GPU


def test_sweep_with_forced_gpus_on_a_cpu_cluster_fails_before_any_trial(
    ray_session: object, tmp_path: object, mlflow_uri: str
) -> None:
    from mlflow.tracking import MlflowClient

    from gapray.sweep import SweepSettings, run_sweep

    settings = SweepSettings(gpus_per_trial=1.0, tracking_uri=mlflow_uri, storage_path=str(tmp_path), name="gpu")
    with pytest.raises(ResourceError, match="--gpus-per-trial 1.0 was forced but the Ray cluster has no GPU"):
        run_sweep(settings)
    experiment = MlflowClient(mlflow_uri).get_experiment_by_name("deari-sweep")
    assert MlflowClient(mlflow_uri).search_runs([experiment.experiment_id]) == []  # nothing started
