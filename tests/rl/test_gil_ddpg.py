"""``tuning/gil_ddpg.py --smoke-test`` end to end: Tune trial, RLlib DDPG on the GIL env, MLflow."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import mlflow
import numpy as np
import pytest

from gapray.rl.gil_training import SMOKE_TEST, GILDDPGSettings, build_ddpg_config, probe_env

SCRIPT = Path(__file__).resolve().parents[2] / "tuning" / "gil_ddpg.py"
REPRODUCTION_DOC = Path(__file__).resolve().parents[2] / "docs" / "gil_reproduction.md"


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


def test_smoke_test_learns_and_lays_out_mlflow_runs_that_compare_at_a_glance(ray_session, mlflow_uri, tmp_path):
    """One Tune trial whose DDPG samples the GIL env on a remote env runner (bundle per runner); the
    predictors learn (10 digit classes: chance is 0.1), the parent holds one comparison plot, the
    final predictor is registered and served, no temporary folder is left behind."""
    import glob
    import tempfile

    output = tmp_path / "outcome.json"
    code = _load_script().main(["--smoke-test", "--num-env-runners", "1", "--tracking-uri", mlflow_uri,
                                "--storage-path", str(tmp_path / "ray_results"), "--output", str(output),
                                "--name", "smoke"])
    assert code == 0
    outcome = json.loads(output.read_text())
    # the smoke task is a digits MLP with the zero placeholder: a = m (GIL-H) is then exactly zero
    # imputation (a = 1), so the two baselines coincide score for score
    assert outcome["baselines"]["mask"] == outcome["baselines"]["ones"]
    # learning happened: every predictor ends far above chance (0.1 accuracy, 0.5 AUC)
    for scores in (outcome["baselines"]["ones"], {k[5:]: v for k, v in outcome["gil"].items() if k[:5] == "test_"}):
        assert scores["accuracy"] > 0.3 and scores["auc"] > 0.8, scores
    assert "gil-ddpg-" not in output.read_text()  # no path into a trial's (removed) working folder

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("gil-ddpg")
    assert "gil-predictor@champion" in experiment.tags["mlflow.note.content"]
    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["gil-ddpg"])
    parent = runs[runs["run_id"] == outcome["parent_run_id"]]
    assert len(parent) == 1
    # the parent holds the test scores of the three methods (the outcome's), one comparison plot and its table
    assert parent["metrics.gil_test_auc"].iloc[0] == pytest.approx(outcome["gil"]["test_auc"])
    assert parent["metrics.ones_test_auc"].iloc[0] == pytest.approx(outcome["baselines"]["ones"]["auc"])
    assert parent["metrics.mask_test_accuracy"].iloc[0] == pytest.approx(outcome["baselines"]["mask"]["accuracy"])
    assert [a.path for a in client.list_artifacts(outcome["parent_run_id"], "plots")] == ["plots/gil_vs_baselines.png"]
    assert {"comparison.csv", "outcome.json"} <= {a.path for a in client.list_artifacts(outcome["parent_run_id"])}
    children = runs[runs["tags.mlflow.parentRunId"] == outcome["parent_run_id"]]
    assert len(children) == 1
    child = children.iloc[0]
    assert child["tags.mlflow.runName"] == "gil-digits-s0" and child["run_id"] == outcome["best_run_id"]
    assert f"/runs/{child['run_id']})" in parent["tags.mlflow.note.content"].iloc[0]
    for key in ("episode_return_mean", "qf_loss", "policy_loss", "val_auc", "final_test_auc",
                "final_importance_mean", "final_importance_mean_observed"):
        assert np.isfinite(child[f"metrics.{key}"])
    assert not [c for c in runs.columns if c.startswith("metrics.final/")]  # no doubled final/final_* copies
    assert child["status"] == "FINISHED"
    # Only the filtered metrics: no RLlib result-dict dump.
    metric_names = [c for c in runs.columns if c.startswith("metrics.")]
    assert len(metric_names) < 50          # an RLlib result dump would be hundreds
    artifacts = client.list_artifacts(child["run_id"], "final_model")
    assert [Path(a.path).name for a in artifacts] == ["final_predictor.pt"]
    # the trial's working folder went away with the trial (its name carries the run id)
    assert glob.glob(str(Path(tempfile.gettempdir()) / f"gil-ddpg-{child['run_id'][:8]}-*")) == []

    # the best trial's final predictor, registered from its run, serves raw inputs with NaN
    version = client.get_model_version_by_alias("gil-predictor", "champion")
    assert version.run_id == child["run_id"] and outcome["registered_model_uri"] == "models:/gil-predictor@champion"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_REGISTRY_URI", mlflow_uri)
        info = mlflow.models.get_model_info("models:/gil-predictor@champion")
        model = mlflow.pyfunc.load_model("models:/gil-predictor@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    X = np.random.default_rng(0).uniform(0, 1, size=(5, 64)).astype(np.float32)
    X[:, ::2] = np.nan
    probabilities = model.predict(X)
    assert probabilities.shape == (5, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_comparison_over_seeds_is_mean_and_sample_std_and_is_plotted(tmp_path):
    from gapray.rl.gil_model import comparison_summary, plot_comparison

    per_seed = [{"seed": s, "GIL": {"accuracy": a, "auc": 0.9, "ap": 0.5}, "ones": {"accuracy": 0.5, "auc": u,
                                                                                    "ap": 0.4},
                 "mask": {"accuracy": 0.5, "auc": 0.8, "ap": 0.4}} for s, a, u in ((0, 0.6, 0.7), (1, 0.8, 0.9))]
    summary = comparison_summary(per_seed)
    assert summary["GIL"]["accuracy"] == pytest.approx(0.7)
    assert summary["GIL"]["accuracy_std"] == pytest.approx(np.sqrt(0.02))  # (0.1^2 + 0.1^2) / (2 - 1)
    assert summary["ones"]["auc"] == pytest.approx(0.8) and summary["mask"]["auc_std"] == 0.0
    assert comparison_summary(per_seed[:1])["GIL"]["accuracy_std"] == 0.0
    path = plot_comparison(per_seed, tmp_path / "plot.png", "GIL on digits")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


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


def _paper_scale_recipe() -> tuple[list[str], list[str]]:
    """Section 5 of ``docs/gil_reproduction.md``: the arguments its ``ray submit`` command hands
    ``tuning/gil_ddpg.py``, and the flags it adds for the reference script's choices."""
    section = REPRODUCTION_DOC.read_text().split("\n## 5.")[1].split("\n## ")[0]
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
             for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.strip().startswith("#")]
    command = shlex.split(next(line for line in lines if "tuning/gil_ddpg.py" in line))
    added = [shlex.split(line) for line in lines if line.startswith("--")]
    assert len(added) == 1, "section 5 should show one line of flags for the reference's choices"
    return command[command.index("--", command.index("tuning/gil_ddpg.py")) + 1:], added[0]


