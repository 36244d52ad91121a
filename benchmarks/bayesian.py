"""Bayesian DEARI (DEARI sec. 4.3): does its uncertainty carry information? Against two baselines.

How to run this script
----------------------
    # Beijing air, 20 epochs each (equal epochs, no early stop), DEARI-2 hidden 32 (CPU budget)
    python benchmarks/bayesian.py --datasets beijing-air --epochs 20 --tag air
    # PhysioNet set-a, same
    python benchmarks/bayesian.py --datasets physionet2012 --epochs 20 --tag physionet
    # Monte Carlo inference cost only (untrained models, best of 3 interleaved timings)
    python benchmarks/bayesian.py --cost 3 --datasets physionet2012

Protocol: ``deari`` (z-score on train, 10 % of every record's observed values removed in train,
validation and test), fold 0 of 5. Models, all trained ``--epochs`` epochs (patience larger than
the budget; the best-validation weights are kept, as ``fit`` does):

- ``deari``: deterministic DEARI; its uncertainty is the **constant-width split-conformal band**
  (std = 1 everywhere, calibrated on validation);
- ``bayes_deari``: Bayesian DEARI, its deterministic twin (same config, ``bayesian=True``), the
  paper's schedule (``--unfreeze-every`` 100, ``--n-samples`` 10). Scored with four predictive
  stds from the same Monte Carlo passes: ``weights`` (the weight spread alone, as the reference
  port), ``masking`` (+ the spread of the randomly masked passes), ``laplace_no_level`` (the
  weight spread and the learned Laplace scale from variable, gap and masking spread,
  ``gapray.imputation.aleatoric``) and ``laplace`` (the default: the scale also depends on the
  imputed value, ``aleatoric_level=True``);
- ``ensemble``: a deep ensemble of ``--ensemble`` BRITS-GRU (seeds 0..E-1): mean and spread of
  the members.

Scores on the test set's removed entries (``gapray.imputation.uncertainty.informativeness_scores``):
MAE of the (Monte Carlo / ensemble) mean; Spearman(std, |error|); raw 90 % Gaussian coverage
and width; split-conformal calibrated (validation) coverage, width and closed-form Gaussian CRPS,
globally and per gap-length bucket (Mondrian), with coverage and width by gap bucket and by
variable. During Bayesian training the posterior std ``softplus(rho)`` and the validation
epistemic std are recorded every epoch and plotted (``bayesian_<tag>_std_over_training.png``).

Results to expect
-----------------
Targets (issue 13): Spearman >= 0.3; calibrated 90 % coverage in 0.87-0.93 in every gap bucket;
calibrated CRPS >= 10 % below the constant band's and no worse than the ensemble's; Monte Carlo
mean MAE <= deterministic DEARI + 0.003. The weight spread alone ranks errors barely or not at
all (Spearman 0.17 air, -0.05 PhysioNet in the diagnosis runs); the masking spread and the
Laplace scale carry the information. Writes ``benchmarks/results/bayesian_<tag>.json``/``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gapray.data.loaders import load_dataset
from gapray.data.splits import Split, imputation_split
from gapray.imputation import BRITS, DEARI, BRITSConfig, DEARIConfig
from gapray.imputation.bayesian import posterior_spread_summary
from gapray.imputation.plotting import band_example, plot_imputation_band
from gapray.imputation.predictive import (
    FittedUncertainty,
    add_predictive_std,
    fit_scale_model,
    scale_training_records,
)
from gapray.imputation.uncertainty import (
    ConformalCalibration,
    gap_groups,
    informativeness_scores,
    spearman_std_error,
)
from gapray.metrics import masked_mae

RESULTS = Path(__file__).resolve().parent / "results"
STD_VARIANTS = ("weights", "masking", "laplace_no_level", "laplace")
"""Predictive stds of Bayesian DEARI scored from the same passes (see the module docstring)."""
GAP_LABELS = {1: "1", 2: "2-3", 3: "4-7", 4: "8-15", 5: ">=16"}


def deari_config(args: argparse.Namespace, batch_size: int, **changes: Any) -> DEARIConfig:
    return DEARIConfig(hidden_size=args.hidden, n_layers=args.layers, attention_layers=args.attention_layers,
                       batch_size=batch_size, epochs=args.epochs, patience=args.epochs + 1, seed=args.seed,
                       device="cpu", **changes)


def bayesian_changes(args: argparse.Namespace) -> dict[str, Any]:
    return {"bayesian": True, "unfreeze_every": args.unfreeze_every, "n_samples": args.n_samples,
            "masking_samples": args.masking_samples, "masking_rate": args.masking_rate,
            "posterior_lr_scale": args.posterior_lr_scale,
            "rho_init": args.rho_init}


def target_of(dataset: Any) -> np.ndarray:
    return np.nan_to_num(dataset.X_ori)


def score(val_mean: np.ndarray, val_std: np.ndarray, test_mean: np.ndarray, test_std: np.ndarray, split: Split,
          level: float) -> dict[str, Any]:
    """MAE and :func:`informativeness_scores` of one (mean, std) pair on validation and test."""
    val, test = split.val, split.test
    scores = informativeness_scores(val_mean, val_std, target_of(val), val.indicating_mask, val.mask, test_mean,
                                    test_std, target_of(test), test.indicating_mask, test.mask, level)
    return {"mae": masked_mae(test_mean, target_of(test), test.indicating_mask), **scores}


def run_deterministic(split: Split, args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    model = DEARI(deari_config(args, batch_size))
    start = time.perf_counter()
    history = model.fit(split.train, split.val, show_progress=False)
    seconds = time.perf_counter() - start
    val_mean = model.predict(split.val)["imputation"]
    test_mean = model.predict(split.test)["imputation"]
    constant = score(val_mean, 1.0 - split.val.mask, test_mean, 1.0 - split.test.mask, split, args.level)
    return {"model": "deari", "std": "constant", "epochs": len(history), "best_epoch": model.state.best_epoch,
            "train_seconds": seconds, **constant}


STD_RECORDS = 64
"""Validation records on which the epistemic std is followed over training (CPU budget)."""


def std_over_training(model: DEARI, split: Split, n_samples: int) -> Any:
    """Epoch callback recording the posterior std ``softplus(rho)`` and, on :data:`STD_RECORDS`
    validation records, the weight (epistemic) spread of ``n_samples`` weight samples: its mean on
    the removed entries and its Spearman correlation with the absolute error."""
    records: list[dict[str, float]] = []
    val = split.val.subset(np.arange(min(STD_RECORDS, len(split.val))))
    removed = val.indicating_mask > 0

    def callback(epoch: int, metrics: dict[str, float]) -> None:
        assert model.core is not None
        weights_only = model.config.replace(masking_samples=0, aleatoric="none")
        config, model.config = model.config, weights_only
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(epoch)
                moments, _ = model._moments(val, n_samples)
        finally:
            model.config = config
        epistemic = moments["epistemic_std"]
        records.append({"epoch": float(epoch), "val_mae": metrics["val_mae"], **posterior_spread_summary(model.core),
                        "val_epistemic_std_mean": float(epistemic[removed].mean()),
                        "val_epistemic_spearman": spearman_std_error(epistemic, moments["imputation"],
                                                                     target_of(val), removed)})
        print(json.dumps(records[-1]), flush=True)

    return records, callback


def run_bayesian(split: Split, args: argparse.Namespace, batch_size: int) -> tuple[list[dict[str, Any]],
                                                                                      list[dict[str, float]]]:
    # fit() with aleatoric="masking" skips the Laplace fit; the scales are fitted below from one set of
    # passes over the training records, with and without the level, exactly as fit_uncertainty does
    model = DEARI(deari_config(args, batch_size, **bayesian_changes(args), aleatoric="masking"))
    records, callback = std_over_training(model, split, args.n_samples)
    start = time.perf_counter()
    history = model.fit(split.train, split.val, epoch_callback=callback, show_progress=False)
    seconds = time.perf_counter() - start
    records_for_scale = scale_training_records(split.train, model.config.masking_rate, model.config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.config.seed)
        train_moments, _ = model._moments(records_for_scale, args.n_samples)
    scales = {"laplace": fit_scale_model(train_moments, records_for_scale, level=True),
              "laplace_no_level": fit_scale_model(train_moments, records_for_scale, level=False)}
    moments = {}
    for name, part in (("val", split.val), ("test", split.test)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed + 7)
            moments[name], _ = model._moments(part, args.n_samples)
    frozen = model.predict(split.test, n_samples=0)["imputation"]
    common = {"model": "bayes_deari", "epochs": len(history), "best_epoch": model.state.best_epoch,
              "train_seconds": seconds, "frozen_mae": masked_mae(frozen, target_of(split.test),
                                                                  split.test.indicating_mask)}
    rows = []
    kinds = {"weights": "none", "masking": "masking", "laplace": "laplace", "laplace_no_level": "laplace"}
    removed, buckets = split.test.indicating_mask > 0, gap_groups(split.test.mask)
    for variant in STD_VARIANTS:
        std = {name: add_predictive_std(moments[name], part.mask, kinds[variant],  # type: ignore[arg-type]
                                        scales.get(variant))["std"]
               for name, part in (("val", split.val), ("test", split.test))}
        row = {**common, "std": variant,
               **score(moments["val"]["imputation"], std["val"], moments["test"]["imputation"], std["test"], split,
                       args.level)}
        row["mean_std_by_gap"] = {str(g): float(std["test"][removed & (buckets == g)].mean())
                                  for g in GAP_LABELS if (removed & (buckets == g)).any()}
        rows.append(row)
        print(json.dumps(_brief(row)), flush=True)
    for row in rows:
        if row["std"] in scales:
            row["laplace_alpha"] = scales[row["std"]].alpha
    # the model as fit() leaves it by default: Laplace scale with the level, calibration per gap bucket
    default_std = add_predictive_std(moments["val"], split.val.mask, "laplace", scales["laplace"])["std"]
    calibration = ConformalCalibration.fit(moments["val"]["imputation"], default_std, target_of(split.val),
                                           split.val.indicating_mask, gap_groups(split.val.mask))
    model.config = model.config.replace(aleatoric="laplace")
    model.uncertainty = FittedUncertainty(scales["laplace"], calibration, "gap")
    figure_3c(model, split, args)
    return rows, records


def figure_3c(model: DEARI, split: Split, args: argparse.Namespace) -> None:
    """DEARI Fig. 3c from ``predict``'s default (calibrated) 90 % interval: the test record and
    variable with the longest gap that holds removed ground truth, in original units."""
    test = split.test
    best, feature = band_example(test)
    record = test.subset([best])
    torch.manual_seed(args.seed)
    prediction = model.predict(record, level=args.level)
    inverse = split.standardizer.inverse
    shown = record.replace(X=inverse(record.X), X_ori=inverse(record.X_ori))
    path = RESULTS / f"bayesian_{args.tag or 'run'}_{test.name}_fig3c.png"
    plot_imputation_band(shown, {k: inverse(prediction[k]) for k in ("imputation", "lower", "upper")}, 0,
                         feature, path, title=f"{test.name} test record {best}: calibrated 90 % "
                         "interval of Bayesian DEARI", label="90 % interval (calibrated)")
    print(f"  Fig. 3c: {path.name}", flush=True)


def run_ensemble(split: Split, args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    val_members, test_members, seconds = [], [], 0.0
    for seed in range(args.ensemble):
        model = BRITS(BRITSConfig(hidden_size=args.hidden, cell="gru", batch_size=batch_size, epochs=args.epochs,
                                  patience=args.epochs + 1, seed=seed, device="cpu"))
        start = time.perf_counter()
        model.fit(split.train, split.val, show_progress=False)
        seconds += time.perf_counter() - start
        val_members.append(model.predict(split.val)["imputation"])
        test_members.append(model.predict(split.test)["imputation"])
        print(f"  ensemble member {seed}: test MAE "
              f"{masked_mae(test_members[-1], target_of(split.test), split.test.indicating_mask):.4f}", flush=True)
    val_stack, test_stack = np.stack(val_members), np.stack(test_members)
    row = score(val_stack.mean(0), val_stack.std(0, ddof=1), test_stack.mean(0), test_stack.std(0, ddof=1), split,
                args.level)
    member_maes = [masked_mae(m, target_of(split.test), split.test.indicating_mask) for m in test_members]
    return {"model": f"ensemble_{args.ensemble}_brits_gru", "std": "members", "epochs": args.epochs,
            "train_seconds": seconds, "member_mae_mean": float(np.mean(member_maes)), **row}


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    cal, gap = row["calibrated"], row["gap_calibrated"]
    return {"model": row["model"], "std": row["std"], "mae": round(row["mae"], 4),
            "spearman": round(row["spearman"], 3),
            "raw_picp": round(row["raw_picp"], 3), "cal_picp": round(cal["picp"], 3), "cal_crps": round(cal["crps"], 4),
            "gap_cal_crps": round(gap["crps"], 4), "gap_worst": round(gap["worst_gap_coverage"], 3),
            "cal_worst": round(cal["worst_gap_coverage"], 3)}


def verdict(rows: list[dict[str, Any]], level: float) -> dict[str, Any]:
    """The issue's four targets for the default Bayesian std (``laplace``)."""
    by = {(r["model"], r["std"]): r for r in rows}
    bayes = by.get(("bayes_deari", "laplace"))
    constant = by.get(("deari", "constant"))
    ensemble = next((r for r in rows if r["model"].startswith("ensemble")), None)
    if bayes is None:
        return {}
    out: dict[str, Any] = {"spearman >= 0.3": bayes["spearman"] >= 0.3}
    for kind in ("calibrated", "gap_calibrated"):
        buckets = [s["coverage"] for s in bayes[kind]["by_gap"].values() if s["share"] >= 0.01]
        out[f"{kind}: every gap bucket (>= 1 % of entries) in 0.87-0.93"] = all(0.87 <= c <= 0.93 for c in buckets)
        if constant is not None:
            out[f"{kind}: CRPS <= 0.9 x constant band"] = bayes[kind]["crps"] <= 0.9 * constant[kind]["crps"]
            out[f"{kind}: CRPS vs constant band"] = bayes[kind]["crps"] / constant[kind]["crps"]
        if ensemble is not None:
            out[f"{kind}: CRPS <= ensemble"] = bayes[kind]["crps"] <= ensemble[kind]["crps"]
    if constant is not None:
        out["MC-mean MAE <= deterministic + 0.003"] = bayes["mae"] <= constant["mae"] + 0.003
    return out


