"""GIL and GIL-D trained by RLlib DDPG (gapray.rl), next to ones / mask on the same split, and
the wall time of GIL under RLlib vs the same env stepped by a fixed policy.

How to run this script
----------------------
    python benchmarks/gil_ddpg.py --data-dir ../shared/data                # PhysioNet, 3 seeds
    python benchmarks/gil_ddpg.py --quick                                  # digits smoke run
    python benchmarks/gil_ddpg.py --part ratio --data-dir ../shared/data   # ratio only: gil_ddpg_<dataset>_ratio.*

Per seed and method (GIL: reward ``-loss``; GIL-D: Eq. 43 with label-balanced batches), the
policy is learned with DDPG for ``--iterations x --steps-per-iteration`` env steps (training
episodes of ``--horizon`` predictor updates; RLlib checkpoint picked on the episodes'
validation AUC), then a fresh predictor is trained for ``--final-steps`` with the deterministic
policy, its checkpoint picked on validation AUC, and the test split scored. ``ones`` (zero
placeholder) and ``mask`` (GIL-H) are trained by the same loop on the same split.

Results to expect
-----------------
``benchmarks/results/gil_ddpg_<dataset>.json`` and ``.md``. The paper (1024-unit LSTM, GPU):
PhysioNet mortality AUC 82.20 (GIL) vs 82.00 (GIL-H) vs 81.14 (zero imputation); on CPU with a
64-unit LSTM and a short policy-learning budget expect all three within about a point of each
other, ranking not guaranteed. The wall-time ratio (DDPG on RLlib / env with a fixed policy)
is dominated by the actor's pass over every row (every env step) and RLlib's per-update
overhead (learner call, metrics, weight sync: every ``--update-every`` steps); the replay buffer
hands the learner only ``train_rows_per_step`` rows of each replayed step. ``--part ratio``
writes ``gil_ddpg_<dataset>_ratio.*`` (PhysioNet LSTM 64, quiet 2-core machine: 1.98-2.06x
updating every env step, 1.85-1.98x with 2 gradient steps every 2 env steps, both one gradient
step per env step; MNIST MLP: 3.8x and 3.6x, 1.8x at one gradient step per 8 env steps); on a
shared machine use ``--ratio-repeats 3``. ``--report`` rebuilds a markdown table from its JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _write(dataset: str, payload: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    dataset = dataset + (f"_{payload['tag']}" if payload.get("tag") else "")
    (RESULTS / f"gil_ddpg_{dataset}.json").write_text(json.dumps(payload, indent=2, default=str))
    lines = [f"# GIL / GIL-D by RLlib DDPG on {dataset}", "", payload["command"], "",
             f"Settings: {payload['settings']}", "", f"Machine: {payload['machine']}", ""]
    if any(payload["runs"].values()):
        lines += ["| method | n | test acc | test AUC | test AP | val AUC | policy s | final s |",
                  "|---|---|---|---|---|---|---|---|"]
    for method, runs in payload["runs"].items():
        if not runs:
            continue

        def stat(key: str, runs: list[dict[str, Any]] = runs) -> str:
            values = [r[key] for r in runs if r.get(key) is not None]
            if not values:
                return ""
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{100 * statistics.mean(values):.2f} +- {100 * sd:.2f}"

        seconds = [r.get("policy_seconds", 0.0) for r in runs]
        final = [r.get("final_seconds", 0.0) for r in runs]
        lines.append(f"| {method} | {len(runs)} | {stat('test_accuracy')} | {stat('test_auc')} | {stat('test_ap')} | "
                     f"{stat('val_auc')} | {statistics.mean(seconds):.0f} | {statistics.mean(final):.0f} |")
    lines += _paired_lines(payload["runs"])
    lines += _importance_lines(payload["runs"])
    if payload.get("ratio"):
        repeats = max(len(r.get("repeats", [r])) for r in payload["ratio"].values())
        lines += ["" if lines[-1] else None,
                  "Wall time per env step (same env config, after warm-up; target ratio <= 2x); CPU time of "
                  "this process beside it" + (f"; medians of {repeats} runs" if repeats > 1 else "") + ":", "",
                  "| DDPG update every | gradient steps per update | env + fixed `mask` policy ms/step "
                  "| GIL under RLlib DDPG ms/step | ratio | fixed CPU ms/step | RLlib CPU ms/step | CPU ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, ratio in payload["ratio"].items():
            cpu = (f" {ratio['fixed_cpu_ms_per_step']:.1f} | {ratio['rllib_cpu_ms_per_step']:.1f} | "
                   f"{ratio['cpu_ratio']:.2f}x |" if "cpu_ratio" in ratio else " | | |")
            runs = ", ".join(f"{r['ratio']:.2f}x" for r in ratio.get("repeats", []))
            every, _, steps = name.removeprefix("update_every_").partition("_gradient_steps_")
            lines.append(f"| {every} env steps | {steps or 1} | {ratio['fixed_ms_per_step']:.1f} | "
                         f"{ratio['rllib_ms_per_step']:.1f} | {ratio['ratio']:.2f}x" + (f" ({runs})" if runs else "")
                         + " |" + cpu)
    (RESULTS / f"gil_ddpg_{dataset}.md").write_text("\n".join(line for line in lines if line is not None) + "\n")


def paired_differences(runs: dict[str, list[dict[str, Any]]], method: str, baseline: str,
                       key: str) -> list[float]:
    """Per-seed ``method - baseline`` of ``key`` over the seeds both have (same split, same
    predictor initialisation and batch order: the seed-to-seed spread cancels)."""
    base = {r["seed"]: r[key] for r in runs.get(baseline, []) if r.get(key) is not None}
    return [r[key] - base[r["seed"]] for r in runs.get(method, []) if r.get(key) is not None and r["seed"] in base]


def _paired_lines(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown rows: each method against ``ones`` (zero imputation), paired by seed."""
    rows = []
    for method in runs:
        if method == "ones":
            continue
        cells = []
        for key in ("test_accuracy", "test_auc", "test_ap"):
            diffs = paired_differences(runs, method, "ones", key)
            if not diffs:
                break
            sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            se = sd / len(diffs) ** 0.5
            ahead = sum(d > 0 for d in diffs)
            cells.append(f"{100 * statistics.mean(diffs):+.2f} +- {100 * se:.2f} ({ahead}/{len(diffs)})")
        if len(cells) == 3:
            rows.append(f"| {method} - ones | {' | '.join(cells)} |")
    if not rows:
        return []
    return ["", "Paired by seed against `ones` (zero imputation): mean difference +- standard error, in points; "
            "(seeds where the method is ahead / seeds):", "",
            "| comparison | test acc | test AUC | test AP |", "|---|---|---|---|", *rows]