def test_documented_paper_scale_recipe_parses_into_the_paper_sizes_and_the_reference_choices():
    """Every flag of the recipe exists (argparse exits on an unknown one), it asks for the paper's
    1024-unit LSTM, 400-300 actor and critic and 2,000-step runs on CUDA, and its reference-choice
    flags give exactly ``GILDDPGSettings.with_reference_choices()``."""
    script = _load_script()
    recipe, reference_flags = _paper_scale_recipe()
    settings, driver = script.parse(recipe)
    assert (settings.dataset, settings.lstm_hidden, settings.rl_hiddens, settings.device) == (
        "physionet2012", 1024, "400,300", "cuda")
    assert settings.horizon == settings.iterations * settings.steps_per_iteration == settings.final_steps == 2000
    assert settings.num_env_runners == 0
    assert driver["address"] == "auto" and driver["seeds"] == [0, 1, 2, 3, 4] and driver["search_lrs"]
    with_choices, _ = script.parse([arg for arg in recipe if arg != "--search-lrs"] + reference_flags)
    assert with_choices == settings.with_reference_choices()
    assert with_choices != settings


def test_baselines_are_trained_where_a_trial_would_be_with_a_gpu_for_a_cuda_predictor():
    """The driver's node may have no GPU (``cluster.yaml``'s head): the ``ones``/``mask`` baselines of a
    CUDA run ask Ray for one, those of a CPU run do not."""
    from gapray.rl.gil_training import baseline_task_resources

    assert baseline_task_resources(GILDDPGSettings(device="cpu")) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert baseline_task_resources(GILDDPGSettings(device="cuda")) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert baseline_task_resources(GILDDPGSettings(device="cuda:1")) == {"num_cpus": 1.0, "num_gpus": 1.0}
