"""DEARI-3 speed on this CPU (issue 12): the fast path against the fp32 one-thread path, interleaved.

How to run this script::

    # step and inference timings, ratios against fp32 / 1 thread (about 5 minutes)
    python benchmarks/deari_speed.py --data-dir ../shared/data --part speed
    # accuracy guard: fp32 vs the fast path after 20 epochs, same seeds (about 40 min on 2 idle cores);
    # checkpointed every epoch under $GAPRAY_CACHE_DIR/runs/deari_speed/: rerun the same command to continue
    python benchmarks/deari_speed.py --data-dir ../shared/data --part accuracy --epochs 20
    # feed-forward width 2048 (paper) vs 512 vs 256 at equal epochs (one thread: a core left for other runs)
    python benchmarks/deari_speed.py --data-dir ../shared/data --part width --epochs 20 \
        --variants fast-1t,fast-1t-ff512,fast-1t-ff256 --threads 1 --tag width_20ep
    # where one step's time goes (torch.profiler, per op and input shape; about 2 minutes)
    python benchmarks/deari_speed.py --data-dir ../shared/data --part profile --steps 3
    # rebuild benchmarks/results/deari_speed.md from the JSON files
    python benchmarks/deari_speed.py --report

Every variant trains the same DEARI-3 (hidden 108, PhysioNet set-a, deari protocol, 10 % mask,
fold 0, batch 64) on the same real batches. ``--part speed`` builds one model per variant, then
runs rounds in which each variant in turn takes ``--steps`` training steps (forward, backward,
Adam) and one inference pass over the validation set, so machine drift hits all variants alike;
it reports the median over rounds and the ratio against ``fp32-1t``; the uncounted warm-up round
holds the compile time of the ``-compile-`` variants. Seconds per epoch are
``50 steps x step time`` (3,200 training records) plus one validation pass.

Results to expect (measured, see ``benchmarks/results/deari_speed.md``): the issue's idle-machine
fp32 figures were 1,117 ms per step on one thread and 797 ms on two.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from gapray.data.loaders import load_dataset
from gapray.data.splits import Split, imputation_split
from gapray.imputation import DEARI, DEARIConfig
from gapray.imputation.checkpoint import resume_or_start, run_dir
from gapray.imputation.deari.core import DEARICore
from gapray.imputation.training import impute_prepared, prepare

RESULTS = Path(__file__).resolve().parent / "results"


class Variant(NamedTuple):
    """How one timed DEARI-3 runs: encoder precision, torch threads, encoder width, what is compiled."""

    fast: bool  # DEARIConfig.fast_attention: bf16 encoders + 16-bit dropout masks
    threads: int
    feedforward: int  # the encoders' feed-forward width (paper 2048)
    # torch.compile (inductor) of "": nothing, "rnn": the recurrence (DEARIConfig.compile_recurrence),
    # "encoders": the attention encoders, "all": both
    compile: str = ""


VARIANTS = {
    "fp32-1t": Variant(False, 1, 2048),
    "fp32-2t": Variant(False, 2, 2048),
    "fast-1t": Variant(True, 1, 2048),
    "fast-2t": Variant(True, 2, 2048),
    "fp32-1t-ff512": Variant(False, 1, 512),
    "fast-1t-ff512": Variant(True, 1, 512),
    "fast-1t-ff256": Variant(True, 1, 256),
    "fast-2t-ff512": Variant(True, 2, 512),
    "fast-2t-ff256": Variant(True, 2, 256),
    # speed part only: compiling costs about a minute per model, paid in the uncounted warm-up round
    "fast-1t-compile-rnn": Variant(True, 1, 2048, "rnn"),
    "fast-2t-compile-rnn": Variant(True, 2, 2048, "rnn"),
    "fp32-2t-compile-rnn": Variant(False, 2, 2048, "rnn"),
    "fast-2t-ff256-compile-rnn": Variant(True, 2, 256, "rnn"),
    "fast-2t-compile-encoders": Variant(True, 2, 2048, "encoders"),
    "fast-2t-compile-all": Variant(True, 2, 2048, "all"),
}


def load_split(data_dir: str | None) -> Split:
    dataset = load_dataset("physionet2012", data_dir, progress=False)
    return imputation_split(dataset, protocol="deari", rate=0.1, seed=0, fold=0)


def _variant_model(name: str, n_features: int, base: DEARIConfig) -> tuple[DEARICore, torch.optim.Optimizer]:
    """The variant's DEARI-3 core (seed 0, so every variant starts from the same draw) and its Adam."""
    variant = VARIANTS[name]
    torch.manual_seed(0)
    core = DEARICore(n_features, base.replace(fast_attention=variant.fast, attention_feedforward=variant.feedforward,
                                              compile_recurrence=variant.compile in ("rnn", "all")))
    if variant.compile in ("encoders", "all"):  # tried, slower: not a config option
        for transition in core.initial_states:
            for direction in transition.children():
                direction.compile(dynamic=False)
    return core, torch.optim.Adam(core.parameters(), lr=base.lr, weight_decay=base.weight_decay)


