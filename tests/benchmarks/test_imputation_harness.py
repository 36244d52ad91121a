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
