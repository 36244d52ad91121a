"""GIL and GIL-D trained by RLlib DDPG (gapray.rl), next to ones / mask on the same split, and
the wall time of GIL under RLlib vs the same env stepped by a fixed policy.

How to run this script
----------------------
    python benchmarks/gil_ddpg.py --data-dir ../shared/data                # PhysioNet, 3 seeds
    python benchmarks/gil_ddpg.py --quick                                  # digits smoke run
    python benchmarks/gil_ddpg.py --part ratio --data-dir ../shared/data   # ratio only: gil_ddpg_<dataset>_ratio.*
    python benchmarks/gil_ddpg.py --selection both --placeholder zero --data-dir ../shared/data
                                                   # the paper's selection protocol next to gapray's

``--selection reference`` reproduces the reference code's protocol (``docs/gil_reproduction.md``):
one joint run of ``--reference-steps`` predictor updates in which GIL's predictor is trained
under the behaviour mixture while DDPG learns, scored on the *test* split every
``--score-every`` steps, reporting the best test accuracy with that step's AUC and AP; ``ones``
and ``mask`` (GIL-H; its own predictor seed, ``seed + --independent-offset``, so that with a
zero placeholder it is an independent run of zero imputation's exact maths) are trained
for the same steps and scored the same way. From the same runs it also reports the
validation-selected checkpoint (every ``--eval-every`` steps). ``--selection both`` adds
gapray's GIL protocol (policy learned for ``--iterations x --steps-per-iteration`` env steps,
then a fresh predictor trained for ``--final-steps`` with the deterministic policy, checkpoint
on validation). Output: ``gil_ddpg_<dataset>_selection[_<tag>].{json,md}``.

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


# ---------------------------------------------------------------------------------------------
# The paper's selection protocol next to gapray's (issue 16)
# ---------------------------------------------------------------------------------------------
PAPER_MARGINS = {
    "physionet2012": "Table 6 (acc / AUC / AP): GIL 87.45 / 82.20 / 49.19, GIL-H 87.38 / 82.00 / 48.64, zero "
                     "imputation 87.15 / 81.14 / 47.37: GIL - zero +0.30 / +1.06 / +1.82, GIL-H - zero "
                     "+0.23 / +0.86 / +1.27",
    "mnist": "Table 3, 90 % MCAR accuracy: GIL 78.47, GIL-H 78.44, zero imputation 76.67: GIL - zero +1.80, "
             "GIL-H - zero +1.77 (GIL-H with the reference MLP's zero placeholder has zero imputation's gradients)",
}


def _split_tensors(env: Any) -> tuple[Any, Any]:
    """The full validation and test splits of a ``GILEnv``'s task, placeholder-filled."""
    from gapray.gil.training import task_placeholder, to_tensors

    placeholder = task_placeholder(env.task, env.config.placeholder)
    return tuple(to_tensors(split, env.task.kind, placeholder, env.config.device)  # type: ignore[return-value]
                 for split in (env.task.val, env.task.test))


def _checkpoint(env: Any, val: Any, test: Any) -> Any:
    from gapray.gil.selection import Checkpoint

    return Checkpoint(int(env.steps_done), env.session.scores(val), env.session.scores(test))


def fixed_policy_trajectory(settings: Any, policy: str, steps: int, score_every: int,
                            seed_offset: int = 0) -> list[Any]:
    """Train a predictor with the fixed policy ``ones`` or ``mask`` (GIL-H) for ``steps`` updates,
    scoring validation and test every ``score_every`` steps. ``seed_offset`` changes the
    predictor's initialisation and batch order, not the data split or mask."""
    from gapray_envs.gil_env import GILEnv

    env = GILEnv(settings.env_config(horizon=steps, max_val_samples=None))
    val, test = _split_tensors(env)
    _, info = env.reset(seed=settings.seed + seed_offset)
    trajectory = []
    for step in range(1, steps + 1):
        if policy == "mask":
            action = np.array(info["mask"], dtype=np.float32)
        elif policy == "ones":
            action = np.ones(env.action_space.shape, dtype=np.float32)
        else:
            raise ValueError(f"fixed policy must be ones or mask, got {policy!r}")
        _, _, _, _, info = env.step(action)
        if step % score_every == 0:
            trajectory.append(_checkpoint(env, val, test))
    return trajectory