def _train_step(core: DEARICore, optimizer: torch.optim.Optimizer, batch: Any) -> None:
    """One forward + backward + Adam step."""
    optimizer.zero_grad(set_to_none=True)
    core(batch).loss.backward()
    optimizer.step()


def measure_speed(split: Split, variants: list[str], rounds: int, steps: int) -> dict[str, Any]:
    """Median training-step and validation-inference seconds per variant, interleaved over rounds."""
    base = DEARIConfig(n_layers=3, device="cpu")
    train = prepare(split.train, base.delta_convention, torch.device("cpu"))
    val = prepare(split.val, base.delta_convention, torch.device("cpu"))
    batches = [batch for _, batch in train.batches(base.batch_size)]
    models = {name: _variant_model(name, train.values.shape[-1], base) for name in variants}
    step_times: dict[str, list[float]] = {name: [] for name in variants}
    infer_times: dict[str, list[float]] = {name: [] for name in variants}
    warmup_seconds: dict[str, float] = {}  # round 0: first steps, and compiling where a variant compiles
    position = 0
    for round_index in range(rounds + 1):  # round 0 warms up and is not counted
        for name in variants:
            core, optimizer = models[name]
            torch.set_num_threads(VARIANTS[name].threads)
            core.train()
            start = time.perf_counter()
            for _ in range(steps):
                _train_step(core, optimizer, batches[position % len(batches)])
                position += 1
            step_seconds = (time.perf_counter() - start) / steps
            start = time.perf_counter()
            impute_prepared(core, val, 4 * base.batch_size)
            infer_seconds = time.perf_counter() - start
            if round_index:
                step_times[name].append(step_seconds)
                infer_times[name].append(infer_seconds)
            else:
                warmup_seconds[name] = steps * step_seconds + infer_seconds
            print(f"round {round_index} {name}: step {1000 * step_seconds:.0f} ms, "
                  f"validation inference {infer_seconds:.2f} s", flush=True)
    reference = "fp32-1t" if "fp32-1t" in variants else variants[0]
    n_steps = math.ceil(len(split.train) / base.batch_size)
    rows = []
    for name in variants:
        step, infer = statistics.median(step_times[name]), statistics.median(infer_times[name])
        variant = VARIANTS[name]
        rows.append({"variant": name, "fast_attention": variant.fast, "threads": variant.threads,
                     "feedforward": variant.feedforward, "compile": variant.compile,
                     "warmup_round_s": warmup_seconds[name], "step_ms": 1000 * step, "infer_val_s": infer,
                     "epoch_s": n_steps * step + infer, "steps": step_times[name], "infer": infer_times[name],
                     "step_ratio": statistics.median(step_times[reference]) / step,
                     "infer_ratio": statistics.median(infer_times[reference]) / infer})
    return {"reference": reference, "rows": rows, "rounds": rounds, "steps_per_round": steps,
            "batches_per_epoch": n_steps, "n_val": len(split.val)}


def _op_shapes(event: Any) -> str:
    return " x ".join(str(list(shape)) for shape in event.input_shapes if shape)


