"""benchmarks/imputation.py's --set: config fields for an ablation run, checked before any training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _harness(tmp_path: Path, data_dir: Path, tag: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GAPRAY_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "benchmarks/imputation.py", "--data-dir", str(data_dir), "--dataset",
                           "beijing-air", "--models", "brits-gru", "--epochs", "1", "--hidden-size", "8", "--tag", tag,
                           "--out-dir", str(tmp_path / "results"), "--no-progress", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_set_reaches_the_model_config_and_the_results_file(tmp_path: Path, data_dir: Path) -> None:
    result = _harness(tmp_path, data_dir, "ablation", "--set", "weight_decay=6e-7",
                      "--set", "combination_sigmoid=False")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "results" / "imputation_ablation.json").read_text())
    assert record["overrides"] == {"weight_decay": 6e-7, "combination_sigmoid": False}
    saved = torch.load(tmp_path / "cache" / "runs" / "imputation" / "ablation" / "brits-gru-fold0.pt",
                       map_location="cpu", weights_only=False)
    assert saved["config"]["weight_decay"] == 6e-7 and saved["config"]["combination_sigmoid"] is False


def test_a_misspelt_field_stops_the_run_before_training(tmp_path: Path, data_dir: Path) -> None:
    result = _harness(tmp_path, data_dir, "typo", "--set", "wieght_decay=6e-7")
    assert result.returncode != 0
    assert "'wieght_decay' is not a DEARIConfig field" in result.stderr and "weight_decay" in result.stderr
    assert not (tmp_path / "cache" / "runs" / "imputation" / "typo").exists()
    assert "Traceback" not in result.stderr


def _record(rows: list[dict], patience: int = 10, seed: int = 0) -> dict:
    return {"dataset": "physionet2012-a", "protocol": "deari", "mask_rate": 0.1, "seed": seed, "model_seed": seed,
            "delta_convention": "brits", "hidden_size": 108, "batch_size": 64, "threads": 1, "epochs": 300,
            "max_minutes": None, "patience": patience, "command": "c", "started": "s", "rows": rows,
            "bayesian": {"unfreeze_every": 100, "n_samples": 10}}


def _bayes_row() -> dict:
    scores = {"picp": 0.5, "width": 0.1, "crps": 0.2, "calibrated_picp": 0.9, "calibrated_width": 1.5,
              "calibrated_crps": 0.19, "mondrian_picp": 0.901, "mondrian_width": 1.4, "spearman": 0.3125,
              "conformal_multiplier": 7.0, "predict_seconds_1pass": 1.0, "predict_seconds_mc": 10.0,
              "mc_cost_ratio": 10.0, "n_samples": 10, "level": 0.9}
    return {"model": "bayes-deari", "fold": 0, "mae": 0.2500, "mre": 0.35, "frozen_mae": 0.2510,
            "fit_seconds": 300.0, **scores}


def test_report_compares_a_bayesian_only_run_with_the_deterministic_deari_of_the_same_split(tmp_path: Path) -> None:
    """A Bayesian run with its own tag has no `deari` row; the report takes it from the results file
    on the same split and patience, names that file, and shows the std's Spearman correlation."""
    out = tmp_path / "results"
    out.mkdir()
    deari = {"model": "deari", "fold": 0, "mae": 0.2614, "mre": 0.37, "fit_seconds": 100.0, "predict_seconds": 2.0}
    other_split = {**deari, "mae": 0.9}
    files = {"imputation_a_other_seed.json": _record([other_split], seed=1),
             "imputation_aa_hourly_mean.json": {**_record([other_split]), "aggregate": "mean"},
             "imputation_ab_overrides.json": {**_record([other_split]), "overrides": {"weight_decay": 6e-7}},
             "imputation_b_other_patience.json": _record([other_split], patience=300),
             "imputation_c_full.json": _record([deari]),
             "imputation_d_bayes.json": _record([_bayes_row()])}
    for name, record in files.items():
        (out / name).write_text(json.dumps(record))
    result = subprocess.run([sys.executable, "benchmarks/imputation.py", "--report", "--out-dir", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "imputation.md").read_text()
    bayes_section = report.split("`imputation_d_bayes.json`")[1]
    assert "the `deari` row of `imputation_c_full.json`" in bayes_section
    interval_table = bayes_section.split("Bayesian rows:")[1]
    row = next(line for line in interval_table.splitlines() if line.startswith("| bayes-deari |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:4] == ["0.2500", "0.2510"]  # MAE, frozen MAE
    assert cells[4] == "0.2500"  # a row written before point_estimate existed was scored on the MC mean
    assert cells[5] == "-0.0114"  # 0.2500 - 0.2614, not the other seed's or patience's 0.9
    assert cells[12:15] == ["0.901", "1.4000", "0.312"]  # gap-conditional PICP and width, Spearman
    assert cells[17] == "3.00"  # fit s / DEARI fit s


def test_continue_from_extends_a_copy_of_another_tags_run_and_leaves_it_untouched(
        tmp_path: Path, data_dir: Path) -> None:
    """The 300-epoch variant of an early-stopped row: its checkpoint copied under a new tag and continued."""
    short = _harness(tmp_path, data_dir, "short", "--set", "lr=1e-3")  # --epochs 1
    assert short.returncode == 0, short.stderr[-2000:]
    runs = tmp_path / "cache" / "runs" / "imputation"
    source = runs / "short" / "brits-gru-fold0.pt"
    before = source.read_bytes()
    longer = _harness(tmp_path, data_dir, "long", "--set", "lr=1e-3", "--continue-from", "short", "--epochs", "2")
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "continuing a copy of" in longer.stdout
    assert source.read_bytes() == before
    first, continued = (torch.load(runs / tag / "brits-gru-fold0.pt", map_location="cpu", weights_only=False)
                        for tag in ("short", "long"))
    assert first["training"]["epoch"] == 1 and continued["training"]["epoch"] == 2
    assert continued["training"]["history"][0] == first["training"]["history"][0]  # epoch 1 was not retrained
    row = json.loads((tmp_path / "results" / "imputation_long.json").read_text())["rows"][0]
    assert row["resumed_from_epoch"] == 1 and row["epochs"] == 2

    # a continued run with other settings is refused by the checkpoint, a missing source named
    other = _harness(tmp_path, data_dir, "other", "--continue-from", "short", "--epochs", "2")
    assert other.returncode != 0 and "other settings" in other.stderr and "lr" in other.stderr
    assert "Traceback" not in other.stderr
    missing = _harness(tmp_path, data_dir, "missing", "--continue-from", "nothing-here")
    assert missing.returncode != 0 and "no checkpoint" in missing.stderr and "nothing-here" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_bayesian_samples_scores_the_posterior_mean_and_the_mean_of_k_weight_samples(
        tmp_path: Path, data_dir: Path) -> None:
    """benchmarks/bayesian_samples.py on a 1-epoch Bayesian row: K = 1 is the single sample, the
    posterior mean is the row's frozen MAE, and a checkpoint that is not there is named."""
    trained = _harness(tmp_path, data_dir, "bayes", "--models", "bayes-brits")
    assert trained.returncode == 0, trained.stderr[-2000:]
    env = {**os.environ, "GAPRAY_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "benchmarks/bayesian_samples.py", "--data-dir", str(data_dir), "--dataset",
               "beijing-air", "--model", "bayes-brits", "--samples", "3,1", "--out-dir", str(tmp_path / "results")]
    result = subprocess.run([*command, "--tag", "bayes"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "results" / "bayesian_samples_bayes.json").read_text())
    row = json.loads((tmp_path / "results" / "imputation_bayes.json").read_text())["rows"][0]
    assert [r["K"] for r in record["rows"]] == [1, 3]
    assert record["rows"][0]["mae"] == record["single_sample_mae"]
    assert abs(record["posterior_mean_mae"] - row["frozen_mae"]) < 1e-6
    assert record["rows"][0]["noise_std"] > record["rows"][1]["noise_std"] > 0
    assert "| 3 |" in (tmp_path / "results" / "bayesian_samples_bayes.md").read_text()
    missing = subprocess.run([*command, "--tag", "nothing-here"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=600)
    assert missing.returncode != 0 and "no such checkpoint" in missing.stderr and "Traceback" not in missing.stderr
