"""``gapray plot-uncertainty`` end to end on the synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapray.cli import main
from gapray.imputation import BRITS, BRITSConfig


def test_plot_uncertainty_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint without a calibration gets one fitted on the split; --raw draws the raw band,
    which is far narrower than the calibrated one for an untrained posterior; --feature auto picks
    a variable with removed ground truth."""
    model = BRITS(BRITSConfig(hidden_size=8, bayesian=True, seed=0))
    model._build(6)  # the synthetic dataset has 6 features
    checkpoint = model.save(tmp_path / "bayes.pt")
    reports = {}
    for flag in ("--calibrate", "--raw"):
        out = tmp_path / f"fig3c{flag}.png"
        code = main(["plot-uncertainty", str(checkpoint), "--dataset", "synthetic", "--record", "2",
                     "--n-samples", "4", flag, "--out", str(out)])
        assert code == 0
        reports[flag] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert reports[flag]["png"] == str(out) and out.read_bytes()[:4] == b"\x89PNG"
        assert 0.0 <= reports[flag]["record_coverage"] <= 1.0
    assert reports["--calibrate"]["calibration"] == "fitted now" and reports["--raw"]["calibration"] == "raw"
    assert reports["--raw"]["feature"] == reports["--calibrate"]["feature"]
    assert reports["--calibrate"]["record_width"] > 2 * reports["--raw"]["record_width"]


def test_plot_uncertainty_names_a_bad_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = BRITS(BRITSConfig(hidden_size=8, seed=0))
    model._build(6)
    checkpoint = model.save(tmp_path / "det.pt")
    assert main(["plot-uncertainty", str(checkpoint), "--dataset", "synthetic", "--record", "9999",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "--record 9999" in capsys.readouterr().err
