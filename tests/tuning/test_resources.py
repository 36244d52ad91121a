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


# ---------------------------------------------------------------------------------------------
# Placement groups of RLlib trials: the trial's own bundle plus one per env runner / learner
# ---------------------------------------------------------------------------------------------
def test_placement_fits_by_the_bundles_not_only_the_totals() -> None:
    from gapray.sweep.resources import placement_fits

    two_nodes = [{"CPU": 3.0}, {"CPU": 3.0}]
    assert placement_fits([{"CPU": 2.0}] * 2, two_nodes)
    assert not placement_fits([{"CPU": 2.0}] * 3, two_nodes)              # 6 CPUs in all, but 2+2 fits no node
    assert not placement_fits([{"CPU": 4.0}], two_nodes)
    assert placement_fits([{"CPU": 1.0}, {"CPU": 1.0, "GPU": 1.0}], [{"CPU": 1.0}, {"CPU": 1.0, "GPU": 1.0}])
    assert not placement_fits([{"CPU": 1.0, "GPU": 1.0}] * 2, [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0}])


def test_strict_strategies_pack_on_one_node_or_spread_over_distinct_nodes() -> None:
    from gapray.sweep.resources import placement_fits

    bundles = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert placement_fits(bundles, [{"CPU": 2.0}], "STRICT_PACK")
    assert not placement_fits(bundles, [{"CPU": 1.0}, {"CPU": 1.0}], "STRICT_PACK")
    assert placement_fits(bundles, [{"CPU": 1.0}, {"CPU": 1.0}], "STRICT_SPREAD")
    assert not placement_fits(bundles, [{"CPU": 4.0}], "STRICT_SPREAD")


def test_gil_trial_request_is_one_cpu_for_the_trial_and_one_per_env_runner() -> None:
    from gapray.rl.algorithm import DDPG
    from gapray.rl.config import DDPGConfig
    from gapray.sweep.resources import rllib_trial_request

    labelled, strategy = rllib_trial_request(DDPG, DDPGConfig().env_runners(num_env_runners=2))
    assert labelled == [("trial process", {"CPU": 1.0}), ("env runner", {"CPU": 1.0}), ("env runner", {"CPU": 1.0})]
    assert strategy == "PACK"


def test_refusal_names_what_the_trial_needs_and_what_the_cluster_has() -> None:
    from gapray.sweep.resources import check_placement

    labelled = [("trial process", {"CPU": 1.0}), ("env runner", {"CPU": 1.0}), ("env runner", {"CPU": 1.0}),
                ("learner or evaluation runner", {"GPU": 1.0})]
    with pytest.raises(ResourceError) as refused:
        check_placement(labelled, [{"CPU": 2.0, "memory": 1e9}], what="one trial of tuning/gil_ddpg.py",
                        advice="Lower --num-env-runners, or add nodes.")
    assert str(refused.value) == (
        "one trial of tuning/gil_ddpg.py needs 3 CPU, 1 GPU (trial process 1 CPU; 2 env runners 1 CPU each; "
        "learner or evaluation runner 1 GPU), but the Ray cluster has 2 CPU, 0 GPU in all "
        "(nodes: [{'CPU': 2.0, 'GPU': 0.0}]); Tune would keep it PENDING forever. "
        "Lower --num-env-runners, or add nodes.")
    check_placement(labelled[:3], [{"CPU": 2.0}, {"CPU": 1.0}])             # fits over two nodes: no error


def test_gil_script_fails_fast_when_env_runners_exceed_the_cluster(
    ray_session: object, tmp_path: object, mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session's Ray has 2 CPUs; 2 env runners + the trial need 3: exit 2 at once, nothing in
    MLflow, instead of a trial PENDING forever."""
    import importlib.util
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    script = Path(__file__).resolve().parents[2] / "tuning" / "gil_ddpg.py"
    spec = importlib.util.spec_from_file_location("gil_ddpg_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--smoke-test", "--num-env-runners", "2", "--tracking-uri", mlflow_uri,
                        "--storage-path", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "needs 3 CPU, 0 GPU (trial process 1 CPU; 2 env runners 1 CPU each)" in error
    assert "the Ray cluster has 2 CPU, 0 GPU in all" in error
    assert MlflowClient(mlflow_uri).search_experiments(filter_string="name = 'gil-ddpg'") == []
