"""``gapray runs``: where every checkpointed training run under the cache stands.

Long runs (``benchmarks/imputation.py``, ``gapray fit``, ``gapray impute``) save a checkpoint
after every epoch under ``$GAPRAY_CACHE_DIR/runs/<kind>/<name>/``. This command reads those
checkpoints (their training state only; the weights are memory-mapped, not loaded) and prints one
line per run: epochs done of the limit, best validation MAE and its epoch, the early-stopping
counter, whether the run finished, recent seconds per epoch, an upper bound on the time left
(the epoch limit; early stopping can end it sooner) and when it was last saved. ``--json`` prints
the same as one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gapray.data.cache import cache_root


@dataclass(frozen=True)
class RunStatus:
    """One checkpoint's training state, as ``gapray runs`` reports it."""

    run: str
    """Path of the checkpoint under ``<cache>/runs``, without ``.pt``."""
    model: str
    epoch: int
    epochs: int
    best_val_mae: float | None
    best_epoch: int
    bad_epochs: int
    patience: int
    state: str
    """``early-stopped``, ``epoch limit`` or ``unfinished`` (running, interrupted, or stopped by a time budget)."""
    seconds_per_epoch: float | None
    """Median of the last 5 epochs (validation included)."""
    hours_left: float | None
    """``unfinished`` runs: epochs left to the limit x ``seconds_per_epoch``: an upper bound."""
    saved_minutes_ago: float


def run_status(path: Path, root: Path) -> RunStatus:
    """The :class:`RunStatus` of the checkpoint at ``path`` (``root``: the runs folder).

    Raises ``ValueError`` naming the file when it is not a gapray training checkpoint.
    """
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # truncated, foreign or not a zip checkpoint: name the file, not torch's internals
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("training"), dict) or "config" not in payload:
        raise ValueError(f"{path}: not a gapray training checkpoint (no training state)")
    training, config = payload["training"], payload["config"]
    history = training.get("history") or []
    recent = [h["epoch_seconds"] for h in history[-5:] if "epoch_seconds" in h]
    seconds = statistics.median(recent) if recent else None
    epoch, epochs = int(training["epoch"]), int(config.get("epochs", 0))
    if training.get("stopped"):
        state = "early-stopped"
    elif epoch >= epochs:
        state = "epoch limit"
    else:
        state = "unfinished"
    hours_left = (epochs - epoch) * seconds / 3600 if state == "unfinished" and seconds is not None else None
    best = training.get("best_val_mae")
    return RunStatus(
        run=str(path.relative_to(root).with_suffix("")), model=str(payload.get("model", "?")), epoch=epoch,
        epochs=epochs, best_val_mae=None if best is None or not math.isfinite(best) else float(best),
        best_epoch=int(training.get("best_epoch", 0)), bad_epochs=int(training.get("bad_epochs", 0)),
        patience=int(config.get("patience", 0)), state=state, seconds_per_epoch=seconds, hours_left=hours_left,
        saved_minutes_ago=(time.time() - path.stat().st_mtime) / 60)


def list_runs(cache_dir: str | Path | None = None, kind: str | None = None) -> tuple[list[RunStatus], list[str]]:
    """Every checkpoint under ``<cache>/runs[/<kind>]``, sorted by run: (statuses, problems)."""
    root = cache_root(cache_dir) / "runs"
    base = root / kind if kind else root
    statuses, problems = [], []
    # an atomic save's temporary file ends in .tmp, so a checkpoint being written is not listed
    for path in sorted(base.rglob("*.pt")) if base.is_dir() else []:
        try:
            statuses.append(run_status(path, root))
        except ValueError as error:
            problems.append(str(error))
    return statuses, problems


def format_table(statuses: list[RunStatus]) -> str:
    """Aligned plain-text table of ``statuses``."""
    header = ("run", "model", "epoch", "best val MAE", "patience", "state", "s/epoch", "h left <=", "saved")
    rows = [header]
    for s in statuses:
        best = "-" if s.best_val_mae is None else f"{s.best_val_mae:.4f} @ {s.best_epoch}"
        ago = s.saved_minutes_ago
        saved = f"{ago:.0f} min ago" if ago < 120 else f"{ago / 60:.1f} h ago" if ago < 48 * 60 else \
            f"{ago / 1440:.0f} d ago"
        rows.append((s.run, s.model, f"{s.epoch}/{s.epochs}", best, f"{s.bad_epochs}/{s.patience}", s.state,
                     "-" if s.seconds_per_epoch is None else f"{s.seconds_per_epoch:.1f}",
                     "-" if s.hours_left is None else f"{s.hours_left:.1f}", saved))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``gapray runs``."""
    parser = subparsers.add_parser("runs", help="where every checkpointed training run under the cache stands",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="cache root (default: $GAPRAY_CACHE_DIR or ~/.cache/gapray)")
    parser.add_argument("--kind", default=None, help="only runs/<kind>, e.g. imputation")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    statuses, problems = list_runs(args.cache_dir, args.kind)
    if args.json:
        for status in statuses:
            print(json.dumps(asdict(status)))
    elif statuses:
        print(format_table(statuses))
    else:
        print(f"no checkpointed runs under {cache_root(args.cache_dir) / 'runs' / (args.kind or '')}")
    for problem in problems:
        print(f"gapray runs: skipped {problem}", flush=True)
    return 0
