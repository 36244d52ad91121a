"""``tuning/gil_ddpg.py --smoke-test`` end to end: Tune trial, RLlib DDPG on the GIL env, MLflow."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from gapray.rl.gil_training import SMOKE_TEST, GILDDPGSettings, build_ddpg_config, probe_env

SCRIPT = Path(__file__).resolve().parents[2] / "tuning" / "gil_ddpg.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gil_ddpg_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gil_config_wires_row_wise_module_and_mask_slice():
    settings = GILDDPGSettings(**SMOKE_TEST)
    env = probe_env(settings)
    config = build_ddpg_config(settings)
    assert config.observed_mask_slice == (env.layout.mask.start, env.layout.mask.stop)
    assert config.behaviour_policy is not None and config.normalize_actions is False
    module = config.get_rl_module_spec(env=env).build()
    assert module.layout.matrix and module.layout.rows == env.n_rows
    obs, info = env.reset(seed=0)
    import torch
    from ray.rllib.core.columns import Columns

    out = module.forward_exploration({Columns.OBS: torch.as_tensor(obs)[None]}, t=0)
    action = out[Columns.ACTIONS][0].numpy()
    assert action.shape == env.action_space.shape and env.action_space.contains(action.astype(np.float32))


def test_smoke_test_runs_end_to_end_and_logs_to_mlflow(ray_session, mlflow_uri, tmp_path):
    """One Tune trial whose DDPG samples the GIL env on a remote env runner (bundle per runner)."""
    output = tmp_path / "outcome.json"
    code = _load_script().main(["--smoke-test", "--num-env-runners", "1", "--tracking-uri", mlflow_uri,
                                "--storage-path", str(tmp_path / "ray_results"), "--output", str(output),
                                "--name", "smoke"])
    assert code == 0
    outcome = json.loads(output.read_text())
    # the smoke task is a digits MLP with the zero placeholder: a = m (GIL-H) is then exactly zero
    # imputation (a = 1), so the two baselines coincide score for score
    assert outcome["baselines"]["mask"] == outcome["baselines"]["ones"]

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["gil-ddpg"])
    parent = runs[runs["run_id"] == outcome["parent_run_id"]]
    assert len(parent) == 1
    for key in ("gil_test_auc", "ones_test_auc", "mask_test_auc", "gil_val_auc"):
        assert np.isfinite(parent[f"metrics.{key}"].iloc[0])
    # the parent run holds the same scores as the outcome
    assert parent["metrics.gil_test_auc"].iloc[0] == pytest.approx(outcome["gil"]["test_auc"])
    assert parent["metrics.ones_test_auc"].iloc[0] == pytest.approx(outcome["baselines"]["ones"]["auc"])
    children = runs[runs["tags.mlflow.parentRunId"] == outcome["parent_run_id"]]
    assert len(children) == 1
    child = children.iloc[0]
    for key in ("episode_return_mean", "qf_loss", "policy_loss", "val_auc", "final/final_test_auc",
                "final/final_importance_mean", "final/final_importance_mean_observed"):
        assert np.isfinite(child[f"metrics.{key}"])
    assert child["status"] == "FINISHED"
    # Only the filtered metrics: no RLlib result-dict dump.
    metric_names = [c for c in runs.columns if c.startswith("metrics.")]
    assert len(metric_names) < 50          # an RLlib result dump would be hundreds
    artifacts = mlflow.MlflowClient(mlflow_uri).list_artifacts(child["run_id"], "final_model")
    assert [Path(a.path).name for a in artifacts] == ["final_predictor.pt"]


def test_importance_summary_matches_hand_computed_statistics():
    from gapray.rl.gil_training import ImportanceSummary

    summary = ImportanceSummary()
    assert summary.result() == {}
    action = np.array([[0.1, 0.5], [0.3, 0.9]])
    observed = np.array([[1, 0], [1, 1]])
    summary.add(action, observed)
    summary.add(action, observed)
    result = summary.result()
    assert result["mean"] == pytest.approx(0.45)
    assert result["std"] == pytest.approx(np.sqrt((0.01 + 0.25 + 0.09 + 0.81) / 4 - 0.45 ** 2))
    assert result["mean_observed"] == pytest.approx((0.1 + 0.3 + 0.9) / 3)
    assert result["mean_missing"] == pytest.approx(0.5)
    assert result["row_mean_std"] == pytest.approx(0.15)              # row means 0.3 and 0.6
    assert result["within_feature_std"] == pytest.approx(0.15)        # columns (0.1, 0.3), (0.5, 0.9): 0.1, 0.2
