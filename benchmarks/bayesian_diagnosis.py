"""Why the posterior std of Bayesian DEARI does not learn, and which spread ranks the errors (issue 13).

How to run this script
----------------------
    python benchmarks/bayesian_diagnosis.py --dataset beijing-air --epochs 30
    python benchmarks/bayesian_diagnosis.py --dataset physionet2012 --epochs 10 --train-limit 1600

Trains Bayesian DEARI (2 layers, hidden 32, 1 encoder layer per transition: CPU budget) with the
paper's schedule (sample every 100 steps, 10 weight samples) and the *reference* optimiser
settings: one Adam learning rate for every parameter (``posterior_lr_scale=1``) and the KL
weight of the old code (``kl_weight = 1 / batches per epoch`` reproduces its extra division),
``rho_init = -6``. Every epoch it records how far ``rho`` moved and the posterior std. Then, on
the validation set's removed entries, it ranks the absolute error of the imputation by:

- the weight spread (10 weight samples) at the trained ``rho`` and with every ``rho`` set to -4,
  -3, -2 (a wider posterior, as if ``rho`` had learned);
- the spread of 10 randomly masked passes (``gapray.imputation.predictive.masked_passes``, 10 %
  of each record's observed inputs removed per pass);
- Laplace scales fitted on the training records' removed entries
  (``gapray.imputation.aleatoric.LaplaceScaleModel``) from the variable, the gap bucket and the
  masking spread (feature offsets alone: the gap and spread columns are constant).

Results to expect
-----------------
``rho`` moves by exactly ``lr`` per sampling step (Adam's first steps are ``lr * sign``) and by
nothing in between: ``lr x steps / 100``, i.e. 0.075 after the paper's 300 PhysioNet epochs. The
weight spread ranks the errors weakly (air) or not at all (PhysioNet), also when wider, and it
shrinks with the gap length; the masking spread and the Laplace scale rank them. Writes
``benchmarks/results/bayesian_diagnosis_<dataset>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gapray.data.loaders import load_dataset
from gapray.data.splits import imputation_split
from gapray.imputation import DEARI, DEARIConfig
from gapray.imputation.aleatoric import LaplaceScaleModel
from gapray.imputation.bayesian import gaussian_weights
from gapray.imputation.predictive import entry_features
from gapray.imputation.uncertainty import spearman_std_error

RESULTS = Path(__file__).resolve().parent / "results"
GAP_LABELS = {1: "1", 2: "2-3", 3: "4-7", 4: "8-15", 5: ">=16"}


def spread_row(name: str, std: np.ndarray, mean: np.ndarray, dataset: Any) -> dict[str, Any]:
    removed = dataset.indicating_mask > 0
    target = np.nan_to_num(dataset.X_ori)
    _, gaps = entry_features(dataset.mask)
    error = np.abs(mean - target)
    row = {"spread": name, "spearman": spearman_std_error(std, mean, target, removed),
           "mae": float(error[removed].mean()), "by_gap": {}}
    for g, label in GAP_LABELS.items():
        k = removed & (gaps == g)
        if k.sum() >= 20:
            row["by_gap"][label] = {"mean_std": float(std[k].mean()), "mean_abs_error": float(error[k].mean()),
                                    "share": float(k.sum() / removed.sum())}
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "by_gap"}),
          flush=True)
    return row


def set_rho(model: DEARI, value: float | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    assert model.core is not None
    before = {n: p.detach().clone() for n, p in model.core.named_parameters() if n.endswith(".rho")}
    with torch.no_grad():
        for n, p in model.core.named_parameters():
            if n.endswith(".rho"):
                p.copy_(value[n] if isinstance(value, dict) else torch.full_like(p, value))
    return before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beijing-air")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    split = imputation_split(load_dataset(args.dataset), protocol="deari", rate=0.1, seed=args.seed, fold=0)
    if args.train_limit and len(split.train) > args.train_limit:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(split.train), args.train_limit, replace=False))
        split = dataclasses.replace(split, train=split.train.subset(keep))
    batch_size = 64 if args.dataset == "physionet2012" else 128
    batches = math.ceil(len(split.train) / batch_size)
    observed = int(split.train.mask.sum())
    config = DEARIConfig(hidden_size=32, n_layers=2, attention_layers=1, batch_size=batch_size, epochs=args.epochs,
                         patience=args.epochs + 1, seed=args.seed, device="cpu", bayesian=True, unfreeze_every=100,
                         n_samples=10, rho_init=-6.0, posterior_lr_scale=1.0, kl_weight=1.0 / batches,
                         aleatoric="masking")
    model = DEARI(config)
    epochs: list[dict[str, float]] = []

    def record(epoch: int, metrics: dict[str, float]) -> None:
        assert model.core is not None
        rho = torch.cat([w.rho.detach().flatten() for w in gaussian_weights(model.core)])
        sampling_steps = (epoch * batches) // config.unfreeze_every  # type: ignore[operator]
        epochs.append({"epoch": epoch, "val_mae": metrics["val_mae"], "sampling_steps": sampling_steps,
                       "rho_max_move": float((rho - config.rho_init).abs().max()),
                       "bound_lr_x_sampling_steps": config.lr * sampling_steps,
                       "posterior_std_mean": float(F.softplus(rho).mean())})
        print(json.dumps(epochs[-1]), flush=True)

    model.fit(split.train, split.val, epoch_callback=record, show_progress=False)
    val = split.val
    rows = []
    torch.manual_seed(1)
    moments, _ = model._moments(val, 10)
    rows.append(spread_row("weights (trained rho)", moments["epistemic_std"], moments["imputation"], val))
    rows.append(spread_row("masking (10 passes, 10 %)", moments["masking_spread"], moments["imputation"], val))
    trained = set_rho(model, -4.0)
    model.config = config.replace(aleatoric="none", masking_samples=0)  # weight samples only
    for value in (-4.0, -3.0, -2.0):
        set_rho(model, value)
        torch.manual_seed(1)
        wide, _ = model._moments(val, 10)
        rows.append(spread_row(f"weights (rho = {value:g}, std {math.log1p(math.exp(value)):.3f})",
                               wide["epistemic_std"], wide["imputation"], val))
    set_rho(model, trained)
    model.config = config
    train = split.train.subset(np.sort(np.random.default_rng(args.seed).choice(len(split.train),
                                                                                min(1000, len(split.train)),
                                                                                replace=False)))
    torch.manual_seed(2)
    train_moments, _ = model._moments(train, 10)
    removed_train = train.indicating_mask > 0
    features_t, gaps_t = entry_features(train.mask)
    errors_t = np.abs(train_moments["imputation"] - np.nan_to_num(train.X_ori))[removed_train]
    features_v, gaps_v = entry_features(val.mask)
    def columns(gaps: np.ndarray, spread: np.ndarray, use_gap: bool, use_spread: bool
                ) -> tuple[np.ndarray, np.ndarray]:
        return (gaps if use_gap else np.ones_like(gaps)), (spread if use_spread else np.zeros_like(spread))

    for name, use_gap, use_spread in (("Laplace scale: variable", False, False),
                                      ("Laplace scale: variable + gap", True, False),
                                      ("Laplace scale: variable + gap + masking spread", True, True)):
        gaps_fit, spread_fit = columns(gaps_t[removed_train], train_moments["masking_spread"][removed_train],
                                       use_gap, use_spread)
        scale = LaplaceScaleModel.fit(errors_t, features_t[removed_train], gaps_fit, spread_fit, val.n_features)
        std = scale.std(features_v, *columns(gaps_v, moments["masking_spread"], use_gap, use_spread))
        rows.append(spread_row(name, std, moments["imputation"], val))
    results = {"command": "python benchmarks/bayesian_diagnosis.py " + " ".join(sys.argv[1:]),
               "dataset": args.dataset, "batches_per_epoch": batches, "observed_training_entries": observed,
               "kl_coefficient_old": 1.0 / (batches * observed), "kl_coefficient_new": 1.0 / observed,
               "config": dataclasses.asdict(config), "epochs": epochs, "spreads": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bayesian_diagnosis_{args.dataset}"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = [f"# Bayesian DEARI diagnosis: {args.dataset}", "", f"Command: `{results['command']}` (DEARI-2, hidden "
             f"32; shared 2-core machine)", "",
             f"{len(split.train)} training records, {batches} batches per epoch, {observed} observed training entries. "
             f"Old KL coefficient 1/(M N) = {results['kl_coefficient_old']:.3g}, per-entry ELBO 1/N = "
             f"{results['kl_coefficient_new']:.3g} ({batches}x).", "",
             "| epoch | val MAE | sampling steps so far | max abs(rho - rho_init) | lr x sampling steps | "
             "mean posterior std |", "|---|---|---|---|---|---|"]
    lines += [f"| {e['epoch']} | {e['val_mae']:.4f} | {e['sampling_steps']} | {e['rho_max_move']:.5f} | "
              f"{e['bound_lr_x_sampling_steps']:.5f} | {e['posterior_std_mean']:.6f} |" for e in epochs]
    lines += ["", "Which spread ranks the absolute error (validation removed entries)?", "",
              "| spread | Spearman(spread, abs error) | MAE of its mean | " +
              " | ".join(f"gap {v}: mean spread / abs error" for v in GAP_LABELS.values()) + " |",
              "|---|---|---|" + "---|" * len(GAP_LABELS)]
    for r in rows:
        cells = [f"{r['by_gap'][v]['mean_std']:.4f} / {r['by_gap'][v]['mean_abs_error']:.3f}" if v in r["by_gap"]
                 else "-" for v in GAP_LABELS.values()]
        lines.append(f"| {r['spread']} | {r['spearman']:.3f} | {r['mae']:.4f} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
