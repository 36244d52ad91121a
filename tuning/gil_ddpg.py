"""Train GIL's importance policy with RLlib DDPG workers through Ray Tune, tracked in MLflow.

Each Tune trial learns the policy with ``gapray.rl.DDPG`` on ``gapray/GIL-v0`` (row-wise actor
and critic, GIL's behavioural policy of Eq. 42), keeps the RLlib checkpoint with the best
validation score of a training episode, then trains a fresh predictor with the learned policy
(deterministic) and picks its checkpoint on validation. The driver picks the best trial on
validation and trains the ``ones`` (zero imputation) and ``mask`` (GIL-H) baselines on the same
split. MLflow experiment ``gil-ddpg``: one parent run (settings, GIL/ones/mask test scores, the
final predictor), one child run per trial (filtered metrics: episode return, critic and actor
losses, predictor validation accuracy/AUC/AP; the final predictor and the policy checkpoint as
artifacts). The logic lives in ``gapray.rl.gil_training``; this script only parses flags.

How to run this script
----------------------
Smoke test (digits, tiny MLP, 2 iterations; about a minute on 2 CPU cores)::

    python tuning/gil_ddpg.py --smoke-test

PhysioNet 2012 mortality with the LSTM predictor (smaller than the paper's 1024 units on CPU)::

    python tuning/gil_ddpg.py --dataset physionet2012 --data-root ../shared/data --lstm-hidden 64 \
        --horizon 500 --iterations 10 --final-steps 1000

MNIST at 90 % MCAR with the MLP (paper Table 3)::

    python tuning/gil_ddpg.py --dataset mnist --data-root ../shared/data --missing-rate 0.9 \
        --horizon 2000 --iterations 20 --final-steps 10000

Paper scale (1024-unit LSTM, 400-300 actor and critic, 2,000-step runs, 5 seeds x 4 learning-rate
pairs on the GPU workers of ``cluster.yaml``; the command and its cost estimate are in
``docs/gil_reproduction.md`` section 5)::

    ray submit cluster.yaml tuning/gil_ddpg.py -- --address auto --dataset physionet2012 \
        --lstm-hidden 1024 --rl-hiddens 400,300 --placeholder zero --device cuda --num-env-runners 0 \
        --horizon 2000 --iterations 10 --steps-per-iteration 200 --final-steps 2000 \
        --seeds 0 1 2 3 4 --search-lrs --storage-path s3://BUCKET/gapray/ray_results

On a Ray cluster (remote env runners; the MLflow server on the head is ``MLFLOW_TRACKING_URI``
there, docs/cluster.md)::

    ray submit cluster.yaml tuning/gil_ddpg.py -- --address auto --num-env-runners 3 \
        --storage-path s3://BUCKET/gapray/ray_results

One trial asks Ray for 1 CPU for itself plus 1 CPU per env runner. A trial that can never fit
the cluster fails at once, naming what it needs and what the cluster has (Tune would keep it
PENDING forever); ``--resource-wait-seconds 600`` first gives an autoscaler time to add nodes.

``--search-lrs`` grid-searches the actor/critic learning rates (4 trials); ``--num-samples``
repeats each. ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows the runs.

Results to expect
-----------------
A table of test accuracy / AUC / AP for GIL next to ``ones`` and ``mask`` (validation AUC
alongside); in MLflow (experiment ``gil-ddpg``) the parent run's ``plots/gil_vs_baselines.png``
compares them (over seeds with ``--seeds 0 1 2``) and the best trial's final predictor is
registered as ``models:/gil-predictor@champion``. The smoke test (digits, 50 % missing, 300
predictor updates) learns: GIL 0.572 test accuracy, ``ones`` and ``mask`` 0.581 (chance 0.1;
the 40-step policy ties the baselines), in 651 s with the load average near 14 on this 2-core
machine. The paper reports on PhysioNet 2012 mortality AUC 82.20
(GIL) vs 82.00 (GIL-H) vs 81.14 (zero imputation) with a 1024-unit LSTM on a GPU, and on MNIST
90 % MCAR accuracy 78.47 vs 78.44 vs 76.67: the differences are small, so compare over seeds.
Measured here (``benchmarks/results/gil_ddpg_*.md``; 2-core CPU, LSTM 64): with 2,000
policy-training steps and 5 seeds, PhysioNet test AUC GIL - ones = +0.30 ± 0.58 (paired by
seed, standard error), AP +0.91 ± 1.05, accuracy -0.15 ± 0.20, with a zero placeholder (where
GIL-H is exactly ``ones``); GIL-H 61.08 with the reference 3 x max placeholder (387 on z-scored
data saturates the LSTM); MNIST 90 % MCAR: ``gil_ddpg_mnist_mcar90_long.md``. The learned
importances are small (PhysioNet: means 0.002-0.047, varying from row to row by a quarter to a
third of that; ``final_importance_within_feature_std`` in MLflow), and Adam cancels any importance that is
constant per input column, so GIL stays within noise of zero imputation here. One env step under
RLlib DDPG at the reference's one gradient step per env step costs 1.85-1.98x the PhysioNet
env stepped by a fixed policy with the default learner update every 2 env steps (2 gradient
steps each), 1.98-2.06x updating every env step; the cheap MNIST MLP env (10 ms per step) is
3.8x, 1.8x at one gradient step per 8 env steps (``benchmarks/results/gil_ddpg_*_ratio.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from gapray.rl.algorithm import DDPG
from gapray.rl.gil_training import (
    SMOKE_TEST,
    GILDDPGSettings,
    build_ddpg_config,
    default_tracking_uri,
    format_outcome,
    run_gil_ddpg,
)
from gapray.sweep.resources import require_rllib_trial_fits
from gapray.sweep.runner import connect_ray
from gapray.sweep.settings import add_settings_arguments


def build_parser() -> argparse.ArgumentParser:
    """One flag per :class:`GILDDPGSettings` field, plus the driver's own flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_settings_arguments(parser, GILDDPGSettings)
    parser.add_argument("--address", default="local", help="Ray address: local, auto, or ray://host:port")
    parser.add_argument("--tracking-uri", default=default_tracking_uri(), help="MLflow tracking URI")
    parser.add_argument("--storage-path", default="~/ray_results", help="Ray Tune storage (shared on a cluster)")
    parser.add_argument("--num-samples", type=int, default=1, help="Tune samples (x4 with --search-lrs)")
    parser.add_argument("--search-lrs", action="store_true", help="grid-search actor/critic learning rates")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="one trial per seed (overrides --seed); the parent's plot compares GIL, ones and mask "
                             "over them")
    parser.add_argument("--name", default=None, help="Tune experiment and MLflow parent run name")
    parser.add_argument("--output", default=None, help="write the outcome as JSON here")
    parser.add_argument("--smoke-test", action="store_true", help="tiny digits run to check the wiring")
    parser.add_argument("--resource-wait-seconds", type=float, default=0.0,
                        help="wait this long for an autoscaler to add the nodes one trial needs (0: fail at once)")
    return parser


