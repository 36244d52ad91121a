"""Resumable runs: a run killed at any point and resumed ends with the weights of an uninterrupted run.

The interrupted runs are real processes killed by a real signal (SIGKILL in the middle of an
epoch, SIGTERM right after a checkpoint), on a subset of PhysioNet set-a, with a Bayesian DEARI
whose transformer dropout, shuffling and weight sampling all draw random numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gapray.data.loaders import load_physionet2012
from gapray.data.splits import Split, imputation_split
from gapray.imputation import DEARI, DEARIConfig
from gapray.imputation.checkpoint import CheckpointMismatch, resume_or_start, run_dir
from gapray.imputation.experiment import fit_and_score

# Bayesian (weights sampled every 3rd step), 2 layers (attention initial state, dropout 0.1)
CONFIG = dict(n_layers=2, hidden_size=8, attention_feedforward=16, batch_size=16, epochs=4, patience=50,
              bayesian=True, unfreeze_every=3, n_samples=2, device="cpu", seed=3)
N_RECORDS = 80

CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from gapray.data.loaders import load_physionet2012
    from gapray.data.splits import imputation_split
    from gapray.imputation import DEARI, DEARIConfig
    import gapray.imputation.training as training

    data_dir, checkpoint, config, kill_epoch, kill_step, how = sys.argv[1:7]
    kill_epoch, kill_step = int(kill_epoch), int(kill_step)
    dataset = load_physionet2012(data_dir, "a", progress=False).subset(range({n}))
    split = imputation_split(dataset, protocol="deari", rate=0.1, seed=0, fold=0)
    sig = signal.SIGKILL if how == "kill" else signal.SIGTERM
    original, calls = training.train_one_epoch, [0]

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_epoch:
            steps = [0]
            def hook():
                steps[0] += 1
                if steps[0] == kill_step:
                    os.kill(os.getpid(), sig)
            kwargs["step_hook"] = hook
        return original(*args, **kwargs)

    training.train_one_epoch = interrupted
    model = DEARI(DEARIConfig(**eval(config)))
    model.fit(split.train, split.val, checkpoint_path=checkpoint, show_progress=False)
    print("finished without interruption")
""").replace("{n}", str(N_RECORDS))


@pytest.fixture(scope="module")
def split(data_dir: Path) -> Split:
    dataset = load_physionet2012(data_dir / "physionet2012", "a", progress=False).subset(range(N_RECORDS))
    return imputation_split(dataset, protocol="deari", rate=0.1, seed=0, fold=0)


@pytest.fixture(scope="module")
def uninterrupted(split: Split) -> DEARI:
    # one thread, as in the child processes: a module fixture runs before the per-test thread
    # fixture, and another thread count sums in another order (bits differ from epoch 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = DEARI(DEARIConfig(**CONFIG))
        model.fit(split.train, split.val, show_progress=False)
    finally:
        torch.set_num_threads(previous)
    return model


