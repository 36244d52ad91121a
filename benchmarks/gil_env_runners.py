"""GIL under RLlib DDPG: env steps per second with 0, 1 and 2 remote env runners.

How to run this script
----------------------
    python benchmarks/gil_env_runners.py                    # digits MLP, 0/1/2 runners, 5 timed iterations
    python benchmarks/gil_env_runners.py --dataset physionet2012 --data-root ../shared/data \\
        --lstm-hidden 64 --iterations 3

For each runner count it builds the algorithm exactly as ``tuning/gil_ddpg.py`` does
(:func:`gapray.rl.gil_training.build_ddpg_config`), runs one untimed iteration (actor start-up,
the first learner updates), then times ``--iterations`` calls of ``algo.train()``: env steps
sampled per wall-clock second, learner updates included (DQN's training step samples, then
updates at the configured replay ratio). With remote runners each sample call collects
``update_every`` steps from every runner in parallel, and the weights go to the runners
through Ray's object store after each update. So with 2 runners the learner takes its
``gradient_steps`` once per 2 x ``update_every`` env steps: half the updates per env step. The
``2m`` row divides ``update_every`` by the runner count to train as much per env step as 0 or 1.
Ray gets ``max(runners) + 1`` logical CPUs (the trial process plus one per runner) whatever the
machine has.

Results to expect
-----------------
On one machine with 2 cores, remote runners only add work (process hops, weight broadcasts)
unless the env step itself dominates; DESIGN.md sec. 5 found ``num_env_runners=0`` fastest on
2 cores. Remote runners pay off on a cluster, where each runner has its own cores. Results go
to ``benchmarks/results/gil_env_runners.{json,md}`` with the machine's load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def measure(settings: Any, iterations: int) -> dict[str, Any]:
    """Build, warm up with one iteration, then time ``iterations`` training iterations."""
    from gapray.rl.gil_training import build_ddpg_config

    started = time.perf_counter()
    algo = build_ddpg_config(settings).build_algo()
    try:
        built = time.perf_counter() - started
        first = algo.train()
        tick = time.perf_counter()
        for _ in range(iterations):
            result = algo.train()
        seconds = time.perf_counter() - tick
    finally:
        algo.stop()
    steps = _sampled(result) - _sampled(first)
    trained = _trained(result) - _trained(first)
    return {"env_runners": settings.num_env_runners, "update_every": settings.update_every,
            "gradient_steps": settings.gradient_steps or settings.update_every, "build_seconds": round(built, 1),
            "timed_seconds": round(seconds, 2), "env_steps": steps, "env_steps_per_second": round(steps / seconds, 2),
            "trained_steps_per_env_step": round(trained / steps, 2)}


def _sampled(result: dict[str, Any]) -> int:
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def _trained(result: dict[str, Any]) -> int:
    """Replayed env steps the learner trained on (train batch rows before row subsampling)."""
    return int(result["learners"]["__all_modules__"]["num_module_steps_trained_lifetime"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--runners", default="0,1,2,2m",
                        help="comma-separated env runner counts; 'Nm': N runners with update_every divided by N, "
                             "so the learner trains on as many replayed steps per env step as with 0 or 1")
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per runner count")
    parser.add_argument("--steps-per-iteration", type=int, default=40)
    parser.add_argument("--horizon", type=int, default=400, help="env steps per GIL episode")
    parser.add_argument("--mlp-hidden", type=int, default=64)
    parser.add_argument("--lstm-hidden", type=int, default=64)
    parser.add_argument("--output", default=str(RESULTS / "gil_env_runners"), help="path stem of the .json/.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import ray

    from gapray.rl.gil_training import SMOKE_TEST, GILDDPGSettings

    variants = [(int(n.rstrip("m")), n.endswith("m")) for n in args.runners.split(",")]
    runner_counts = [n for n, _ in variants]
    base = {**SMOKE_TEST, "dataset": args.dataset, "data_root": args.data_root, "horizon": args.horizon,
            "mlp_hidden": args.mlp_hidden, "lstm_hidden": args.lstm_hidden,
            "steps_per_iteration": args.steps_per_iteration, "max_train_samples": None}
    load = os.getloadavg()[0]
    ray.init(num_cpus=max(runner_counts) + 1, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    rows = []
    try:
        for runners, matched in variants:
            update_every = GILDDPGSettings(**base).update_every
            overrides = ({"update_every": max(update_every // runners, 1), "gradient_steps": update_every}
                         if matched else {})
            settings = GILDDPGSettings(**{**base, "num_env_runners": runners, **overrides})
            row = measure(settings, args.iterations)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        ray.shutdown()
    report = {"command": "python benchmarks/gil_env_runners.py " + " ".join(argv or []),
              "settings": dataclasses.asdict(GILDDPGSettings(**base)), "iterations": args.iterations,
              "load_average_1min_at_start": round(load, 1), "load_average_1min_at_end": round(os.getloadavg()[0], 1),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "ray_logical_cpus": max(runner_counts) + 1,
              "rows": rows}
    stem = Path(args.output)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = ["# GIL DDPG: env steps per second by number of remote env runners", "",
             f"`{report['command'].strip()}`: {args.dataset}, horizon {args.horizon}, "
             f"{args.steps_per_iteration} env steps per iteration, {args.iterations} timed iterations after one "
             f"untimed; Ray with {report['ray_logical_cpus']} logical CPUs on {report['machine']}; 1-min load "
             f"average {report['load_average_1min_at_start']} at start, {report['load_average_1min_at_end']} at end "
             "(other jobs shared the machine).", "",
             "Each learner update samples `update_every` env steps from every runner, then takes `gradient_steps` "
             "gradient steps; the last column is replayed steps trained on per env step sampled.", "",
             "| env runners | update_every | gradient steps | env steps/s | env steps timed | timed s | build s "
             "| trained per env step |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['env_runners']} | {r['update_every']} | {r['gradient_steps']} | {r['env_steps_per_second']} | "
              f"{r['env_steps']} | {r['timed_seconds']} | {r['build_seconds']} | {r['trained_steps_per_env_step']} |"
              for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