def profile_step(split: Split, variants: list[str], steps: int, top: int = 12) -> dict[str, Any]:
    """Where one training step's time goes: ``torch.profiler`` self CPU time per op and input shape.

    Two warm-up steps, then ``steps`` profiled ones per variant. Besides the top ops it sums the
    share of the ops that touch the encoders' feed-forward activations (an input shape with the
    feed-forward width 2048 among its sizes: the two matmuls, ReLU, dropout and their gradients).
    """
    from torch.profiler import ProfilerActivity, profile

    base = DEARIConfig(n_layers=3, device="cpu")
    train = prepare(split.train, base.delta_convention, torch.device("cpu"))
    batches = [batch for _, batch in train.batches(base.batch_size)]
    results = []
    for name in variants:
        threads, width = VARIANTS[name].threads, VARIANTS[name].feedforward
        torch.set_num_threads(threads)
        core, optimizer = _variant_model(name, train.values.shape[-1], base)
        core.train()
        for index in range(2):
            _train_step(core, optimizer, batches[index])
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for index in range(steps):
                _train_step(core, optimizer, batches[index % len(batches)])
        wall = (time.perf_counter() - start) / steps
        events = [e for e in prof.key_averages(group_by_input_shape=True) if e.key.startswith("aten::")]
        total = sum(e.self_cpu_time_total for e in events)
        # 2048 is no other size in the model; a narrow width can coincide (256 = batch x heads)
        feedforward = sum(e.self_cpu_time_total for e in events
                          if any(width in shape for shape in e.input_shapes if shape)) if width == 2048 else None
        ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
        results.append({
            "variant": name, "threads": threads, "feedforward": width, "profiled_step_ms": 1000 * wall,
            "feedforward_activation_share": None if feedforward is None else feedforward / total,
            "top_ops": [{"op": e.key, "shapes": _op_shapes(e), "calls_per_step": e.count / steps,
                         "ms_per_step": e.self_cpu_time_total / 1000 / steps,
                         "share": e.self_cpu_time_total / total} for e in ranked]})
        print(f"{name}: {1000 * wall:.0f} ms per profiled step", flush=True)
    return {"steps": steps, "rows": results}


