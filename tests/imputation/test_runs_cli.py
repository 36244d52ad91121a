"""``gapray runs``: the status of every checkpointed run, read from real checkpoints of real training."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
import torch

from gapray.cli import main
from gapray.data.loaders import load_physionet2012
from gapray.data.splits import Split, imputation_split
from gapray.imputation import BRITS, BRITSConfig
from gapray.imputation.runs_cli import list_runs

SMALL = dict(hidden_size=8, batch_size=16, device="cpu", seed=0)


@pytest.fixture(scope="module")
def split(data_dir: Path) -> Split:
    dataset = load_physionet2012(data_dir / "physionet2012", "a", progress=False).subset(range(80))
    return imputation_split(dataset, protocol="deari", rate=0.1, seed=0, fold=0)


def _train(path: Path, split: Split, **fields: object) -> BRITS:
    model = BRITS(BRITSConfig(**{**SMALL, **fields}))  # type: ignore[arg-type]
    model.fit(split.train, split.val, checkpoint_path=path, show_progress=False)
    return model


def test_runs_reports_finished_unfinished_and_early_stopped_checkpoints(tmp_path: Path, split: Split) -> None:
    runs = tmp_path / "runs" / "imputation"
    finished = _train(runs / "done" / "brits-fold0.pt", split, epochs=3)
    # a time budget of 0 s stops after the first of 6 epochs: unfinished, like an interrupted run
    unfinished = _train(runs / "cut" / "brits-fold0.pt", split, epochs=6, max_seconds=0.0)
    early = runs / "early" / "brits-fold0.pt"
    early.parent.mkdir(parents=True)
    payload = torch.load(runs / "done" / "brits-fold0.pt", weights_only=True)
    payload["training"]["stopped"] = True  # as early stopping leaves it
    torch.save(payload, early)
    (runs / "broken").mkdir()
    (runs / "broken" / "brits-fold0.pt").write_bytes(b"not a checkpoint")

    statuses, problems = list_runs(tmp_path)
    by_run = {s.run: s for s in statuses}
    assert set(by_run) == {f"imputation/{name}/brits-fold0" for name in ("done", "cut", "early")}
    done, cut = by_run["imputation/done/brits-fold0"], by_run["imputation/cut/brits-fold0"]
    assert (done.epoch, done.epochs, done.state, done.hours_left) == (3, 3, "epoch limit", None)
    assert done.best_val_mae == pytest.approx(finished.state.best_val_mae)
    assert done.best_epoch == finished.state.best_epoch and done.patience == 10 and done.model == "BRITS"
    assert done.seconds_per_epoch == pytest.approx(
        statistics.median(h["epoch_seconds"] for h in finished.state.history))
    assert (cut.epoch, cut.epochs, cut.state) == (1, 6, "unfinished")
    assert cut.hours_left == pytest.approx(5 * unfinished.state.history[0]["epoch_seconds"] / 3600)
    assert by_run["imputation/early/brits-fold0"].state == "early-stopped"
    assert len(problems) == 1 and "broken" in problems[0] and "not a readable checkpoint" in problems[0]


def test_runs_command_prints_a_table_and_json_lines(tmp_path: Path, split: Split,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _train(tmp_path / "runs" / "imputation" / "tag" / "brits-fold0.pt", split, epochs=2)
    os.utime(tmp_path / "runs" / "imputation" / "tag" / "brits-fold0.pt", (0, 0))  # saved long ago
    assert main(["runs", "--cache-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["run", "model", "epoch"]
    assert table[1].split()[:3] == ["imputation/tag/brits-fold0", "BRITS", "2/2"] and table[1].endswith("d ago")
    assert main(["runs", "--cache-dir", str(tmp_path), "--kind", "imputation", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["run"] == "imputation/tag/brits-fold0" and row["state"] == "epoch limit" and row["epoch"] == 2
    assert main(["runs", "--cache-dir", str(tmp_path), "--kind", "sweeps"]) == 0
    assert "no checkpointed runs under" in capsys.readouterr().out