DRIVER_FLAGS = ("address", "tracking_uri", "storage_path", "num_samples", "search_lrs", "name", "output",
                "smoke_test", "resource_wait_seconds", "seeds")
"""Flags of the driver, not of :class:`GILDDPGSettings`."""


def parse(argv: list[str] | None = None) -> tuple[GILDDPGSettings, dict[str, Any]]:
    """The run's settings and the driver's flags (``--smoke-test`` fills the fields left at their defaults)."""
    args = vars(build_parser().parse_args(argv))
    extra = {k: args.pop(k) for k in DRIVER_FLAGS}
    if extra["smoke_test"]:
        defaults = {f.name: f.default for f in dataclasses.fields(GILDDPGSettings)}
        args.update({k: v for k, v in SMOKE_TEST.items() if args[k] == defaults[k]})
    return GILDDPGSettings(**args), extra


def main(argv: list[str] | None = None) -> int:
    try:
        settings, extra = parse(argv)
        connect_ray(extra["address"])  # fail fast, before any MLflow run, if one trial can never be placed
        require_rllib_trial_fits(DDPG, build_ddpg_config(settings), what="one trial of tuning/gil_ddpg.py",
                                 advice="Lower --num-env-runners, or add nodes.",
                                 wait_seconds=extra["resource_wait_seconds"])
        outcome = run_gil_ddpg(settings, tracking_uri=extra["tracking_uri"], storage_path=extra["storage_path"],
                               address=extra["address"], num_samples=extra["num_samples"],
                               search_lrs=extra["search_lrs"], name=extra["name"], seeds=extra["seeds"])
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"gil_ddpg: error: {error}", file=sys.stderr)
        return 2
    print(format_outcome(outcome))
    if extra["output"]:
        with open(extra["output"], "w") as handle:
            json.dump(dataclasses.asdict(outcome), handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