def joint_run_trajectory(settings: Any, steps: int, score_every: int) -> list[Any]:
    """The reference's GIL run: DDPG learns the policy while the env's one predictor is trained by
    the behaviour mixture (Eq. 42: actor, heuristic ``a = m`` or random importance), scored on
    validation and test every ``score_every`` env steps (one RLlib iteration each)."""
    from gapray.rl.gil_training import build_ddpg_config

    run = dataclasses.replace(settings, horizon=steps + score_every, steps_per_iteration=score_every)
    algo = build_ddpg_config(run).build_algo()
    try:
        env = algo.env_runner.env.unwrapped.envs[0].unwrapped  # num_env_runners=0: the local runner's GILEnv
        val, test = _split_tensors(env)
        trajectory = []
        while not trajectory or trajectory[-1].step < steps:
            algo.train()
            trajectory.append(_checkpoint(env, val, test))
    finally:
        algo.stop()
    return trajectory


def _scores(checkpoint: Any) -> dict[str, float]:
    return {"step": checkpoint.step, **{f"test_{k}": v for k, v in checkpoint.test.items()},
            **{f"val_{k}": v for k, v in checkpoint.val.items()}}


def selection_run(settings: Any, method: str, args: argparse.Namespace) -> dict[str, Any]:
    """One seed of one method under the reference protocol and gapray's validation selection."""
    from gapray.gil.selection import select_checkpoint

    started = time.perf_counter()
    if method in ("ones", "mask"):
        offset = args.independent_offset if method == "mask" else 0
        trajectory = fixed_policy_trajectory(settings, method, args.reference_steps, args.score_every, offset)
    else:
        run_settings = dataclasses.replace(settings, reward="gil-d" if method == "GIL-D" else "gil")
        trajectory = joint_run_trajectory(run_settings, args.reference_steps, args.score_every)
    out: dict[str, Any] = {
        "reference": _scores(select_checkpoint(trajectory, "reference")),
        "validation": _scores(select_checkpoint(trajectory, "validation", settings.select_metric,
                                                every=args.eval_every)),
        "seconds": time.perf_counter() - started,
        "trajectory": [_scores(c) for c in trajectory],
    }
    if method in ("GIL", "GIL-D"):
        out["joint_validation"] = out.pop("validation")  # the joint run's predictor, selected on validation
        if args.selection == "both":
            honest = run_method(dataclasses.replace(settings, final_steps=args.reference_steps), method)
            out["validation"] = {k: v for k, v in honest.items() if k.startswith(("test_", "val_"))} | {
                "step": honest["best_step"]}
            out["honest_seconds"] = honest["final_seconds"] + honest["policy_seconds"]
    return out


def _protocol_runs(runs: dict[str, list[dict[str, Any]]], protocol: str) -> dict[str, list[dict[str, Any]]]:
    """Per method, the seeds' scores under ``protocol``; GIL's ``validation`` falls back to its joint
    run's validation selection when gapray's GIL protocol was not run (``--selection reference``)."""
    def pick(run: dict[str, Any]) -> dict[str, Any] | None:
        return run.get(protocol) or (run.get("joint_validation") if protocol == "validation" else None)

    return {m: [{"seed": r["seed"], **chosen} for r in rs if (chosen := pick(r))] for m, rs in runs.items()}


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} +- {100 * sd:.2f}"


def _diff_cell(diffs: list[float]) -> str:
    if not diffs:
        return ""
    se = (statistics.stdev(diffs) / len(diffs) ** 0.5) if len(diffs) > 1 else 0.0
    return (f"{100 * statistics.mean(diffs):+.2f} +- {100 * se:.2f} "
            f"(max abs {100 * max(abs(d) for d in diffs):.2f}; {sum(d > 0 for d in diffs)}/{len(diffs)})")


def _same_rule_on_validation(run: dict[str, Any]) -> dict[str, float]:
    """The reference's rule (first best accuracy, every scored step) applied to the validation split
    of the run's own trajectory: only the split that picks the checkpoint differs from ``reference``."""
    from gapray.gil.selection import Checkpoint, select_checkpoint

    trajectory = [Checkpoint(c["step"], {k[4:]: v for k, v in c.items() if k.startswith("val_")},
                             {k[5:]: v for k, v in c.items() if k.startswith("test_")}) for c in run["trajectory"]]
    return _scores(select_checkpoint(trajectory, "validation", metric="accuracy"))


