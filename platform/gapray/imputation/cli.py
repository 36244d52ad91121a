"""``gapray impute``: fit and score one imputation model under a named protocol, print one JSON line.

With ``--model-uri``, ``--data`` and ``--out`` instead, the same command fills a user's table with
a fitted model (:mod:`gapray.imputation.table_cli`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from gapray.imputation.checkpoint import run_dir
from gapray.imputation.experiment import MODEL_NAMES, run_experiment
from gapray.imputation.table_cli import add_impute_arguments, impute_table_command

DATASETS = ("physionet2012", "beijing-air", "traffic")


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``gapray impute``."""
    parser = subparsers.add_parser(
        "impute", help="score an imputer on a benchmark (--model, --dataset), or fill your table (--model-uri, --data)",
        description="Fit and score an imputation model (DEARI Table 1 rows) on the held-out entries of a benchmark "
                    "dataset (--model, --dataset); or fill a table with a fitted model (--model-uri, --data, --out).")
    parser.add_argument("--model", default=None, choices=MODEL_NAMES, help="benchmark scoring: the model to fit")
    parser.add_argument("--dataset", default=None, choices=DATASETS, help="benchmark scoring: the dataset")
    parser.add_argument("--data-dir", default=None,
                        help="data root or the dataset's folder (default: $GAPRAY_DATA_DIR, ../shared/data, cache)")
    parser.add_argument("--protocol", default="deari", choices=("deari", "pypots"))
    parser.add_argument("--mask-rate", type=float, default=0.1, help="fraction of observed values held out")
    parser.add_argument("--folds", type=int, default=1, help="run folds 0..N-1 of the 5-fold protocol")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: 300)")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget per fold")
    parser.add_argument("--hidden-size", type=int, default=None, help="RNN hidden units (default: 108)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 PhysioNet/traffic, else 128")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    parser.add_argument("--subset", default="a", help="PhysioNet 2012 set: a, b or c")
    parser.add_argument("--per-station", action="store_true", help="Beijing air: one sample per station")
    parser.add_argument("--run-name", default=None,
                        help="checkpoint name under $GAPRAY_CACHE_DIR/runs/impute/ (default: from the settings)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run with these settings from its last finished epoch")
    add_impute_arguments(parser)
    parser.set_defaults(handler=_impute)


def _impute(args: argparse.Namespace) -> int:
    from gapray.data.loaders import load_dataset

    if args.model_uri is not None or args.data is not None:
        if args.model is not None or args.dataset is not None:
            raise ValueError("gapray impute: --model/--dataset (benchmark scoring) and --model-uri/--data "
                             "(fill a table) do not mix")
        return impute_table_command(args)
    if args.model is None or args.dataset is None:
        raise ValueError("gapray impute: give --model and --dataset (score on a benchmark), or --model-uri, --data "
                         "and --out (fill your table)")

    if not 1 <= args.folds <= 5:
        raise ValueError(f"--folds must be in [1, 5], got {args.folds}")
    options: dict[str, Any] = {}
    if args.dataset == "physionet2012":
        options = {"subset": args.subset, "progress": False}
    elif args.dataset == "beijing-air":
        options = {"per_station": args.per_station}
    checkpoints = run_dir("impute", args.run_name or _run_name(args))
    if checkpoints.exists() and any(checkpoints.glob("fold*.pt")) and not args.resume:
        raise ValueError(f"{checkpoints} holds checkpoints of an earlier run with these settings: pass --resume to "
                         "continue it, --run-name NAME to start a separate one, or delete the folder")
    print(f"checkpoints after every epoch: {checkpoints}; an interrupted run continues with the same "
          "command and --resume", file=sys.stderr, flush=True)
    dataset = load_dataset(args.dataset, args.data_dir, **options)
    result = run_experiment(
        args.model, dataset, protocol=args.protocol, mask_rate=args.mask_rate, folds=args.folds, seed=args.seed,
        checkpoint_dir=checkpoints,
        epochs=args.epochs, hidden_size=args.hidden_size, batch_size=args.batch_size, patience=args.patience,
        device=args.device, max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
    )
    print(json.dumps(_clean(result)))
    return 0


def _run_name(args: argparse.Namespace) -> str:
    """A checkpoint folder name that changes with every setting that changes the run."""
    parts = [args.model, args.dataset, args.protocol, f"r{args.mask_rate:g}", f"s{args.seed}"]
    for flag in ("hidden_size", "batch_size", "patience", "subset"):
        value = getattr(args, flag)
        if value is not None and not (flag == "subset" and value == "a"):
            parts.append(f"{flag.split('_')[0]}{value}")
    if args.per_station:
        parts.append("per-station")
    return "-".join(parts)


def _clean(value: object) -> object:
    """JSON-safe copy: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
