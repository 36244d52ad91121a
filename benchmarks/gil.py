"""GIL baselines and environment throughput (issue 5; paper Table 6 and Table 3).

How to run this script::

    python benchmarks/gil.py --part physionet     # LSTM, PhysioNet 2012 set-a mortality
    python benchmarks/gil.py --part mnist         # MLP, MNIST MCAR 50/70/90 %
    python benchmarks/gil.py --part throughput    # env step vs bare torch step
    python benchmarks/gil.py --part scaling       # PhysioNet env step CPU time vs LSTM width (cost estimates)
    python benchmarks/gil.py --part report        # merge the JSON files into gil.md
    python benchmarks/gil.py --quick --part all   # a smoke run in about a minute

Each part writes ``benchmarks/results/gil_<part>.json`` after every run (partial results
survive an interruption); ``report`` writes ``benchmarks/results/gil.md``.

Methods are the rows of :data:`gapray.gil.methods.METHODS`; ``--extra-rows MODULE`` imports a
module that registers more (the RL helper's ``GIL`` and ``GIL-D``). Results to expect: on
PhysioNet the paper reports AUC 81.14 (zero imputation) and 82.00 (GIL-H) with a 1024-unit LSTM
and 2,000+ steps on a GPU; this CPU benchmark uses a smaller LSTM, so compare the ranking.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from gapray.gil.datasets import load_task
from gapray.gil.methods import METHODS, imputed_method, register_method
from gapray.gil.training import BatchSampler, TrainingConfig, seeded_predictor

RESULTS = Path(__file__).resolve().parent / "results"
PAPER = {
    "physionet2012": "Table 6 (1024-unit LSTM): zero-impute acc 87.15 / AUC 81.14 / AP 47.37; GIL-H 87.38 / 82.00 / "
                     "48.64; mean-impute 86.87 / 82.57 / 48.30; BRITS 86.20 / 81.30 / 43.57; GIL 87.45 / 82.20 / 49.19",
    "mnist": "Table 3 (60k training images, 500-500 MLP, 10k steps) accuracy at 50/70/90 %: zero-impute 95.83 / 92.80 "
             "/ 76.67; GIL-H 96.08 / 93.26 / 78.44; GIL 96.29 / 93.35 / 78.47",
}


NOTES = [
    "- GIL-H (`a = m`) with a zero placeholder is *exactly* zero imputation: the encoder gradient "
    "`Delta (x * m)^T` equals `Delta x^T` when missing entries are 0 (tested bit-for-bit in "
    "`tests/gil/test_training.py`). It differs only through a non-zero placeholder, whose contribution `W_j xi` "
    "the encoder then cannot learn to cancel. The MLP rows therefore repeat the zero-impute numbers (reference "
    "placeholder 0); the LSTM rows use the reference 3 x max(train) = 3 x 129.1 = 387 on z-scored PhysioNet, which "
    "saturates the gates.",
    "- PhysioNet is z-scored with training statistics, so mean imputation equals zero imputation up to float "
    "rounding of the training mean (~1e-8); seed 0 gives identical numbers, seeds 1-2 drift apart from that "
    "rounding alone (training is chaotic), which sizes the seed noise of this table.",
    "- `deari-impute` on PhysioNet: DEARI reduced for this CPU run (hidden 32, 1 layer, 10 epochs, "
    "`python benchmarks/gil.py --part physionet --methods deari-impute --deari-epochs 10 --deari-hidden-size 32 "
    "--deari-layers 1`), fitted on the training split with early stopping on 10 % of the validation split's "
    "observed values, then the same LSTM trained with `ones`.",
    "- GIL and GIL-D need the RL policy (DDPG helper); register their rows with "
    "`gapray.gil.methods.register_method` and pass the module with `--extra-rows`.",
]


def _write(name: str, payload: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"gil_{name}.json").write_text(json.dumps(payload, indent=2))


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {"n": len(runs)}
    for key in ("accuracy", "auc", "ap"):
        values = [r[key] for r in runs]
        out[f"{key}_mean"] = float(np.mean(values))
        out[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def run_task_grid(part: str, settings: list[dict[str, Any]], methods: list[str], seeds: list[int],
                  config: TrainingConfig, root: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"part": part, "config": dataclasses.asdict(config), "seeds": seeds,
                               "machine": f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}",
                               "paper": PAPER.get(settings[0]["dataset"], ""), "rows": []}
    previous = RESULTS / f"gil_{part}.json"
    if previous.exists():  # keep rows of other methods from an earlier invocation with the same config
        earlier = json.loads(previous.read_text())
        if earlier.get("config") == json.loads(json.dumps(payload["config"])):
            payload["rows"] = [r for r in earlier["rows"] if r["method"] not in methods]
    for setting in settings:
        for method in methods:
            runs = []
            for seed in seeds:
                task = load_task(setting["dataset"], root, setting.get("missing_rate", 0.5), "mcar", seed=seed)
                started = time.perf_counter()
                scores = METHODS[method](task, dataclasses.replace(config, seed=seed))
                runs.append({**scores, "seed": seed, "seconds": round(time.perf_counter() - started, 1)})
                print(json.dumps({"part": part, **setting, "method": method, **runs[-1]}), flush=True)
            payload["rows"].append({**setting, "method": method, **_summary(runs), "runs": runs})
            _write(part, payload)
    return payload


def _block_seconds(fn: Any, steps: int, clock: Any) -> float:
    started = clock()
    for _ in range(steps):
        fn()
    return (clock() - started) / steps


def throughput(env_config: dict[str, Any], rounds: int, block: int) -> dict[str, Any]:
    """Env steps vs bare training steps of the same predictor on batches of the same data,
    in interleaved blocks compared by medians. With one torch thread the process CPU time is
    the cost of a step whatever the shared machine's load; wall time is reported beside it."""
    from gapray_envs.gil_env import GILEnv

    env = GILEnv({**env_config, "horizon": 10**9})
    _, info = env.reset(seed=0)
    state = {"mask": info["mask"]}

    def env_step() -> None:
        state["mask"] = env.step(state["mask"])[4]["mask"]  # a = m (GIL-H), as the behaviour policy's p2

    predictor = seeded_predictor(env.task, env.training, 0)
    learning_rate, decay_rate, decay_steps = env.training.schedule(env.task.kind)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=learning_rate)
    factor = decay_rate ** (1.0 / decay_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor ** step)
    sampler = BatchSampler(env.task.train.y, env.config.batch_size, np.random.default_rng(0))
    data = env.train_data

    def bare_step() -> None:
        index = torch.as_tensor(sampler.next())
        lengths = None if data.lengths is None else data.lengths[index]
        loss = F.cross_entropy(predictor(data.x[index], lengths).logits, data.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    times: dict[str, list[float]] = {"env_cpu": [], "bare_cpu": [], "env_wall": [], "bare_wall": []}
    _block_seconds(env_step, 3, time.process_time)
    _block_seconds(bare_step, 3, time.process_time)
    for round_ in range(rounds):
        clock, kind = (time.process_time, "cpu") if round_ % 2 == 0 else (time.perf_counter, "wall")
        times[f"env_{kind}"].append(_block_seconds(env_step, block, clock))
        times[f"bare_{kind}"].append(_block_seconds(bare_step, block, clock))
    m = {key: statistics.median(values) for key, values in times.items()}
    return {"env_ms_per_step": 1e3 * m["env_cpu"], "bare_ms_per_step": 1e3 * m["bare_cpu"],
            "env_steps_per_s": 1.0 / m["env_cpu"], "bare_steps_per_s": 1.0 / m["bare_cpu"],
            "ratio_env_over_bare": m["env_cpu"] / m["bare_cpu"],
            "wall_env_ms_per_step": 1e3 * m["env_wall"], "wall_bare_ms_per_step": 1e3 * m["bare_wall"],
            "wall_ratio_env_over_bare": m["env_wall"] / m["bare_wall"],
            "observation_shape": list(env.observation_space.shape), "rounds": rounds, "block": block}


def run_throughput(args: argparse.Namespace) -> dict[str, Any]:
    cases = {
        "mnist-mlp": {"dataset": "mnist", "data_root": args.data_dir, "hidden_sizes": tuple(args.mnist_hidden)},
        "physionet-lstm": {"dataset": "physionet2012", "data_root": args.data_dir,
                           "lstm_hidden_size": args.lstm_hidden_size},
    }
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    payload: dict[str, Any] = {"part": "throughput",
                               "machine": f"torch threads {torch.get_num_threads()}, load average at start {load}",
                               "rows": []}
    for name, config in cases.items():
        for timing in ("after_update", "before_update"):
            row = {"case": name, "reward_timing": timing,
                   **throughput({**config, "reward_timing": timing}, args.rounds, args.block)}
            print(json.dumps(row), flush=True)
            payload["rows"].append(row)
            _write("throughput", payload)
    return payload


def lstm_flops_per_step(hidden: int, n_features: int = 35, steps: int = 48, batch: int = 128) -> float:
    """Multiply-adds x 2 of one GIL env step's LSTM work: the training forward, its backward (about
    twice the forward) and the paper's reward forward after the update: 4 forwards of
    ``batch x steps`` cells of ``4H x (d + H)``."""
    return 4 * 2.0 * batch * steps * 4 * hidden * (n_features + hidden)


def run_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """CPU time per PhysioNet ``GILEnv`` step (fixed ``mask`` policy, paper reward) against the LSTM
    width, with one torch thread; a least-squares line ``a + b * FLOPs`` over the widths extrapolates
    to the paper's 1024 units (``docs/gil_reproduction.md``, cost of a paper-scale run)."""
    from gapray_envs.gil_env import GILEnv

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    payload: dict[str, Any] = {"part": "scaling", "rows": [],
                               "machine": f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}, "
                                          f"load average at start {load} (process CPU time, not wall)"}
    for hidden in args.widths:
        env = GILEnv({"dataset": "physionet2012", "data_root": args.data_dir, "lstm_hidden_size": hidden,
                      "placeholder": "zero", "horizon": 10**9})
        _, info = env.reset(seed=0)
        state = {"mask": info["mask"]}

        def env_step(env: Any = env, state: dict[str, Any] = state) -> None:
            state["mask"] = env.step(state["mask"])[4]["mask"]

        _block_seconds(env_step, 2, time.process_time)
        steps = max(3, int(args.block * 64 / hidden))
        seconds = statistics.median(_block_seconds(env_step, steps, time.process_time) for _ in range(3))
        row = {"lstm_hidden": hidden, "cpu_ms_per_step": 1e3 * seconds, "gflop_per_step": lstm_flops_per_step(hidden)
               / 1e9, "steps_timed": 3 * steps}
        print(json.dumps(row), flush=True)
        payload["rows"].append(row)
        _write("lstm_scaling", payload)
    flops = np.array([r["gflop_per_step"] for r in payload["rows"]])
    ms = np.array([r["cpu_ms_per_step"] for r in payload["rows"]])
    slope, intercept = np.polyfit(flops, ms, 1)
    payload["fit"] = {"intercept_ms": float(intercept), "ms_per_gflop": float(slope),
                      "achieved_gflops": float(1e3 / slope) if slope > 0 else None,
                      "extrapolated_1024_ms": float(intercept + slope * lstm_flops_per_step(1024) / 1e9),
                      "gflop_per_step_1024": lstm_flops_per_step(1024) / 1e9}
    _write("lstm_scaling", payload)
    return payload


