"""``gapray impute`` prints one JSON line with MAE, MRE, fit time and samples/s."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapray.cli import main


@pytest.mark.parametrize("model", ["locf", "brits-gru", "deari-dml"])
def test_impute_prints_one_json_line(model: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["impute", "--model", model, "--dataset", "traffic", "--data-dir", str(data_dir / "traffic"),
                 "--protocol", "deari", "--mask-rate", "0.1", "--epochs", "1", "--hidden-size", "8"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert {"mae", "mre", "fit_seconds", "samples_per_second"} <= set(result)
    assert 0 < result["mae"] < 2 and result["fit_seconds"] >= 0
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