def plot_std_over_training(records: list[dict[str, float]], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.2), dpi=110)
    FigureCanvasAgg(figure)
    epochs = [r["epoch"] for r in records]
    left, middle, right = figure.subplots(1, 3)
    left.plot(epochs, [r["posterior_std_mean"] for r in records], label="mean")
    left.plot(epochs, [r["posterior_std_max"] for r in records], label="max")
    left.set_title("posterior std softplus(rho)", fontsize=9)
    left.legend(fontsize=8)
    middle.plot(epochs, [r["val_epistemic_std_mean"] for r in records])
    middle.set_title("mean weight (epistemic) std, val removed", fontsize=9)
    right.plot(epochs, [r["val_epistemic_spearman"] for r in records])
    right.axhline(0.3, color="grey", linestyle=":")
    right.set_title("Spearman(weight std, |error|), val", fontsize=9)
    for axes in (left, middle, right):
        axes.set_xlabel("epoch", fontsize=8)
        axes.tick_params(labelsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png")


def markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = [f"# Bayesian DEARI: informative uncertainty ({', '.join(results['datasets'])}; deari protocol, "
             f"{settings['rate']:.0%}, fold {settings['fold']})", "",
             f"Command: `{results['command']}`" + (f" (other models' rows: `{results['merged_from']}`)"
                                                   if results.get("merged_from") else ""),
             "", f"Settings: `{json.dumps(settings)}`", "",
             f"Machine: {json.dumps(results['machine'])} (shared 2-core machine under load: timings are indicative)",
             ""]
    order = {"deari": 0, "bayes_deari": 1}
    for dataset, entry in results["datasets"].items():
        rows = sorted(entry["rows"], key=lambda r: (order.get(r["model"], 2), STD_VARIANTS.index(r["std"])
                                                    if r["std"] in STD_VARIANTS else 0))
        lines += [f"## {dataset} ({' x '.join(map(str, entry['shape']))}), {settings['epochs']} epochs each", "",
                  "| model | std | MAE | Spearman(std, abs err) | raw PICP | raw width | cal. PICP | cal. width | "
                  "cal. CRPS | gap-cal. PICP | gap-cal. width | gap-cal. CRPS | worst gap bucket (cal. / gap-cal.) | "
                  "variable coverage range (gap-cal.) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            c, g = r["calibrated"], r["gap_calibrated"]
            lines.append(f"| {r['model']} | {r['std']} | {r['mae']:.4f} | {r['spearman']:.3f} | {r['raw_picp']:.3f} | "
                         f"{r['raw_width']:.3f} | {c['picp']:.3f} | {c['width']:.3f} | {c['crps']:.4f} | "
                         f"{g['picp']:.3f} | {g['width']:.3f} | {g['crps']:.4f} | {c['worst_gap_coverage']:.3f} / "
                         f"{g['worst_gap_coverage']:.3f} | {g['feature_coverage_min']:.2f}-"
                         f"{g['feature_coverage_max']:.2f} |")
        lines += ["", "Calibrated 90 % coverage / mean width by gap length (steps to the nearest observation of the "
                  "variable), global multiplier | per-bucket multiplier:", "",
                  "| model | std | " + " | ".join(f"gap {v}" for v in GAP_LABELS.values()) + " |",
                  "|---|---|" + "---|" * len(GAP_LABELS)]
        for r in rows:
            cells = []
            for g in GAP_LABELS:
                c, m = r["calibrated"]["by_gap"].get(g), r["gap_calibrated"]["by_gap"].get(g)
                cells.append("-" if c is None else f"{c['coverage']:.3f}/{c['width']:.2f} \\| {m['coverage']:.3f}/"
                             f"{m['width']:.2f} ({c['share']:.1%})")
            lines.append(f"| {r['model']} | {r['std']} | " + " | ".join(cells) + " |")
        bayes = [r for r in rows if r["model"] == "bayes_deari"]
        if bayes:
            lines += ["", f"Bayesian DEARI: MC-mean MAE {bayes[0]['mae']:.4f}, frozen (posterior means) MAE "
                      f"{bayes[0]['frozen_mae']:.4f}. Mean raw std of the test's removed entries by gap bucket:", "",
                      "| std | " + " | ".join(f"gap {v}" for v in GAP_LABELS.values()) + " |",
                      "|---|" + "---|" * len(GAP_LABELS)]
            for r in bayes:
                lines.append(f"| {r['std']} | " + " | ".join(f"{r['mean_std_by_gap'][str(g)]:.4f}"
                                                             if str(g) in r["mean_std_by_gap"] else "-"
                                                             for g in GAP_LABELS) + " |")
        if entry.get("verdict"):
            lines += ["", "Targets (default Bayesian std `laplace`):", ""]
            lines += [f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: **{'met' if v else 'missed'}**"
                      for k, v in entry["verdict"].items()]
        if entry.get("std_over_training"):
            first, last = entry["std_over_training"][0], entry["std_over_training"][-1]
            lines += ["", f"Std over training (`{entry['plot']}`): posterior std mean "
                      f"{first['posterior_std_mean']:.5f} (epoch 1) -> {last['posterior_std_mean']:.5f} (epoch "
                      f"{last['epoch']:.0f}), max {last['posterior_std_max']:.5f}; validation epistemic std "
                      f"{first['val_epistemic_std_mean']:.5f} -> {last['val_epistemic_std_mean']:.5f}, its Spearman "
                      f"{first['val_epistemic_spearman']:.3f} -> {last['val_epistemic_spearman']:.3f}."]
        lines.append("")
    return "\n".join(lines)


def cost_rows(split: Split, args: argparse.Namespace, repeats: int) -> list[dict[str, Any]]:
    """Inference cost of ``--n-samples`` weight samples + ``--masking-samples`` masked passes vs
    one frozen pass over the test set (untrained models), best of ``repeats`` interleaved timings,
    one intra-op thread."""
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = DEARI(deari_config(args, 64, **bayesian_changes(args)))
        model._build(split.test.n_features)
        times: dict[str, list[float]] = {"frozen": [], "monte_carlo": []}
        for _ in range(repeats):
            for kind, n_samples in (("frozen", 0), ("monte_carlo", args.n_samples)):
                start = time.perf_counter()
                model.predict(split.test, n_samples=n_samples, calibrated=False)
                times[kind].append(time.perf_counter() - start)
        one, mc = min(times["frozen"]), min(times["monte_carlo"])
        rows.append({"model": "bayes_deari", "n_samples": args.n_samples, "masking_samples": args.masking_samples,
                     "seconds_1pass": one, "seconds_mc": mc, "ratio": mc / one})
        print(json.dumps(rows[-1]), flush=True)
    finally:
        torch.set_num_threads(threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["beijing-air", "physionet2012"])
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=32, help="hidden units (paper: 108)")
    parser.add_argument("--layers", type=int, default=2, help="DEARI layers (paper: 3)")
    parser.add_argument("--attention-layers", type=int, default=1, help="encoder layers per transition (paper: 2)")
    parser.add_argument("--epochs", type=int, default=20, help="equal training epochs of every model")
    parser.add_argument("--train-limit", type=int, default=0, help="train on a seeded subset of this many records")
    parser.add_argument("--unfreeze-every", type=int, default=100, help="paper: 100")
    parser.add_argument("--n-samples", type=int, default=10, help="weight samples (paper: 10)")
    parser.add_argument("--masking-samples", type=int, default=10, help="aleatoric masked passes")
    parser.add_argument("--masking-rate", type=float, default=0.1, help="inputs removed per masked pass")
    parser.add_argument("--posterior-lr-scale", type=float, default=None, help="None: unfreeze_every")
    parser.add_argument("--rho-init", type=float, default=-6.0, help="reference: -6")
    parser.add_argument("--ensemble", type=int, default=5, help="BRITS-GRU members (0: none)")
    parser.add_argument("--models", nargs="+", default=["deari", "bayes_deari", "ensemble"],
                        choices=["deari", "bayes_deari", "ensemble"])
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--tag", default="")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of models not in --models from an earlier run with this tag")
    parser.add_argument("--cost", type=int, default=0, metavar="REPEATS", help="only measure Monte Carlo cost")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    suffix = f"_{args.tag}" if args.tag else ""
    results: dict[str, Any] = {
        "command": "python benchmarks/bayesian.py " + " ".join(sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("cost", "merge")},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads()},
        "datasets": {},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        data = load_dataset(dataset)
        split = imputation_split(data, protocol="deari", rate=args.rate, seed=args.seed, fold=args.fold)
        if args.train_limit and len(split.train) > args.train_limit:  # CPU budget: a seeded subset of train
            keep = np.sort(np.random.default_rng(args.seed).choice(len(split.train), args.train_limit, replace=False))
            split = dataclasses.replace(split, train=split.train.subset(keep))
        batch_size = 64 if dataset == "physionet2012" else 128
        if args.cost:
            results["datasets"][dataset] = {"cost": cost_rows(split, args, args.cost)}
            continue
        out_json = RESULTS / f"bayesian{suffix}.json"
        entry: dict[str, Any] = {"shape": list(data.X.shape), "rows": []}
        if args.merge and out_json.exists():  # keep the other models' rows of an earlier run of this tag
            earlier = json.loads(out_json.read_text())
            results["datasets"] = {k: v for k, v in earlier["datasets"].items() if k != dataset}
            kept = earlier["datasets"].get(dataset, {})
            rerun = {"deari": "deari", "bayes_deari": "bayes_deari", "ensemble": "ensemble_"}
            entry["rows"] = [r for r in kept.get("rows", [])
                             if not any(r["model"].startswith(rerun[m]) for m in args.models)]
            if "bayes_deari" not in args.models and "std_over_training" in kept:
                entry["std_over_training"], entry["plot"] = kept["std_over_training"], kept["plot"]
            # an earlier merge run of the same models kept its other rows from its own source
            rerun_only = set(earlier["settings"]["models"]) <= set(args.models)
            results["merged_from"] = (earlier.get("merged_from") if rerun_only else None) or earlier["command"]
        results["datasets"][dataset] = entry
        if "deari" in args.models:
            print(f"[{dataset}] deterministic DEARI ...", flush=True)
            entry["rows"].append(run_deterministic(split, args, batch_size))
            print(json.dumps(_brief(entry["rows"][-1])), flush=True)
            out_json.write_text(json.dumps(results, indent=1))
        if "bayes_deari" in args.models:
            print(f"[{dataset}] Bayesian DEARI ...", flush=True)
            rows, records = run_bayesian(split, args, batch_size)
            entry["rows"] += rows
            entry["std_over_training"] = records
            plot = RESULTS / f"bayesian{suffix}_{dataset}_std_over_training.png"
            plot_std_over_training(records, plot, f"Bayesian DEARI on {dataset}: std over training")
            entry["plot"] = plot.name
            out_json.write_text(json.dumps(results, indent=1))
        if "ensemble" in args.models and args.ensemble >= 2:
            print(f"[{dataset}] ensemble of {args.ensemble} BRITS-GRU ...", flush=True)
            entry["rows"].append(run_ensemble(split, args, batch_size))
            print(json.dumps(_brief(entry["rows"][-1])), flush=True)
        entry["verdict"] = verdict(entry["rows"], args.level)
        out_json.write_text(json.dumps(results, indent=1))
        (RESULTS / f"bayesian{suffix}.md").write_text(markdown(results))
    if args.cost:
        (RESULTS / f"bayesian_cost{suffix}.json").write_text(json.dumps(results, indent=1))
        print(json.dumps(results["datasets"], indent=1))
        return
    print(markdown(results))


if __name__ == "__main__":
    main()