def report() -> str:
    lines = ["# GIL benchmark", "",
             "Generated by `benchmarks/gil.py` (see its docstring). Mean ± std over seeds (seed = predictor init, "
             "batch order and, for MNIST, the mask). MNIST: only the 10k test images exist here, split 60/20/20 "
             "(train/val/test), so absolute accuracies are below the paper's 60k-image numbers.", ""]
    for part in ("physionet", "mnist"):
        path = RESULTS / f"gil_{part}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        cfg = data["config"]
        lines += [f"## {part}", "",
                  f"Config: steps {cfg['steps']}, batch {cfg['batch_size']}, lr {cfg['learning_rate']} "
                  f"(x{cfg['lr_decay_rate']} / {cfg['lr_decay_steps']} steps), MLP {cfg['hidden_sizes']}, LSTM "
                  f"{cfg['lstm_hidden_size']}, checkpoint picked on validation {cfg['select_metric']} every "
                  f"{cfg['eval_every']} steps; seeds {data['seeds']}; {data['machine']}.", "",
                  f"Paper: {data['paper']}.", "",
                  "| setting | method | n | accuracy | ROC AUC | AP |", "|---|---|---|---|---|---|"]
        for row in data["rows"]:
            setting = f"MCAR {row['missing_rate']:.0%}" if "missing_rate" in row else "set-a mortality"
            cells = " | ".join(f"{100 * row[f'{k}_mean']:.2f} ± {100 * row[f'{k}_std']:.2f}"
                               for k in ("accuracy", "auc", "ap"))
            lines.append(f"| {setting} | {row['method']} | {row['n']} | {cells} |")
        lines.append("")
    path = RESULTS / "gil_throughput.json"
    if path.exists():
        data = json.loads(path.read_text())
        lines += ["## Environment overhead", "",
                  "One `GILEnv.step` (importance-weighted update + reward + next observation) against one bare torch "
                  "training step (forward, backward, Adam, schedule) of the same predictor on same-size batches; "
                  f"interleaved blocks, medians of process CPU time (one torch thread, so independent of the shared "
                  f"machine's load; wall-time ratio beside it); {data['machine']}. Target: ratio <= 1.3. "
                  "`after_update` is the paper's reward (Algorithm 1 line 9: one extra inference forward of the "
                  "batch); `before_update` is the reference code's. The paper's reward needs a whole "
                  "inference forward, which alone is 0.22-0.25 of a bare step here (MLP 1.4-1.5 ms of 6-7 ms, LSTM "
                  "3.0-3.3 ms of 13.5 ms), so 1.3x leaves 0.05-0.08 of a step for everything else the env does "
                  "(action check, observation rows, info).", "",
                  "| case | reward timing | observation | env CPU ms/step | bare CPU ms/step | env steps/s (CPU) "
                  "| ratio (CPU) | ratio (wall) |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in data["rows"]:
            lines.append(f"| {row['case']} | {row['reward_timing']} | {row['observation_shape']} | "
                         f"{row['env_ms_per_step']:.1f} | {row['bare_ms_per_step']:.1f} | "
                         f"{row['env_steps_per_s']:.1f} | {row['ratio_env_over_bare']:.3f} | "
                         f"{row.get('wall_ratio_env_over_bare', float('nan')):.3f} |")
        lines.append("")
    path = RESULTS / "gil_lstm_scaling.json"
    if path.exists():
        data = json.loads(path.read_text())
        lines += ["## PhysioNet env step against the LSTM width", "",
                  "`python benchmarks/gil.py --part scaling`: process CPU time of one `GILEnv` step (fixed `mask` "
                  "policy, the paper's reward after the update, zero placeholder), one torch thread; "
                  f"{data['machine']}. GFLOP: training forward + backward + reward forward "
                  "(`lstm_flops_per_step`).", "",
                  "| LSTM units | GFLOP per step | CPU ms per step | steps timed |", "|---|---|---|---|"]
        lines += [f"| {r['lstm_hidden']} | {r['gflop_per_step']:.2f} | {r['cpu_ms_per_step']:.1f} | "
                  f"{r['steps_timed']} |" for r in data["rows"]]
        if "fit" in data:
            fit = data["fit"]
            lines += ["", f"Least-squares fit: {fit['intercept_ms']:.1f} ms + {fit['ms_per_gflop']:.2f} ms per GFLOP "
                      f"(about {fit['achieved_gflops']:.0f} GFLOP/s on one core); extrapolated to 1024 units "
                      f"({fit['gflop_per_step_1024']:.0f} GFLOP): {fit['extrapolated_1024_ms'] / 1e3:.1f} s per step."]
        lines.append("")
    lines += ["## Notes", "", *NOTES, ""]
    text = "\n".join(lines)
    (RESULTS / "gil.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("physionet", "mnist", "throughput", "scaling", "report", "all"),
                        default="all")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512],
                        help="scaling: LSTM widths timed (not part of 'all')")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["zero-impute (ones)", "GIL-H (mask)", "mean-impute"])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    parser.add_argument("--physionet-steps", type=int, default=2000)
    parser.add_argument("--mnist-steps", type=int, default=2000)
    parser.add_argument("--lstm-hidden-size", type=int, default=64)
    parser.add_argument("--mnist-hidden", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--deari-epochs", type=int, default=10, help="epochs of the deari-impute row")
    parser.add_argument("--deari-hidden-size", type=int, default=108, help="hidden size of the deari-impute row")
    parser.add_argument("--deari-layers", type=int, default=3, help="DEARI n_layers of the deari-impute row")
    parser.add_argument("--rounds", type=int, default=16, help="throughput: interleaved rounds (CPU, wall alternate)")
    parser.add_argument("--block", type=int, default=10, help="throughput: steps per block")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--extra-rows", nargs="*", default=[], help="modules that register more methods")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for module in args.extra_rows:
        importlib.import_module(module)
    register_method("deari-impute", imputed_method("deari", epochs=args.deari_epochs,
                                                   hidden_size=args.deari_hidden_size, n_layers=args.deari_layers))
    if args.quick:
        args.seeds, args.rates, args.physionet_steps, args.mnist_steps = [0], [0.5], 30, 30
        args.lstm_hidden_size, args.mnist_hidden, args.rounds, args.block = 16, [32, 32], 2, 3
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {list(METHODS)}")
    base = TrainingConfig(eval_every=100 if not args.quick else 10)
    if args.part in ("physionet", "all"):
        config = dataclasses.replace(base, steps=args.physionet_steps, lstm_hidden_size=args.lstm_hidden_size)
        run_task_grid("physionet", [{"dataset": "physionet2012"}], args.methods, args.seeds, config, args.data_dir)
    if args.part in ("mnist", "all"):
        config = dataclasses.replace(base, steps=args.mnist_steps, hidden_sizes=tuple(args.mnist_hidden))
        settings = [{"dataset": "mnist", "missing_rate": rate} for rate in args.rates]
        run_task_grid("mnist", settings, args.methods, args.seeds, config, args.data_dir)
    if args.part in ("throughput", "all"):
        run_throughput(args)
    if args.part == "scaling":
        run_scaling(args)
    if args.part in ("report", "all", "scaling"):
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
