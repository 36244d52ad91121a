"""Your own table in, imputed table out: `gapray fit --data` -> registry -> `gapray impute --model-uri --data --out`.

Real PhysioNet values in a long chart table (``RecordID, charttime, variable, value``; each stay
admitted at its own time), a tiny BRITS-GRU, a sqlite MLflow store in a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gapray.cli import main
from gapray.data import TimeSeriesDataset, to_frame
from gapray.data.loaders import load_physionet2012

VARIABLES = ("HR", "NIDiasABP", "NISysABP", "Temp", "GCS", "Urine")


def _charts(dataset: TimeSeriesDataset) -> pd.DataFrame:
    """The observed cells of ``VARIABLES`` as ICU charts: admission times 7 h apart, a value at hh:17."""
    table = to_frame(dataset)
    table = table[table["variable"].isin(VARIABLES) & ~table["imputed"]]
    admission = pd.Timestamp("2024-01-01 00:00") + pd.to_timedelta((table["id"] - 132539) * 7, unit="h")
    charttime = admission + pd.to_timedelta(table["time"], unit="h") + pd.Timedelta(minutes=17)
    return pd.DataFrame({"RecordID": table["id"].to_numpy(), "charttime": charttime.dt.strftime("%Y-%m-%d %H:%M"),
                         "variable": table["variable"].to_numpy(), "value": table["value"].to_numpy()})


@pytest.fixture(scope="module")
def pipeline(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fit and register once; impute the held-out stays once (the tests below read the results)."""
    folder = tmp_path_factory.mktemp("own-table")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    stays = load_physionet2012(data_dir / "physionet2012", subset="a", progress=False).subset(np.arange(80))
    _charts(stays.subset(np.arange(60))).to_parquet(folder / "charts.parquet", index=False)
    _charts(stays.subset(np.arange(60, 80))).to_csv(folder / "new.csv", index=False)
    fit = ["fit", "--data", str(folder / "charts.parquet"), "--id-col", "RecordID", "--time-col", "charttime",
           "--freq", "1h", "--window", "24", "--model", "brits-gru", "--epochs", "1", "--hidden-size", "8",
           "--out", str(folder / "run"), "--tracking-uri", uri, "--register", "deari"]
    assert main(fit) == 0
    impute = ["impute", "--model-uri", "models:/deari@champion", "--data", str(folder / "new.csv"),
              "--out", str(folder / "imputed.parquet"), "--tracking-uri", uri]
    assert main(impute) == 0
    return {"folder": folder, "uri": uri, "fit": json.loads((folder / "run" / "fit.json").read_text())}


