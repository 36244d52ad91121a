"""Ray Tune's per-trial overhead: N tiny trials through Tune vs the same trainable in a plain loop.

How to run this script
----------------------
    python benchmarks/tune_overhead.py                 # 8 trials x 5 reports, 2 CPUs
    python benchmarks/tune_overhead.py --trials 16 --reports 10

It starts a local Ray (not counted), then times (a) the trainable called N times in a loop with
a no-op ``report``, and (b) ``Tuner.fit()`` on N trials of the same trainable, one at a time
(``max_concurrent_trials=1``) so the two do the same work in sequence, with actors reused (as
``gapray.sweep`` runs) and without. Overhead per trial = (Tune wall time - loop time) / N.
A third Tune run with as many concurrent trials as CPUs shows what parallelism buys back.

Results to expect
-----------------
On an idle 2-core machine a few tenths of a second to about 2 s per trial; the issue's target
is at most 5 s per trial. Results go to ``benchmarks/results/tune_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def tiny_work(config: dict[str, Any], report: Callable[[dict[str, Any]], None]) -> None:
    """A few ms of numpy per step, then a report: the shape of a sweep trial, minus the model."""
    rng = np.random.default_rng(config["seed"])
    matrix = rng.normal(size=(128, 128))
    for step in range(config["reports"]):
        value = float(np.linalg.norm(matrix @ matrix))
        report({"loss": value / (step + 1), "step": step})


def trainable(config: dict[str, Any]) -> None:
    from ray import tune

    tiny_work(config, tune.report)


def time_loop(trials: int, reports: int) -> float:
    start = time.perf_counter()
    for seed in range(trials):
        tiny_work({"seed": seed, "reports": reports}, lambda metrics: None)
    return time.perf_counter() - start


def time_tune(trials: int, reports: int, concurrent: int, reuse_actors: bool, storage: str) -> float:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"seed": tune.grid_search(list(range(trials))), "reports": reports},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=reuse_actors),
        run_config=tune.RunConfig(storage_path=storage, name=f"overhead-{concurrent}-{reuse_actors}", verbose=0),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - start
    assert len(grid) == trials and not grid.errors, grid.errors
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="number of tiny trials")
    parser.add_argument("--reports", type=int, default=5, help="tune.report calls per trial")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    init_seconds = time.perf_counter() - started
    load = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="tune-overhead-") as storage:
            loop = time_loop(args.trials, args.reports)
            runs = {
                "sequential_reuse_actors": time_tune(args.trials, args.reports, 1, True, storage),
                "sequential_new_actors": time_tune(args.trials, args.reports, 1, False, storage),
                f"concurrent_{args.cpus}_reuse_actors": time_tune(args.trials, args.reports, args.cpus, True, storage),
            }
    finally:
        ray.shutdown()
    result = {
        "trials": args.trials, "reports_per_trial": args.reports, "cpus": args.cpus,
        "ray_init_seconds": round(init_seconds, 3), "loop_seconds": round(loop, 4),
        "load_average_1min_at_start": round(load, 2), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "runs": {name: {"tune_seconds": round(s, 3), "ratio_to_loop": round(s / max(loop, 1e-9), 1),
                        "overhead_seconds_per_trial": round((s - loop) / args.trials, 3)}
                 for name, s in runs.items()},
        "target_seconds_per_trial": 5.0,
        "command": f"python benchmarks/tune_overhead.py --trials {args.trials} --reports {args.reports} "
                   f"--cpus {args.cpus}",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tune_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Ray Tune per-trial overhead", "",
        f"`{result['command']}`: {args.trials} trials x {args.reports} reports; loop {loop:.3f} s; "
        f"ray.init {init_seconds:.1f} s (not counted); 1-min load average at start {load:.1f} "
        f"on {result['machine']}.", "",
        "| run | Tune wall (s) | ratio to loop | overhead per trial (s) |", "|---|---|---|---|",
    ]
    for name, values in result["runs"].items():
        lines.append(f"| {name} | {values['tune_seconds']} | {values['ratio_to_loop']} | "
                     f"{values['overhead_seconds_per_trial']} |")
    lines += ["", "Target: at most 5 s per trial (issue 7)."]
    (RESULTS / "tune_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