def _selection_lines(payload: dict[str, Any]) -> list[str]:
    runs = {m: [{**r, "validation_accuracy": _same_rule_on_validation(r)} if r.get("trajectory") else r
                for r in rs] for m, rs in payload["selection"].items()}
    keys = ("test_accuracy", "test_auc", "test_ap")
    protocols = [("reference", f"reference: best test accuracy, every {payload['score_every']} steps"),
                 ("validation_accuracy", f"same rule on validation: best validation accuracy, every "
                                         f"{payload['score_every']} steps"),
                 ("joint_validation", "joint run, validation-selected"),
                 ("validation", f"gapray: validation-selected (every {payload['eval_every']} steps)")]
    lines = ["| method | protocol | n | test acc | test AUC | test AP | selected step |",
             "|---|---|---|---|---|---|---|"]
    for method, method_runs in runs.items():
        for protocol, label in protocols:
            rows = [r[protocol] for r in method_runs if protocol in r]
            if rows:
                cells = " | ".join(_mean_sd([r[k] for r in rows]) for k in keys)
                steps = ", ".join(str(r["step"]) for r in rows)
                lines.append(f"| {method} | {label} | {len(rows)} | {cells} | {steps} |")
    lines += ["", "Selection optimism: reference-protocol score minus the validation-selected score of the "
              "same seed, in points: mean +- standard error (max abs; seeds where positive / seeds). For "
              "`ones` and `mask` both come from the same training run; for GIL the reference number is the "
              "joint run, the validation one gapray's protocol (or the joint run's own validation selection):", "",
              "| method | compared with | test acc | test AUC | test AP |", "|---|---|---|---|---|"]
    for method, method_runs in runs.items():
        for other in ("validation_accuracy", "validation", "joint_validation"):
            pairs = [(r["reference"], r[other]) for r in method_runs if other in r]
            if pairs:
                cells = " | ".join(_diff_cell([a[k] - b[k] for a, b in pairs]) for k in keys)
                lines.append(f"| {method} | {other} | {cells} |")
    lines += ["", "Gaps between methods, paired by seed (same data split and mask; `mask` = GIL-H runs with "
              "its own predictor seed, so with a zero placeholder `mask - ones` compares two independent runs "
              "of the *same* gradients: any gap there is noise plus selection), in points: mean +- standard "
              "error (max abs; seeds ahead / seeds):", "",
              "| comparison | protocol | test acc | test AUC | test AP |", "|---|---|---|---|---|"]
    for method in runs:
        if method == "ones":
            continue
        for protocol in ("reference", "validation_accuracy", "validation"):
            per = _protocol_runs(runs, protocol)
            cells = [_diff_cell(paired_differences(per, method, "ones", k)) for k in keys]
            if all(cells):
                lines.append(f"| {method} - ones | {protocol} | {' | '.join(cells)} |")
    lines += ["", "Best of the seeds on test (a grid or seed chosen on the test split, as the reference's "
              "hyper-parameter search was) against the mean of the seeds, reference protocol, accuracy in points:",
              "", "| method | mean | best of n on test | gain |", "|---|---|---|---|"]
    for method, method_runs in runs.items():
        values = [r["reference"]["test_accuracy"] for r in method_runs]
        if values:
            lines.append(f"| {method} | {100 * statistics.mean(values):.2f} | {100 * max(values):.2f} (n = "
                         f"{len(values)}) | {100 * (max(values) - statistics.mean(values)):+.2f} |")
    return lines


