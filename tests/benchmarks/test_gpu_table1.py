"""The one-command GPU Table 1 run, dry-run on CPU: every row and fold, the same split as the CPU harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from gapray.data.loaders import load_physionet2012
from gapray.data.splits import imputation_split
from gapray.imputation import LOCFImputer
from gapray.metrics import masked_mae

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_trains_every_row_on_every_fold_and_writes_the_harness_format(tmp_path: Path, data_dir: Path) -> None:
    env = {**os.environ, "GAPRAY_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    models = "deari-L2,bayes-deari,deari,locf"
    result = subprocess.run([sys.executable, "benchmarks/gpu_table1.py", "--data-dir", str(data_dir), "--dry-run",
                             "--models", models, "--out-dir", str(tmp_path / "out")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "imputation_dry_table1.json").read_text())
    rows = {(r["model"], r["fold"]): r for r in record["rows"]}
    assert set(rows) == {(m, f) for m in models.split(",") for f in (0, 1)}
    assert not [r for r in record["rows"] if "error" in r]
    for (model, fold), row in rows.items():
        assert np.isfinite(row["mae"]) and row["fold"] == fold
        if model != "locf":
            assert row["epochs"] == 1 and Path(row["checkpoint"]).is_relative_to(tmp_path / "cache")
    assert rows[("bayes-deari", 0)]["calibrated_picp"] > 0  # scored with intervals like the CPU rows
    assert record["finished"] and (tmp_path / "out" / "imputation.md").exists()

    # the workers used exactly the CPU harness's split: LOCF recomputed here gives the same MAE
    dataset = load_physionet2012(data_dir / "physionet2012", "a", progress=False).subset(range(96))
    for fold in (0, 1):
        split = imputation_split(dataset, protocol="deari", rate=0.1, seed=0, fold=fold)
        locf = LOCFImputer()
        locf.fit(split.train)
        imputed = locf.impute(split.test)
        expected = masked_mae(imputed, split.test.X_ori, split.test.indicating_mask)
        assert rows[("locf", fold)]["mae"] == expected