def test_fit_logs_the_run_and_registers_the_champion(pipeline: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=pipeline["uri"], registry_uri=pipeline["uri"])
    report = pipeline["fit"]
    assert report["model_uri"] == "models:/deari@champion" and sorted(report["variables"]) == sorted(VARIABLES)
    charts = pd.read_parquet(pipeline["folder"] / "charts.parquet")
    hours = pd.to_datetime(charts["charttime"]).dt.floor("1h").groupby(charts["RecordID"]).agg(["min", "max"])
    spans = (hours["max"] - hours["min"]) // pd.Timedelta(hours=1) + 1
    assert report["n_train"] + report["n_val"] == int((-(-spans // 24)).sum())  # 24-hour windows of each stay
    assert report["n_val"] > 0 and report["val_mae"] > 0
    run = client.get_run(report["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["table.freq"] == "1h"
    assert {"train_loss", "val_mae", "final/val_mae_original_units"} <= set(run.data.metrics)
    version = client.get_model_version_by_alias("deari", "champion")
    assert version.run_id == report["run_id"]


def _expected(folder: Path, csv: str) -> pd.DataFrame:
    """predict() on the same table read with the model's format, mapped back to original units by hand."""
    from gapray.imputation import BRITS

    model = BRITS.load(folder / "run" / "model.pt")
    preprocessing = model.preprocessing
    assert preprocessing is not None
    dataset = preprocessing.read_frame(pd.read_csv(folder / csv))
    scaler = preprocessing.standardizer
    z = model.predict(scaler.transform(dataset))["imputation"]
    original = np.where(np.isnan(dataset.X), z * scaler.std + scaler.mean, dataset.extra["table_values"])
    rows = []
    for n in range(len(dataset)):
        start = pd.Timestamp(int(dataset.extra["bin_start"][n]) * 3_600_000_000_000)
        for t in range(int(dataset.lengths[n])):
            for d, name in enumerate(dataset.feature_names):
                rows.append((dataset.record_ids[n], start + pd.Timedelta(hours=t), name, original[n, t, d],
                             bool(np.isnan(dataset.X[n, t, d]))))
    return pd.DataFrame(rows, columns=["RecordID", "charttime", "variable", "expected", "missing"])


def test_imputed_table_equals_predict_in_original_units(pipeline: dict[str, Any]) -> None:
    folder = pipeline["folder"]
    out = pd.read_parquet(folder / "imputed.parquet")
    assert list(out.columns) == ["RecordID", "charttime", "variable", "value", "imputed", "std", "lower", "upper"]
    expected = _expected(folder, "new.csv")
    merged = out.merge(expected, on=["RecordID", "charttime", "variable"], validate="one_to_one")
    assert len(merged) == len(out) == len(expected)
    assert (merged["imputed"] == merged["missing"]).all() and merged["imputed"].any()
    np.testing.assert_allclose(merged["value"], merged["expected"], rtol=1e-6)
    heart_rate = merged[(merged["variable"] == "HR") & merged["imputed"]]["value"]
    assert 40 < heart_rate.mean() < 140  # beats per minute


def test_observed_values_come_back_exactly(pipeline: dict[str, Any]) -> None:
    folder = pipeline["folder"]
    given = pd.read_csv(folder / "new.csv")
    given["charttime"] = pd.to_datetime(given["charttime"]).dt.floor("1h")
    out = pd.read_parquet(folder / "imputed.parquet")
    observed = out[~out["imputed"]].merge(given, on=["RecordID", "charttime", "variable"], suffixes=("", "_given"))
    assert len(observed) == len(given) == int((~out["imputed"]).sum())
    assert np.array_equal(observed["value"].to_numpy(), observed["value_given"].to_numpy())
    assert (observed["std"] == 0).all() and (observed["lower"] == observed["value"]).all()


def test_mlflow_pyfunc_takes_the_same_table_long_or_wide(pipeline: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc

    folder = pipeline["folder"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", pipeline["uri"])
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", pipeline["uri"])
    model = mlflow.pyfunc.load_model("models:/deari@champion")
    signature = model.metadata.signature
    assert {c.name for c in signature.inputs.inputs if c.required} == {"RecordID", "charttime"}
    assert {"variable", "value", *VARIABLES} <= set(signature.inputs.input_names())
    long = pd.read_csv(folder / "new.csv")
    from_pyfunc = model.predict(long)
    cli = pd.read_parquet(folder / "imputed.parquet")
    pd.testing.assert_frame_equal(from_pyfunc, cli, check_dtype=False)
    wide = long.pivot(index=["RecordID", "charttime"], columns="variable", values="value").reset_index()
    wide.columns.name = None
    filled = model.predict(wide)
    assert {"HR", "HR_imputed", "HR_std", "HR_lower", "HR_upper"} <= set(filled.columns)
    heart = cli[cli["variable"] == "HR"].reset_index(drop=True)
    np.testing.assert_array_equal(filled["HR"].to_numpy(), heart["value"].to_numpy())


def test_bad_table_is_refused_and_nothing_is_written(pipeline: dict[str, Any], capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    folder = pipeline["folder"]
    other = pd.read_csv(folder / "new.csv").replace({"variable": {"Temp": "SpO2"}})
    other.to_csv(folder / "other.csv", index=False)
    target = folder / "refused.parquet"
    target.write_bytes(b"earlier")
    code = main(["impute", "--model-uri", str(folder / "run" / "model.pt"), "--data", str(folder / "other.csv"),
                 "--out", str(target)])
    assert code == 2
    error = capsys.readouterr().err
    assert "other.csv: column 'variable'" in error and "missing ['Temp'], unexpected ['SpO2']" in error
    assert target.read_bytes() == b"earlier"
    assert not [p for p in folder.iterdir() if p.name.startswith(".refused")]


def test_impute_flags_for_tables_and_benchmarks_do_not_mix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["impute", "--model", "locf", "--model-uri", "models:/x@y", "--data", "t.csv", "--out", "o.csv"]) == 2
    assert "do not mix" in capsys.readouterr().err
    assert main(["impute", "--model-uri", "models:/x@y", "--data", "t.csv"]) == 2
    assert "missing --out" in capsys.readouterr().err
    assert main(["impute", "--model", "locf"]) == 2
    assert "give --model and --dataset" in capsys.readouterr().err
