"""What a user of ``make demo`` sees: the data fetched (or an offline message before Ray starts), and the
demo's sweep laid out in a real ``mlflow server`` so that runs compare at a glance.

The network is a test double for ``urllib.request.urlopen`` (no test reaches the internet); the
server is a real ``mlflow server`` process on 127.0.0.1 (``_helpers.running_mlflow_server``);
the sweep is the demo's own (``--demo`` settings and space), made tiny: 2 trials, 2 epochs, 160
Beijing-air records, Bayesian trials so the calibrated intervals are exercised.
"""

from __future__ import annotations

import dataclasses
import email.message
import importlib.util
import io
import json
import re
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _helpers import MlflowRest, running_mlflow_server

from gapray.sweep import DEMO_SPACE, SweepError, SweepSettings, format_report, run_sweep
from gapray.sweep.budget import TimeBudgetStopper
from gapray.sweep.console import trial_line
from gapray.sweep.runner import SETTINGS_TAG, SPACE_TAG, ensure_data
from gapray.sweep.space import describe_space

SCRIPT = Path(__file__).resolve().parents[2] / "tuning" / "deari_sweep.py"
AIR_ZIP = "PRSA2017_Data_20130301-20170228.zip"
RUN_NAME = re.compile(r"^d1-h16-m0\.\d\d-u10-lr\d\.\de-3$")


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("deari_sweep_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Response(io.BytesIO):
    """What ``urlopen`` returns for a 200: the body, ``status`` and ``headers``."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.status = 200
        self.headers = email.message.Message()
        self.headers["Content-Length"] = str(len(body))


@pytest.fixture()
def no_local_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without ``../shared/data`` or ``$GAPRAY_DATA_DIR`` and with an empty download cache."""
    monkeypatch.delenv("GAPRAY_DATA_DIR", raising=False)
    monkeypatch.delenv("GAPRAY_DATA_URL", raising=False)
    monkeypatch.setenv("GAPRAY_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)  # ../shared/data relative to it does not exist
    return tmp_path / "cache" / "data" / "air"


def test_offline_the_demo_stops_before_ray_and_says_how_to_get_the_data(
    no_local_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[str] = []

    def offline(request: Any, timeout: float = 0.0) -> Any:
        asked.append(request.full_url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def no_ray(address: str) -> bool:
        raise AssertionError("Ray was started although the data are missing")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setattr("gapray.sweep.runner.connect_ray", no_ray)
    code = _script().main(["--demo", "--tracking-uri", f"sqlite:///{no_local_data.parents[2] / 'mlflow.db'}"])
    error = capsys.readouterr().err
    assert code == 2
    assert asked == [f"https://archive.ics.uci.edu/ml/machine-learning-databases/00501/{AIR_ZIP}"]
    assert f"beijing-air: no data at {no_local_data}" in error and "Temporary failure in name resolution" in error
    assert "gapray data fetch beijing-air" in error and "GAPRAY_DATA_DIR" in error
    assert f"$GAPRAY_DATA_DIR/air/{AIR_ZIP}" in error
    assert not any(no_local_data.glob("*"))  # nothing half-downloaded is left to pass for data next time


def test_online_the_demo_downloads_its_data_checksum_verified(
    no_local_data: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = (data_dir / "air" / AIR_ZIP).read_bytes()
    served = {"body": body[:-1] + bytes([body[-1] ^ 1])}  # one flipped bit first
    monkeypatch.setattr("urllib.request.urlopen", lambda request, timeout=0.0: _Response(served["body"]))
    settings = SweepSettings(demo=True, download=True).effective()
    with pytest.raises(SweepError, match="checksum mismatch"):
        ensure_data(settings)
    served["body"] = body
    assert ensure_data(settings) == no_local_data
    assert (no_local_data / AIR_ZIP).read_bytes() == body
    with pytest.raises(SweepError, match="downloads are turned off"):
        ensure_data(dataclasses.replace(settings, dataset="traffic", download=False))


def test_the_time_budget_waits_for_a_first_result_and_restarts_on_resume() -> None:
    now = [0.0]
    stopper = TimeBudgetStopper(10.0, min_epochs=2, clock=lambda: now[0])
    now[0] = 50.0
    assert not stopper("t1", {"epoch": 1}) and not stopper.stop_all()  # over time, but no trial has 2 epochs yet
    stopper("t2", {"epoch": 2})
    assert stopper.stop_all()
    import pickle

    resumed = pickle.loads(pickle.dumps(stopper))
    assert (resumed.seconds, resumed.min_epochs) == (10.0, 2) and not resumed.stop_all()


def test_console_line_of_a_trial() -> None:
    trial = type("T", (), {"trial_id": "a_00001", "config": {"n_layers": 2, "hidden_size": 64, "dml_margin": 0.3,
                                                              "unfreeze_every": "off", "lr": 0.005},
                           "last_result": {"epoch": 5, "best_val_mae": 0.18234, "best_epoch": 4}})()
    assert trial_line(trial, "started", 20) == "  a_00001 d2-h64-m0.30-uoff-lr5.0e-3: started"
    assert trial_line(trial, "finished", 20) == ("  a_00001 d2-h64-m0.30-uoff-lr5.0e-3: 5 epochs (stopped early), "
                                                 "best val MAE 0.1823 at epoch 4")
    assert trial_line(trial, "finished", 5).endswith(": 5 epochs, best val MAE 0.1823 at epoch 4")
    assert trial_line(trial, "budget", 20).endswith(": 5 epochs (time budget), best val MAE 0.1823 at epoch 4")
    waiting = type("T", (), {"trial_id": "a_00002", "config": {"n_layers": 1}, "last_result": {}})()
    assert trial_line(waiting, "budget", 20) == "  a_00002 d1: not trained (time budget spent)"


def test_console_reports_trials_the_budget_ended_once_at_the_end() -> None:
    from gapray.sweep.console import ConsoleReporter

    stream = io.StringIO()
    reporter = ConsoleReporter(max_epochs=10, stream=stream)
    done, cut = (type("T", (), {"trial_id": tid, "config": {"n_layers": 1}, "last_result": {"epoch": e,
                                                                                           "best_val_mae": 0.2,
                                                                                           "best_epoch": e}})()
                 for tid, e in (("t1", 10), ("t2", 3)))
    reporter.on_trial_complete(0, [done, cut], done)
    reporter.on_experiment_end([done, cut])
    assert stream.getvalue().splitlines() == ["  t1 d1: 10 epochs, best val MAE 0.2000 at epoch 10",
                                              "  t2 d1: 3 epochs (time budget), best val MAE 0.2000 at epoch 3"]


@pytest.fixture(scope="module")
def demo_sweep(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, ray_session: Any
               ) -> Iterator[tuple[MlflowRest, Any, SweepSettings]]:
    folder = tmp_path_factory.mktemp("demo")
    with running_mlflow_server(folder) as server:
        server.wait()
        settings = SweepSettings(demo=True, num_samples=2, epochs=2, grace_period=2, max_records=160,
                                 tracking_uri=server.uri, storage_path=str(folder / "ray_results"),
                                 data_dir=str(data_dir), name="demo-test")
        space = dataclasses.replace(DEMO_SPACE, n_layers=(1,), hidden_size=(16,), unfreeze_every=(10,),
                                    n_samples=(2,))
        outcome = run_sweep(settings, space=space)
        yield server, outcome, settings


@pytest.fixture()
def client(demo_sweep: tuple[MlflowRest, Any, SweepSettings], monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow.tracking import MlflowClient

    server = demo_sweep[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)  # models:/ URIs resolve through these
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", server.uri)
    return MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


def _children(client: Any, outcome: Any) -> list[Any]:
    experiment = client.get_experiment_by_name("deari-sweep").experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'")


def test_trial_runs_are_named_by_config_with_per_epoch_and_best_metrics(
    demo_sweep: tuple[MlflowRest, Any, SweepSettings], client: Any
) -> None:
    _, outcome, _ = demo_sweep
    children = _children(client, outcome)
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    for child in children:
        assert RUN_NAME.match(child.info.run_name), child.info.run_name
        assert not [key for key in child.data.metrics if key.startswith("final/")]
        history = {key: client.get_metric_history(child.info.run_id, key) for key in
                   ("val_mae", "best_val_mae", "best_epoch", "train_loss")}
        assert {key: [m.step for m in values] for key, values in history.items()} == {
            key: [1, 2] for key in history}
        val = [m.value for m in history["val_mae"]]
        assert history["best_val_mae"][-1].value == pytest.approx(min(val))
        assert history["best_epoch"][-1].value == 1 + int(np.argmin(val))
        params = child.data.params
        assert (params["n_layers"], params["hidden_size"], params["bayesian"], params["cell"]) == ("1", "16", "True",
                                                                                                  "gru")


def test_parent_holds_what_ran_the_space_the_table_and_a_link_to_the_best_trial(
    demo_sweep: tuple[MlflowRest, Any, SweepSettings], client: Any, tmp_path: Path
) -> None:
    server, outcome, settings = demo_sweep
    experiment = client.get_experiment_by_name("deari-sweep")
    assert "One **parent run per sweep**" in experiment.tags["mlflow.note.content"]
    parent = client.get_run(outcome.parent_run_id)
    ran = json.loads(parent.data.tags[SETTINGS_TAG])
    assert (ran["demo"], ran["dataset"], ran["epochs"], ran["num_samples"], ran["batch_size"]) == (
        True, "beijing-air", 2, 2, 32)
    space = dataclasses.replace(DEMO_SPACE, n_layers=(1,), hidden_size=(16,), unfreeze_every=(10,), n_samples=(2,))
    assert json.loads(parent.data.tags[SPACE_TAG]) == describe_space(space)
    assert {a.path for a in client.list_artifacts(outcome.parent_run_id)} >= {"trials.csv", "search_space.json",
                                                                              "plots"}
    assert [a.path for a in client.list_artifacts(outcome.parent_run_id, "plots")] == ["plots/mae_vs_depth_margin.png"]
    table = pd.read_csv(client.download_artifacts(outcome.parent_run_id, "trials.csv", str(tmp_path)))
    children = {c.info.run_id: c for c in _children(client, outcome)}
    assert set(table["run_id"]) == set(children)
    assert list(table["run_name"]) == [children[r].info.run_name for r in table["run_id"]]
    best = table.iloc[0]
    assert best["run_id"] == outcome.best_run_id == parent.data.tags["gapray.best_child_run_id"]
    description = parent.data.tags["mlflow.note.content"]
    link = f"[{best['run_name']}]({server.uri}/#/experiments/{experiment.experiment_id}/runs/{best['run_id']})"
    assert link in description
    metrics = parent.data.metrics
    assert metrics["test_mae"] == pytest.approx(outcome.test_metrics["mae"])
    assert metrics["locf_test_mae"] == pytest.approx(outcome.baselines["LOCF"]["mae"])
    assert metrics["mean_test_mae"] == pytest.approx(outcome.baselines["mean"]["mae"])
    assert 0.5 <= metrics["test_calibrated_coverage"] <= 1.0 and metrics["test_calibrated_width"] > 0


def test_champion_is_registered_from_the_best_trial_with_signature_example_params_and_scores(
    demo_sweep: tuple[MlflowRest, Any, SweepSettings], client: Any
) -> None:
    import mlflow.models

    _, outcome, _ = demo_sweep
    version = client.get_model_version_by_alias("deari", "champion")
    assert version.run_id == outcome.best_run_id
    assert version.description.startswith(f"Best trial `{client.get_run(outcome.best_run_id).info.run_name}`")
    assert version.tags["gapray.sweep"] == "demo-test" and version.tags["dataset"] == "beijing-air"
    info = mlflow.models.get_model_info("models:/deari@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    logged = client.get_logged_model(info.model_id)  # the version's model_id is not served over REST
    assert {"n_layers", "lr", "dml_margin", "unfreeze_every"} <= set(logged.params)
    assert float(logged.params["lr"]) == pytest.approx(outcome.best_config["lr"])
    scores = {m.key: m.value for m in logged.metrics}
    assert scores["test_mae"] == pytest.approx(outcome.test_metrics["mae"]) and "locf_test_mae" in scores


def test_the_report_compares_the_best_trial_with_the_baselines_and_says_what_to_open(
    demo_sweep: tuple[MlflowRest, Any, SweepSettings],
) -> None:
    _, outcome, _ = demo_sweep
    text = format_report(outcome)
    assert re.search(r"best trial \(d1-h16-m0\.\d\d-u10-lr\d\.\de-3\)\s+\d\.\d{4}\s+\d\.\d{4}", text), text
    assert re.search(r"\n  LOCF\s+\d\.\d{4}", text) and re.search(r"\n  mean\s+\d\.\d{4}", text)
    coverage = re.search(r"90 % intervals of the Bayesian best trial, split-conformal on validation: coverage "
                         r"(\d\.\d{3}), mean width (\d\.\d{3})", text)
    assert coverage and 0.5 <= float(coverage[1]) <= 1.0 and float(coverage[2]) > 0, text
    assert "0.0000" not in text.split("Test set")[1].split("In the MLflow UI")[0]
    assert "In the MLflow UI, experiment 'deari-sweep':" in text and "models:/deari@champion" in text
