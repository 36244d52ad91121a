"""How many Monte Carlo weight samples a trained Bayesian DEARI needs for its mean imputation.

How to run this script
----------------------
    python benchmarks/bayesian_samples.py --data-dir ../shared/data --dataset physionet2012 \
        --tag physionet2012_full_bayes --model bayes-deari --samples 1,2,5,10,20,50,100

Loads the best-validation weights of a checkpointed ``benchmarks/imputation.py`` row (same split:
``deari`` protocol, 10 %, fold 0, split seed 0 unless told otherwise), draws the largest number of
weight samples once on the test fold and scores, on its held-out entries:

- the posterior-mean network (``predict(n_samples=0)``: every weight at ``mu``), the network
  early stopping selected;
- the Monte Carlo mean of the first ``K`` samples for every ``K`` asked for (DEARI sec. 4.3: what
  ``predict`` returns as the imputation), and a single sample;
- the mean epistemic std (sample std over all samples) and the posterior weight std
  ``softplus(rho)`` (mean, min, max).

If the Monte Carlo mean is worse than the posterior mean only because of sampling noise, its MAE
approaches the posterior mean's as ``K`` grows (the noise of a K-sample mean is std / sqrt(K));
if it stays above, the averaged network is itself worse. Writes
``benchmarks/results/bayesian_samples_<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gapray.data.loaders import load_dataset
from gapray.data.splits import imputation_split
from gapray.imputation.bayesian import posterior_spread_summary
from gapray.imputation.checkpoint import run_dir
from gapray.imputation.experiment import build_model
from gapray.imputation.training import prepare, sample_imputations
from gapray.metrics import masked_mae

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", default="physionet2012")
    parser.add_argument("--tag", required=True, help="the benchmarks/imputation.py tag that holds the checkpoint")
    parser.add_argument("--model", default="bayes-deari")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--mask-rate", type=float, default=0.1)
    parser.add_argument("--aggregate", default="last", choices=["last", "mean"])
    parser.add_argument("--samples", default="1,2,5,10,20,50,100", help="comma-separated K values")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=str(RESULTS), help="where the json and md files go")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = sorted({int(k) for k in args.samples.split(",")})
    if not counts or counts[0] < 1:
        raise SystemExit(f"--samples {args.samples!r}: every K must be >= 1")
    checkpoint = run_dir("imputation", args.tag) / f"{args.model}-fold{args.fold}.pt"
    if not checkpoint.exists():
        raise SystemExit(f"{checkpoint}: no such checkpoint (run benchmarks/imputation.py --tag {args.tag} first)")
    model = type(build_model(args.model)).load(checkpoint)
    if not model.config.bayesian:
        raise SystemExit(f"{checkpoint}: {args.model} is not a Bayesian model")
    if not model.use_best_weights():
        raise SystemExit(f"{checkpoint}: the run has no best-validation weights yet")
    core = model.core

    options: dict[str, Any] = {}
    if args.dataset == "physionet2012":
        options = {"progress": False, "aggregate": args.aggregate}
    dataset = load_dataset(args.dataset, args.data_dir, **options)
    test = imputation_split(dataset, protocol="deari", rate=args.mask_rate, seed=args.seed, fold=args.fold).test
    target, held_out = test.X_ori, test.indicating_mask

    started = time.perf_counter()
    frozen = model.predict(test, n_samples=0)["imputation"]
    torch.manual_seed(model.config.seed)
    data = prepare(test, model.config.delta_convention, model.device)
    samples = sample_imputations(core, data, model.config.batch_size, counts[-1]).cpu().numpy()
    seconds = time.perf_counter() - started
    epistemic = samples.astype(np.float64).std(axis=0, ddof=1)[held_out > 0] if counts[-1] > 1 else np.zeros(1)
    rows = [{"K": k, "mae": masked_mae(samples[:k].mean(axis=0), target, held_out),
             "noise_std": float(np.sqrt(np.mean(epistemic ** 2) / k))} for k in counts]
    record = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "checkpoint": str(checkpoint),
        "best_epoch": model.state.best_epoch, "epochs": model.state.epoch,
        "config": {k: getattr(model.config, k) for k in ("unfreeze_every", "n_samples", "kl_weight", "rho_init")},
        "posterior_mean_mae": masked_mae(frozen, target, held_out),
        "single_sample_mae": masked_mae(samples[0], target, held_out),
        "mean_epistemic_std": float(epistemic.mean()), "posterior_weight_std": posterior_spread_summary(core),
        "held_out_entries": int((held_out > 0).sum()), "seconds": seconds, "rows": rows,
    }
    print(json.dumps(record, indent=1))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bayesian_samples_{args.tag}.json").write_text(json.dumps(record, indent=1))
    (out / f"bayesian_samples_{args.tag}.md").write_text(markdown(record))


def markdown(record: dict[str, Any]) -> str:
    weight = record["posterior_weight_std"]
    lines = [
        f"# Monte Carlo mean vs posterior mean: `{record['checkpoint'].split('/runs/')[-1]}`", "",
        f"Command: `python benchmarks/{record['command']}`  ",
        f"Best-validation weights (epoch {record['best_epoch']} of {record['epochs']}); "
        f"settings {json.dumps(record['config'])}; {record['held_out_entries']} held-out test entries.", "",
        f"- posterior-mean network (every weight at mu): MAE **{record['posterior_mean_mae']:.4f}**",
        f"- one weight sample: MAE {record['single_sample_mae']:.4f}",
        f"- mean epistemic std on the held-out entries: {record['mean_epistemic_std']:.4f}; posterior weight std "
        f"softplus(rho): mean {weight['posterior_std_mean']:.4f}, min {weight['posterior_std_min']:.4f}, "
        f"max {weight['posterior_std_max']:.4f}", "",
        "| K weight samples | MAE of their mean | minus posterior mean | noise of a K-mean (rms std / sqrt K) |",
        "|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(f"| {row['K']} | {row['mae']:.4f} | {row['mae'] - record['posterior_mean_mae']:+.4f} | "
                     f"{row['noise_std']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