def _write_selection(dataset: str, payload: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"gil_ddpg_{dataset}_selection" + (f"_{payload['tag']}" if payload.get("tag") else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    unused = ("" if "honest_seconds" in json.dumps(payload["selection"]) else
              " (`--horizon`, `--iterations`, `--steps-per-iteration` and `--final-steps` are unused: every run is "
              "one run of `--reference-steps` updates; a GIL `validation` row is then its joint run's)")
    lines = [f"# GIL: the reference's selection protocol next to gapray's, {dataset}", "", payload["command"], "",
             f"Scale: {payload['scale']}{unused}", "", f"Settings: {payload['settings']}", "",
             f"Machine: {payload['machine']}", "", f"Paper: {payload['paper']}", "", *_selection_lines(payload)]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


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
    parser.add_argument("--selection", choices=("validation", "reference", "both"), default="validation",
                        help="validation: gapray's protocol (the method rows); reference: the reference code's "
                             "(best test accuracy of one joint run); both: the two side by side")
    parser.add_argument("--reference-steps", type=int, default=1000,
                        help="predictor updates of a reference-protocol run (and of the final predictor with both)")
    parser.add_argument("--score-every", type=int, default=10, help="reference protocol: score the test split "
                                                                    "every this many steps (reference: 10)")
    parser.add_argument("--independent-offset", type=int, default=1000,
                        help="GIL-H's predictor seed is seed + this in the selection runs (0: paired with ones)")
    parser.add_argument("--resume", action="store_true",
                        help="selection runs: keep the (method, seed) runs already in the results file")
    parser.add_argument("--reference-choices", action="store_true",
                        help="apply GILDDPGSettings.with_reference_choices() (BatchNorm, L2, learning rates, ...)")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite gil_ddpg_<dataset>[_<tag>].md from its JSON")
    args = parser.parse_args()
    if args.report:
        name = args.dataset + (f"_{args.tag}" if args.tag else "")
        if args.selection != "validation":
            payload = json.loads((RESULTS / f"gil_ddpg_{args.dataset}_selection"
                                  f"{'_' + args.tag if args.tag else ''}.json").read_text())
            _write_selection(args.dataset, payload)
            return 0
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
        args.reference_steps, args.eval_every = 40, settings.eval_every
    else:
        settings = GILDDPGSettings(dataset=args.dataset, data_root=args.data_dir, missing_rate=args.missing_rate,
                                   lstm_hidden=args.lstm_hidden, mlp_hidden=args.mlp_hidden, horizon=args.horizon,
                                   iterations=args.iterations, steps_per_iteration=args.steps_per_iteration,
                                   final_steps=args.final_steps, eval_every=args.eval_every,
                                   update_every=args.update_every, gradient_steps=args.gradient_steps,
                                   rl_hiddens=args.rl_hiddens,
                                   placeholder=args.placeholder)
    if args.reference_choices:
        settings = settings.with_reference_choices()
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
    needs_ray = args.selection == "validation"  # selection runs start Ray at their first RLlib method
    if needs_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        if args.selection != "validation":
            payload.update({"selection": {m: [] for m in args.methods}, "score_every": args.score_every,
                            "eval_every": args.eval_every, "paper": PAPER_MARGINS.get(args.dataset, ""),
                            "scale": f"{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}), "
                                     f"{args.reference_steps} predictor updates per run"
                                     + (f"; gapray's GIL: {args.iterations * args.steps_per_iteration} policy "
                                        f"steps (episodes of {args.horizon}) + {args.reference_steps} final steps"
                                        if args.selection == "both" else "")})
            del payload["runs"]
            earlier = RESULTS / f"gil_ddpg_{args.dataset}_selection{'_' + args.tag if args.tag else ''}.json"
            if args.resume and earlier.exists():  # keep the (method, seed) runs already done with these settings
                done = json.loads(earlier.read_text())
                if done["settings"] == json.loads(json.dumps(payload["settings"])):
                    for method in args.methods:
                        payload["selection"][method] = [r for r in done["selection"].get(method, [])
                                                        if r["seed"] in args.seeds]
            for method in args.methods:  # method-major: every seed of the cheap fixed policies first
                for seed in args.seeds:
                    if any(r["seed"] == seed for r in payload["selection"][method]):
                        continue
                    if method not in ("ones", "mask") and not needs_ray:
                        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                        needs_ray = True
                    run = selection_run(dataclasses.replace(settings, seed=seed), method, args)
                    payload["selection"][method].append({"seed": seed, **run})
                    print(json.dumps({"method": method, "seed": seed,
                                      **{k: v for k, v in run.items() if k != "trajectory"}}), flush=True)
                    _write_selection(args.dataset, payload)
            return 0
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
        if needs_ray:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
