"""``gapray impute`` prints one JSON line with MAE, MRE, fit time and samples/s."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gapray.cli import main
from gapray.data import imputation_split
from gapray.data.loaders import load_dataset
from gapray.imputation import LOCFImputer


@pytest.fixture(scope="module")
def traffic_fold0(data_dir: Path) -> dict[str, float]:
    """What the command scores, computed here: fold 0 of the DEARI protocol at rate 0.1, seed 0;
    mean |x| over its held-out entries and LOCF's MAE on them."""
    split = imputation_split(load_dataset("traffic", data_dir / "traffic"), protocol="deari", rate=0.1, seed=0,
                             fold=0)
    held_out = split.test.indicating_mask.astype(bool)
    locf = LOCFImputer()
    locf.fit(split.train, split.val)
    return {"mean_abs": float(np.abs(split.test.X_ori[held_out].astype(np.float64)).mean()),
            "locf_mae": locf.evaluate(split.test)["mae"]}


@pytest.mark.parametrize("model", ["locf", "brits-gru", "deari-dml"])
def test_impute_prints_one_json_line(model: str, data_dir: Path, capsys: pytest.CaptureFixture[str],
                                     traffic_fold0: dict[str, float]) -> None:
    code = main(["impute", "--model", model, "--dataset", "traffic", "--data-dir", str(data_dir / "traffic"),
                 "--protocol", "deari", "--mask-rate", "0.1", "--epochs", "1", "--hidden-size", "8"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {"mae", "mre", "fit_seconds", "samples_per_second"} <= set(result)
    # MAE and MRE are scored on fold 0's held-out entries: MRE = MAE / mean |x| over them
    assert result["mre"] == pytest.approx(result["mae"] / traffic_fold0["mean_abs"], rel=1e-6)
    assert result["fit_seconds"] >= 0
    if model == "locf":
        assert result["mae"] == pytest.approx(traffic_fold0["locf_mae"], rel=1e-9)
    if model == "locf":
        assert result["samples_per_second"] is None
    else:
        assert result["samples_per_second"] > 0 and result["per_fold"][0]["epochs"] == 1


def test_impute_rejects_bad_arguments(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["impute", "--model", "locf", "--dataset", "traffic", "--data-dir", str(data_dir / "traffic"),
                 "--folds", "9"]) == 2
    assert "--folds must be in [1, 5]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["impute", "--model", "nope", "--dataset", "traffic"])
