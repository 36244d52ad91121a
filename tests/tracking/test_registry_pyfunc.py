"""The registered pyfunc model: typed predict (no MLflow warning), a signature, the scaler travels with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gapray.data import TimeSeriesDataset, read_table
from gapray.data.loaders import load_physionet2012
from gapray.imputation import BRITS, BRITSConfig
from gapray.imputation.preprocessing import fit_in_original_units, predict_in_original_units
from gapray.sweep.runner import load_split
from gapray.sweep.settings import SweepSettings


def test_pyfunc_class_has_typed_predict_without_mlflow_warnings() -> None:
    """MLflow's "Add type hints to the predict method" warning is fixed where it comes from."""
    code = ("import warnings; warnings.simplefilter('always'); import gapray.tracking.registry as r; "
            "print(r.ImputerPyfunc.predict.__annotations__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert "type hint" not in done.stderr.lower()
    assert "'model_input': 'pd.DataFrame'" in done.stdout and "'return': 'pd.DataFrame'" in done.stdout


@pytest.fixture(scope="module")
def physionet(data_dir: Path) -> TimeSeriesDataset:
    return load_physionet2012(data_dir / "physionet2012", subset="a", progress=False).subset(np.arange(80))


def test_array_model_logged_with_its_scaler_takes_original_units(physionet: TimeSeriesDataset, tmp_path: Path,
                                                                  mlflow_uri: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A model fitted on arrays (the benchmark sweeps' champion) takes raw values once it carries its scaler."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from gapray.tracking.registry import log_and_register_model
    from gapray.tracking.store import ensure_experiment

    model = BRITS(BRITSConfig(hidden_size=8, epochs=1, device="cpu"))
    fit_in_original_units(model, physionet.subset(np.arange(60)), show_progress=False)
    run = MlflowClient(mlflow_uri).create_run(ensure_experiment(mlflow_uri, "registry-test"))
    raw = physionet.subset(np.arange(60, 80)).X
    registered = log_and_register_model(mlflow_uri, run.info.run_id, model.save(tmp_path / "model.pt"), "brits",
                                        model_class="gapray.imputation:BRITS", input_example=raw[:2])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_uri)
    loaded = mlflow.pyfunc.load_model(registered.model_uri)
    spec = loaded.metadata.signature.inputs.inputs[0]
    assert spec.shape == (-1, -1, 35) and {p.name for p in loaded.metadata.signature.params.params} == {
        "level", "uncertainty"}
    imputed = loaded.predict(raw)
    np.testing.assert_array_equal(imputed, predict_in_original_units(model, raw)["imputation"])
    observed = ~np.isnan(raw)
    assert np.array_equal(imputed[observed], raw[observed])
    with pytest.raises(MlflowException, match=r"Tensor\('float32', \(-1, -1, 35\)\)"):  # the signature refuses it
        loaded.predict(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="fitted on arrays, not on a table"):  # and so would the model
        loaded.unwrap_python_model().predict(None, pd.DataFrame({"a": [1.0]}))


def test_sweep_reads_a_users_table_with_data(physionet: TimeSeriesDataset, tmp_path: Path) -> None:
    """``tuning/deari_sweep.py --data TABLE --id-col ... --time-col ... --freq ... --window ...``: the split
    comes from the table and keeps its format, so the champion takes such tables."""
    from gapray.data import to_frame

    table = to_frame(physionet)[["id", "time", "variable", "value"]].dropna(subset=["value"])
    table.to_parquet(tmp_path / "charts.parquet", index=False)
    settings = SweepSettings(data=str(tmp_path / "charts.parquet"), id_col="id", time_col="time", freq="1",
                             window=24, seed=0)
    split = load_split(settings)
    assert split.train.extra["table"].window == 24 and set(split.train.feature_names) == set(physionet.feature_names)
    expected = read_table(tmp_path / "charts.parquet", id_col="id", time_col="time", freq=1, window=24)
    assert len(split.train) + len(split.val) + len(split.test) == len(expected) > len(physionet)
    assert split.test.indicating_mask.any()  # the DEARI protocol's held-out entries