def _interrupt(data_dir: Path, checkpoint: Path, kill_epoch: int, kill_step: int, how: str) -> int:
    """Run the fit in a child process that sends itself ``how`` at step ``kill_step`` of epoch ``kill_epoch``."""
    script = checkpoint.parent / "child.py"
    script.write_text(CHILD)
    result = subprocess.run([sys.executable, str(script), str(data_dir / "physionet2012"), str(checkpoint),
                             repr(CONFIG), str(kill_epoch), str(kill_step), how],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "finished without interruption" not in result.stdout, result.stderr[-2000:]
    return result.returncode


def _assert_same_weights(a: DEARI, b: DEARI) -> None:
    assert a.core is not None and b.core is not None
    left, right = a.core.state_dict(), b.core.state_dict()
    assert left.keys() == right.keys()
    different = [k for k in left if not torch.equal(left[k], right[k])]
    assert not different, f"weights differ after resuming: {different[:5]}"


@pytest.mark.parametrize(("how", "kill_epoch", "kill_step", "signum", "saved_epochs"), [
    ("kill", 3, 2, signal.SIGKILL, 2),   # SIGKILL in the middle of epoch 3: epochs 1-2 survive
    ("term", 2, 1, signal.SIGTERM, 1),   # SIGTERM early in epoch 2: epoch 1 survives
])
def test_a_run_killed_mid_epoch_resumes_to_exactly_the_uninterrupted_weights(
        tmp_path: Path, data_dir: Path, split: Split, uninterrupted: DEARI, how: str, kill_epoch: int,
        kill_step: int, signum: int, saved_epochs: int) -> None:
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    returncode = _interrupt(data_dir, checkpoint, kill_epoch, kill_step, how)
    assert returncode == -signum
    assert [p.name for p in checkpoint.parent.iterdir() if p.suffix == ".pt"] == ["checkpoint.pt"]

    resumed, was_resumed = resume_or_start(DEARI(DEARIConfig(**CONFIG)), checkpoint)
    assert was_resumed and resumed.state.epoch == saved_epochs  # lost only the epoch in progress
    resumed.fit(split.train, split.val, checkpoint_path=checkpoint, show_progress=False)

    assert resumed.state.epoch == uninterrupted.state.epoch == CONFIG["epochs"]
    assert [h["val_mae"] for h in resumed.state.history] == [h["val_mae"] for h in uninterrupted.state.history]
    assert resumed.state.best_epoch == uninterrupted.state.best_epoch
    _assert_same_weights(resumed, uninterrupted)  # best weights (fit ends on them)
    resumed.use_best_weights()
    assert resumed.save(tmp_path / "a.pt") and uninterrupted.save(tmp_path / "b.pt")
    latest_a = torch.load(tmp_path / "a.pt", weights_only=True)["resume_weights"]
    latest_b = torch.load(tmp_path / "b.pt", weights_only=True)["resume_weights"]
    assert all(torch.equal(latest_a[k], latest_b[k]) for k in latest_a)  # and the latest epoch's weights


def test_an_early_stopped_checkpoint_is_not_trained_further(tmp_path: Path, split: Split) -> None:
    config = {**CONFIG, "bayesian": False, "patience": 1, "epochs": 30, "lr": 0.05}
    checkpoint = tmp_path / "stopped.pt"
    model = DEARI(DEARIConfig(**config))
    model.fit(split.train, split.val, checkpoint_path=checkpoint, show_progress=False)
    assert model.state.stopped and model.state.epoch < 30
    resumed, _ = resume_or_start(DEARI(DEARIConfig(**config)), checkpoint)
    assert resumed.fit(split.train, split.val, show_progress=False) == []
    assert resumed.state.epoch == model.state.epoch
    _assert_same_weights(resumed, model)



def test_raising_the_patience_continues_an_early_stopped_run_as_if_it_had_never_stopped(
        tmp_path: Path, split: Split) -> None:
    config = {**CONFIG, "bayesian": False, "patience": 1, "epochs": 30, "lr": 0.05}
    checkpoint = tmp_path / "stopped.pt"
    stopped = DEARI(DEARIConfig(**config))
    stopped.fit(split.train, split.val, checkpoint_path=checkpoint, show_progress=False)
    assert stopped.state.stopped and stopped.state.epoch < 30
    longer = {**config, "patience": 100, "epochs": stopped.state.epoch + 2}
    resumed, was_resumed = resume_or_start(DEARI(DEARIConfig(**longer)), checkpoint)
    assert was_resumed and not resumed.state.stopped and resumed.config.patience == 100
    assert len(resumed.fit(split.train, split.val, show_progress=False)) == 2
    straight = DEARI(DEARIConfig(**longer))
    straight.fit(split.train, split.val, show_progress=False)
    assert resumed.state.epoch == straight.state.epoch == longer["epochs"]
    assert [h["val_mae"] for h in resumed.state.history] == [h["val_mae"] for h in straight.state.history]
    assert resumed.state.best_epoch == straight.state.best_epoch
    _assert_same_weights(resumed, straight)

def test_resuming_under_other_settings_names_the_fields(tmp_path: Path, split: Split) -> None:
    checkpoint = tmp_path / "c.pt"
    DEARI(DEARIConfig(**{**CONFIG, "epochs": 1})).fit(split.train, split.val, checkpoint_path=checkpoint,
                                                      show_progress=False)
    with pytest.raises(CheckpointMismatch, match=r"hidden_size: saved 8, requested 16.*lr: saved"):
        resume_or_start(DEARI(DEARIConfig(**{**CONFIG, "hidden_size": 16, "lr": 1e-2})), checkpoint)
    # a higher epoch limit is a continuation, not a mismatch
    longer, resumed = resume_or_start(DEARI(DEARIConfig(**{**CONFIG, "epochs": 2})), checkpoint)
    assert resumed and longer.config.epochs == 2 and longer.state.epoch == 1


def test_fit_and_score_reports_the_whole_run_across_sessions(tmp_path: Path, split: Split) -> None:
    checkpoint = tmp_path / "row.pt"
    config = {**CONFIG, "bayesian": False}
    first = fit_and_score(DEARI(DEARIConfig(**{**config, "epochs": 2})), split, checkpoint_path=checkpoint,
                          show_progress=False)
    second = fit_and_score(DEARI(DEARIConfig(**config)), split, checkpoint_path=checkpoint, show_progress=False)
    assert first["epochs"] == 2 and first["resumed_from_epoch"] == 0
    assert second["epochs"] == 4 and second["resumed_from_epoch"] == 2
    assert second["epoch_seconds"][:2] == first["epoch_seconds"]
    assert second["fit_seconds"] == pytest.approx(sum(second["epoch_seconds"]))


def test_run_dir_lives_under_the_cache_root_and_refuses_path_tricks(tmp_path: Path) -> None:
    assert run_dir("imputation", "physionet2012_long/deari-fold0", tmp_path) == \
        tmp_path / "runs" / "imputation" / "physionet2012_long" / "deari-fold0"
    for bad in ("../escape", "/abs", "a b", ""):
        with pytest.raises(ValueError, match="run name"):
            run_dir("imputation", bad, tmp_path)


def test_benchmark_refuses_to_overwrite_a_checkpoint_without_resume(tmp_path: Path, data_dir: Path) -> None:
    env = {**os.environ, "GAPRAY_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "benchmarks/imputation.py", "--data-dir", str(data_dir), "--dataset", "beijing-air",
               "--models", "brits-gru", "--epochs", "1", "--hidden-size", "8", "--tag", "ckpt_test",
               "--out-dir", str(tmp_path / "results"), "--no-progress"]
    repo = Path(__file__).resolve().parents[2]
    first = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "--resume" in first.stdout  # says how to continue
    saved = tmp_path / "cache" / "runs" / "imputation" / "ckpt_test" / "brits-gru-fold0.pt"
    assert saved.exists()
    again = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "pass --resume" in again.stderr
    resumed = subprocess.run(command + ["--resume"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = json.loads((tmp_path / "results" / "imputation_ckpt_test.json").read_text())["rows"]
    assert [(r["model"], r["epochs"]) for r in rows] == [("brits-gru", 1)]  # finished rows are kept, not redone