def measure_accuracy(split: Split, variants: list[str], epochs: int, seeds: list[int], threads: int) -> dict[str, Any]:
    """Test MAE of each variant after ``epochs`` epochs (no early stopping), same seeds and batches."""
    torch.set_num_threads(threads)
    rows = []
    for seed in seeds:
        for name in variants:
            variant = VARIANTS[name]
            model = DEARI(DEARIConfig(n_layers=3, device="cpu", epochs=epochs, patience=epochs + 1, seed=seed,
                                      fast_attention=variant.fast, attention_feedforward=variant.feedforward))
            checkpoint = run_dir("deari_speed", f"{name}-seed{seed}-epochs{epochs}") / "checkpoint.pt"
            model, resumed = resume_or_start(model, checkpoint)  # a long guard spans sessions
            if resumed:
                print(f"{name} seed {seed}: resuming at epoch {model.state.epoch} from {checkpoint}", flush=True)
            model.fit(split.train, split.val, checkpoint_path=checkpoint, show_progress=False)
            fit_seconds = sum(h["epoch_seconds"] for h in model.state.history)
            scores = model.evaluate(split.test)
            row = {"variant": name, "seed": seed, "epochs": epochs, "mae": scores["mae"], "mre": scores["mre"],
                   "best_epoch": model.state.best_epoch, "best_val_mae": model.state.best_val_mae,
                   "fit_seconds": fit_seconds, "val_mae_by_epoch": [h["val_mae"] for h in model.state.history]}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "val_mae_by_epoch"}), flush=True)
    return {"rows": rows, "epochs": epochs, "seeds": seeds, "threads": threads}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def write_report(out_dir: Path) -> Path:
    lines = ["# DEARI-3 speed and the fast path", "",
             "Generated by `benchmarks/deari_speed.py` from the `deari_speed_*.json` files beside this one. "
             "PhysioNet set-a, deari protocol, 10 % mask, fold 0, batch 64, hidden 108, DEARI-3 (CLS attention "
             "initialisation, 2 encoder layers per direction and transition). `fast` = bf16 autocast of the "
             "transformer encoders + 16-bit dropout masks (`DEARIConfig.fast_attention`).", ""]
    for path in sorted(out_dir.glob("deari_speed_*.json")):
        record = json.loads(path.read_text())
        lines += [f"## `{path.name}`", "", f"Command: `{record['command']}`  ",
                  f"Started {record['started']}; load average at start {record['load_average']}; "
                  f"{record['cpu_count']} CPUs; torch {record['torch']}.", ""]
        speed = record.get("speed")
        if speed:
            lines += [f"Training step = forward + backward + Adam on one batch of 64, median of {speed['rounds']} "
                      f"interleaved rounds of {speed['steps_per_round']} steps; inference = one pass over the "
                      f"{speed['n_val']} validation records; epoch = {speed['batches_per_epoch']} steps + "
                      f"validation. Ratios against `{speed['reference']}` in the same run.", "",
                      "| variant | threads | feed-forward | step ms | step ratio | s/epoch | validation inference s | "
                      "inference ratio | warm-up round s |", "|---|---|---|---|---|---|---|---|---|"]
            for row in speed["rows"]:
                lines.append(f"| {row['variant']} | {row['threads']} | {row['feedforward']} | {row['step_ms']:.0f} | "
                             f"{row['step_ratio']:.2f}x | {row['epoch_s']:.1f} | {row['infer_val_s']:.2f} | "
                             f"{row['infer_ratio']:.2f}x | {_seconds(row.get('warmup_round_s'))} |")
            lines.append("")
        profiled = record.get("profile")
        if profiled:
            lines += [f"`torch.profiler`, {profiled['steps']} training steps per variant after 2 warm-up steps; "
                      "self CPU time of the aten ops (the profiler's own overhead makes the step slower than in "
                      "the speed table).", ""]
            for row in profiled["rows"]:
                share = row["feedforward_activation_share"]
                lines += [f"**{row['variant']}** ({row['threads']} thread(s), feed-forward {row['feedforward']}): "
                          f"{row['profiled_step_ms']:.0f} ms per profiled step"
                          + ("" if share is None else f"; {100 * share:.0f} % of op time in ops on the encoders' "
                             "feed-forward activations (an input with a size of 2048)") + ".", "",
                          "| op | input shapes | calls/step | ms/step | share |", "|---|---|---|---|---|"]
                lines += [f"| `{op['op']}` | {op['shapes']} | {op['calls_per_step']:.0f} | {op['ms_per_step']:.1f} | "
                          f"{100 * op['share']:.1f} % |" for op in row["top_ops"]]
                lines.append("")
        accuracy = record.get("accuracy")
        if accuracy:
            lines += [f"Test MAE after {accuracy['epochs']} epochs (no early stopping), torch threads "
                      f"{accuracy['threads']}:", "", "| variant | seed | test MAE | MRE | best epoch | best val MAE | "
                      "fit s |", "|---|---|---|---|---|---|---|"]
            for row in accuracy["rows"]:
                lines.append(f"| {row['variant']} | {row['seed']} | {row['mae']:.4f} | {row['mre']:.4f} | "
                             f"{row['best_epoch']} | {row['best_val_mae']:.4f} | {row['fit_seconds']:.0f} |")
            reference = [r for r in accuracy["rows"] if r["variant"] == accuracy.get("reference", "fp32-1t")]
            for name in dict.fromkeys(r["variant"] for r in accuracy["rows"]):
                diffs = [r["mae"] - ref["mae"] for r in accuracy["rows"] if r["variant"] == name
                         for ref in reference if ref["seed"] == r["seed"]]
                if diffs and name != accuracy.get("reference", "fp32-1t"):
                    lines.append(f"\n`{name}` - reference, paired by seed: {statistics.mean(diffs):+.4f} MAE "
                                 f"(guard: within 0.003).")
            lines.append("")
    report = out_dir / "deari_speed.md"
    report.write_text("\n".join(lines))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--part", choices=("speed", "accuracy", "width", "profile"), default="speed")
    parser.add_argument("--variants", default=None, help="comma-separated names from: " + ", ".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="training steps per variant and round")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="accuracy/width parts: torch threads")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    if not args.report:
        defaults = {"speed": "fp32-1t,fp32-2t,fast-1t,fast-2t,fast-2t-ff512,fast-2t-ff256",
                    "accuracy": "fp32-1t,fast-2t", "width": "fast-2t,fast-2t-ff512,fast-2t-ff256",
                    "profile": "fp32-1t,fast-1t,fast-2t"}
        variants = [v.strip() for v in (args.variants or defaults[args.part]).split(",") if v.strip()]
        unknown = set(variants) - set(VARIANTS)
        if unknown:
            raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
        compiled = [name for name in variants if VARIANTS[name].compile]
        if compiled and args.part != "speed":
            raise SystemExit(f"compiled variants {compiled} are timed by --part speed only")
        split = load_split(args.data_dir)
        record: dict[str, Any] = {"command": " ".join(sys.argv), "torch": torch.__version__,
                                  "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if args.part == "speed":
            record["speed"] = measure_speed(split, variants, args.rounds, args.steps)
        elif args.part == "profile":
            record["profile"] = profile_step(split, variants, args.steps)
        else:
            record["accuracy"] = {**measure_accuracy(split, variants, args.epochs, args.seeds, args.threads),
                                  "reference": variants[0]}
        record["load_average_end"] = list(os.getloadavg())
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"deari_speed_{args.tag or args.part}.json").write_text(json.dumps(record, indent=1))
    print(write_report(out_dir))


if __name__ == "__main__":
    main()