def _importance_lines(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown rows: what the learned policies handed the final predictor (per seed)."""
    rows = [f"| {method} | {r['seed']} | {i['mean']:.3g} | {i['std']:.3g} | {i['mean_observed']:.3g} | "
            f"{i['mean_missing']:.3g} | {i['row_mean_std']:.3g} | "
            + (f"{i['within_feature_std']:.3g} |" if "within_feature_std" in i else " |")
            for method, method_runs in runs.items() for r in method_runs if (i := r.get("importance"))]
    if not rows:
        return []
    return ["", "Importance the learned (deterministic) policy gave the final predictor, over all its training "
            "steps: a near-constant importance is, under Adam, almost plain back-propagation (`ones`):", "",
            "| method | seed | mean | std | mean on observed | mean on missing | std of row means "
            "| std of a feature across rows |", "|---|---|---|---|---|---|---|---|", *rows]


def run_method(settings: Any, method: str) -> dict[str, Any]:
    from gapray.rl.gil_training import learn_policy, load_policy_module, train_predictor_with_policy

    if method in ("ones", "mask"):
        result = train_predictor_with_policy(settings, None, method)
        return {"test_" + k: v for k, v in result["test"].items()} | {
            "val_" + k: v for k, v in result["val"].items()} | {"final_seconds": result["seconds"],
                                                                 "best_step": result["best_step"]}
    run_settings = dataclasses.replace(settings, reward="gil-d" if method == "GIL-D" else "gil")
    with tempfile.TemporaryDirectory() as folder:
        policy = learn_policy(run_settings, folder)
        module = load_policy_module(policy.checkpoint)
    result = train_predictor_with_policy(run_settings, module)
    return ({"test_" + k: v for k, v in result["test"].items()} | {"val_" + k: v for k, v in result["val"].items()}
            | {"final_seconds": result["seconds"], "best_step": result["best_step"],
               "policy_seconds": policy.seconds, "policy_env_steps": policy.env_steps,
               "policy_selected_iteration": policy.selected_iteration, "policy_selected_val": policy.selected_val,
               "policy_history": policy.history, "importance": result["importance"]})


def wall_time_ratio(settings: Any, steps: int, blocks: int = 3) -> dict[str, Any]:
    """ms per env step: the env with the fixed ``mask`` policy vs RLlib DDPG training on it.

    Both are built once and warmed up (the RLlib run past ``learning_starts``), then measured in
    ``blocks`` interleaved pairs of ``steps`` env steps each (fixed block, RLlib block, ...), so
    that a slow phase of the shared machine (or Ray's worker processes still starting) hits both
    sides; each quantity is the median over its blocks. Wall time is the target; this process's
    CPU time is beside it: with ``num_env_runners=0`` the env, the RLlib module and the learner
    all run in this process, so the CPU-time ratio is the same comparison, less sensitive to
    other jobs on the cores."""
    from gapray.rl.gil_training import build_ddpg_config, probe_env

    horizon = 10 * steps * (blocks + 1)
    env = probe_env(dataclasses.replace(settings, horizon=horizon))
    _, info = env.reset(seed=settings.seed)
    for _ in range(3):
        _, _, _, _, info = env.step(np.array(info["mask"], dtype=np.float32))
    algo = build_ddpg_config(dataclasses.replace(settings, horizon=horizon, steps_per_iteration=steps)).build_algo()
    fixed_blocks: list[tuple[float, float]] = []
    rllib_blocks: list[tuple[float, float]] = []
    try:
        sampled = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]  # warm-up past learning_starts
        for _ in range(blocks):
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(steps):
                _, _, _, _, info = env.step(np.array(info["mask"], dtype=np.float32))
            fixed_blocks.append(((time.perf_counter() - started) / steps, (time.process_time() - cpu_started) / steps))
            started, cpu_started = time.perf_counter(), time.process_time()
            result = algo.train()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            done, sampled = result["env_runners"]["num_env_steps_sampled_lifetime"] - sampled, \
                result["env_runners"]["num_env_steps_sampled_lifetime"]
            rllib_blocks.append((elapsed / max(done, 1), cpu / max(done, 1)))
    finally:
        algo.stop()
    fixed, fixed_cpu = (statistics.median(b[i] for b in fixed_blocks) for i in (0, 1))
    rllib, rllib_cpu = (statistics.median(b[i] for b in rllib_blocks) for i in (0, 1))
    return {"fixed_ms_per_step": 1e3 * fixed, "rllib_ms_per_step": 1e3 * rllib, "ratio": rllib / fixed,
            "fixed_cpu_ms_per_step": 1e3 * fixed_cpu, "rllib_cpu_ms_per_step": 1e3 * rllib_cpu,
            "cpu_ratio": rllib_cpu / fixed_cpu, "steps": steps * blocks,
            "block_ratios": [r[0] / f[0] for f, r in zip(fixed_blocks, rllib_blocks)]}


def _median_ratio(repeats: list[dict[str, float]]) -> dict[str, Any]:
    """Per-quantity medians over repeated :func:`wall_time_ratio` runs (ratios: median of the
    per-run ratios); the runs themselves are kept under ``repeats``."""
    out: dict[str, Any] = {key: statistics.median(r[key] for r in repeats) for key, value in repeats[0].items()
                           if isinstance(value, int | float)}
    if len(repeats) > 1:
        out["repeats"] = repeats
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("rows", "ratio", "all"), default="all")
    parser.add_argument("--dataset", default="physionet2012")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--missing-rate", type=float, default=0.9)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["ones", "mask", "GIL", "GIL-D"])
    parser.add_argument("--lstm-hidden", type=int, default=64)
    parser.add_argument("--mlp-hidden", type=int, default=500)
    parser.add_argument("--horizon", type=int, default=300, help="predictor updates per policy-learning episode")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--steps-per-iteration", type=int, default=100)
    parser.add_argument("--final-steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--ratio-steps", type=int, default=50)
    parser.add_argument("--update-every", type=int, default=2, help="env steps per DDPG learner update")
    parser.add_argument("--gradient-steps", type=int, default=None,
                        help="gradient steps per learner update (default: --update-every, one per env step)")
    parser.add_argument("--rl-hiddens", default="128,128",
                        help="actor/critic widths (reference 400,300; the actor runs on all B x T rows every step)")
    parser.add_argument("--ratio-update-every", nargs="+", default=["1", "2", "2:1", "8:1"],
                        help="DDPG update periods whose wall-time ratio is measured: K (K env steps, K gradient "
                             "steps per learner update: one per env step) or K:G (G gradient steps per update)")
    parser.add_argument("--ratio-blocks", type=int, default=3,
                        help="interleaved (fixed policy, RLlib) block pairs per ratio measurement")
    parser.add_argument("--ratio-repeats", type=int, default=1,
                        help="measure each ratio this many times and report the medians (shared machines)")
    parser.add_argument("--placeholder", default="auto", help="missing-input value (auto: 3 x max for the LSTM)")
    parser.add_argument("--tag", default="",
                        help="suffix of the result files (--part ratio without a tag: 'ratio', so that the "
                             "method rows of a full run are not overwritten)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite gil_ddpg_<dataset>[_<tag>].md from its JSON")
    args = parser.parse_args()
    if args.report:
        name = args.dataset + (f"_{args.tag}" if args.tag else "")
        _write(args.dataset, json.loads((RESULTS / f"gil_ddpg_{name}.json").read_text()))
        return 0
    if args.part == "ratio" and not args.tag:
        args.tag = "ratio"
    torch.set_num_threads(args.threads)
    import ray

    from gapray.rl.gil_training import SMOKE_TEST, GILDDPGSettings

    if args.quick:
        settings = GILDDPGSettings(**{**SMOKE_TEST, "seed": args.seeds[0]})
        args.dataset, args.seeds, args.ratio_steps = "digits", args.seeds[:1], 10
        args.methods = [m for m in args.methods if m != "GIL-D"]  # GIL-D needs binary labels
    else:
        settings = GILDDPGSettings(dataset=args.dataset, data_root=args.data_dir, missing_rate=args.missing_rate,
                                   lstm_hidden=args.lstm_hidden, mlp_hidden=args.mlp_hidden, horizon=args.horizon,
                                   iterations=args.iterations, steps_per_iteration=args.steps_per_iteration,
                                   final_steps=args.final_steps, eval_every=args.eval_every,
                                   update_every=args.update_every, gradient_steps=args.gradient_steps,
                                   rl_hiddens=args.rl_hiddens,
                                   placeholder=args.placeholder)
    payload: dict[str, Any] = {
        "command": "python benchmarks/gil_ddpg.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v not in (None, False, "")),
        "settings": dataclasses.asdict(settings),
        "machine": f"{platform.machine()} CPU (2 shared cores), torch threads {args.threads}",
        "paper": "PhysioNet 2012 mortality (Table 6): GIL 87.45 / 82.20 / 49.19, GIL-H 87.38 / 82.00 / 48.64, "
                 "zero imputation 87.15 / 81.14 / 47.37 (acc / AUC / AP)",
        "runs": {m: [] for m in args.methods},
        "tag": args.tag,
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        if args.part in ("ratio", "all"):
            payload["ratio"] = {}
            for spec in args.ratio_update_every:
                every, _, steps = spec.partition(":")
                k, g = int(every), int(steps) if steps else int(every)
                repeats = [wall_time_ratio(dataclasses.replace(settings, update_every=k, gradient_steps=g),
                                           args.ratio_steps, args.ratio_blocks)
                           for _ in range(args.ratio_repeats)]
                payload["ratio"][f"update_every_{k}_gradient_steps_{g}"] = _median_ratio(repeats)
            print(json.dumps({"ratio": payload["ratio"]}), flush=True)
            _write(args.dataset, payload)
        if args.part in ("rows", "all"):
            for seed in args.seeds:
                for method in args.methods:
                    run = run_method(dataclasses.replace(settings, seed=seed), method)
                    payload["runs"][method].append({"seed": seed, **run})
                    print(json.dumps({"method": method, "seed": seed,
                                      **{k: v for k, v in run.items() if k != "policy_history"}}), flush=True)
                    _write(args.dataset, payload)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
