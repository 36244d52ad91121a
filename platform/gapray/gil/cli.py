"""``gapray gil evaluate``: train a GIL predictor with a policy (or after an imputer) and print
its test accuracy, ROC AUC and average precision as JSON."""

from __future__ import annotations

import argparse
import json

from gapray.gil.baselines import IMPUTERS, train_imputed
from gapray.gil.datasets import DATASETS, load_task
from gapray.gil.policies import POLICIES
from gapray.gil.training import GILTrainer, TrainingConfig


def _placeholder(value: str) -> str | float:
    try:
        return float(value)
    except ValueError:
        return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``gil evaluate`` under ``gapray``."""
    gil = subparsers.add_parser("gil", help="gradient importance learning (imputation-free prediction)")
    commands = gil.add_subparsers(dest="gil_command", required=True)
    evaluate = commands.add_parser("evaluate", help="train a predictor and print test accuracy/AUC/AP as JSON")
    evaluate.add_argument("--policy", choices=tuple(POLICIES), default="mask",
                          help="importance policy: ones (plain, zero placeholder), mask (GIL-H), random")
    evaluate.add_argument("--impute", choices=IMPUTERS, default=None,
                          help="two-step baseline: impute first, then train with ones (overrides --policy)")
    evaluate.add_argument("--dataset", choices=DATASETS, default="digits")
    evaluate.add_argument("--data-dir", default=None, help="data root (default: $GAPRAY_DATA_DIR, ../shared/data)")
    evaluate.add_argument("--missing-rate", type=float, default=0.5, help="pixels removed (mnist, digits)")
    evaluate.add_argument("--pattern", choices=("mcar", "mar"), default="mcar", help="mask type (mnist, digits)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the predictor, batches and mask")
    defaults = TrainingConfig()
    evaluate.add_argument("--steps", type=int, default=defaults.steps)
    evaluate.add_argument("--batch-size", type=int, default=defaults.batch_size)
    evaluate.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    evaluate.add_argument("--hidden-sizes", type=int, nargs="+", default=list(defaults.hidden_sizes),
                          help="MLP hidden widths (first = encoder)")
    evaluate.add_argument("--lstm-hidden-size", type=int, default=defaults.lstm_hidden_size)
    evaluate.add_argument("--placeholder", type=_placeholder, default=defaults.placeholder,
                          help="value for missing entries: a number, zero, 3max or auto")
    evaluate.add_argument("--eval-every", type=int, default=defaults.eval_every,
                          help="validate every N steps and keep the best checkpoint (0: last)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    config = TrainingConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            hidden_sizes=tuple(args.hidden_sizes), lstm_hidden_size=args.lstm_hidden_size,
                            placeholder=args.placeholder, eval_every=args.eval_every, seed=args.seed,
                            device=args.device)
    task = load_task(args.dataset, args.data_dir, args.missing_rate, args.pattern, seed=args.seed)
    if args.impute:
        result = train_imputed(task, args.impute, config)
        method = f"{args.impute}-impute"
    else:
        result = GILTrainer(config).fit(task, args.policy, progress=True)
        method = args.policy
    print(json.dumps({"dataset": args.dataset, "method": method, **result.test,
                      **{f"val_{k}": v for k, v in result.val.items()}, "best_step": result.best_step,
                      "seconds": round(result.seconds, 2)}))
    return 0
