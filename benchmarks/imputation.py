"""Imputation benchmark (issue 3): DEARI Table 1 rows and PyPOTS 1.5's BRITS on the same split.

How to run this script::

    # PhysioNet set-a, deari protocol, 10 % mask, fold 0, every model, 10 minutes each
    python benchmarks/imputation.py --data-dir ../shared/data --max-minutes 10
    # all five folds, only BRITS-GRU and DEARI, at most 50 epochs
    python benchmarks/imputation.py --folds 5 --models brits-gru,deari --epochs 50
    # Beijing air (stacked 1461 x 24 x 132), batch 128
    python benchmarks/imputation.py --dataset beijing-air --models mean,locf,brits-gru,deari
    # Bayesian rows (DEARI sec. 4.3) against deterministic DEARI at equal epochs (no early stop)
    python benchmarks/imputation.py --models deari,bayes-deari --epochs 6 --patience 100 \
        --unfreeze-every 10 --tag physionet2012_bayes_equal_epochs
    # add rows to an existing results file of the same settings
    python benchmarks/imputation.py --models bayes-brits --epochs 6 --patience 100 --append \
        --tag physionet2012_bayes_equal_epochs
    # rebuild the markdown table from every results/imputation_*.json
    python benchmarks/imputation.py --report

Each run writes ``benchmarks/results/imputation_<tag>.json`` and rebuilds
``benchmarks/results/imputation.md`` from all such files. ``pypots-brits`` trains PyPOTS 1.5's
BRITS (``pip install pypots==1.5``; hidden 108, same Adam settings, batch, patience and split)
for the number of epochs that fits the same time budget as ours; ``throughput`` times one
training epoch of our BRITS-LSTM and PyPOTS BRITS alternately (no validation) and reports the
ratio of samples per second. The Bayesian rows ``bayes-brits``, ``bayes-deari`` and
``bayes-deari-dml`` report MAE/MRE of the Monte Carlo mean of ``--n-samples`` passes, raw and
split-conformal calibrated (on the validation set's removed entries) coverage of the
``--level`` interval, its mean width, CRPS, and train and inference time against the
deterministic ``deari`` row of the same run (:func:`gapray.imputation.experiment.score_uncertainty`).

Results to expect: DEARI Table 1 (PhysioNet 10 %): BRITS-LSTM 0.2629, BRITS-GRU 0.2564,
DEARI 0.2412, DEARI-DML 0.2408, Bayesian DEARI 0.2415 MAE after up to 300 epochs on a GPU
(Beijing air: 0.1089 deterministic, 0.1012 Bayesian DEARI; Traffic: 0.06815 and 0.06763, on the
full file with ``--data-dir ../shared/data/traffic/full``). On a shared 2-core CPU
with a budget of minutes per model the recurrent models run tens of epochs and DEARI (four
2048-wide transformer encoder layers per extra layer) only a few, so expect higher MAE.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import logging
import math
import os
import platform as stdlib_platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gapray.data.cache import atomic_write_bytes
from gapray.data.loaders import load_dataset
from gapray.data.splits import Split, imputation_split
from gapray.imputation import BRITS, BRITSConfig, DEARIConfig
from gapray.imputation.checkpoint import CheckpointMismatch, run_dir
from gapray.imputation.experiment import (
    BATCH_SIZES,
    BAYESIAN_DEFAULTS,
    BAYESIAN_MODEL_NAMES,
    MODEL_NAMES,
    build_model,
    fit_and_score,
)
from gapray.metrics import masked_mae, masked_mre

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_MAE = {  # DEARI Table 1, 10 % mask
    "physionet2012": {"brits-lstm": 0.2629, "brits-gru": 0.2564, "brits-dml": 0.2561, "deari": 0.2412,
                      "deari-dml": 0.2408, "bayes-deari": 0.2415},
    "beijing-air": {"brits-lstm": 0.1203, "brits-gru": 0.1062, "brits-dml": 0.1065, "deari": 0.1089,
                    "deari-dml": 0.1080, "bayes-deari": 0.1012},
    "traffic": {"brits-lstm": 0.07334, "brits-gru": 0.07295, "brits-dml": 0.07265, "deari": 0.06815,
                "deari-dml": 0.06851, "bayes-deari": 0.06763},
}
EXTRA_MODELS = ("pypots-brits", "pypots-saits", "throughput")


def _quiet_pypots() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("pypots").setLevel(logging.ERROR)


def pypots_brits(split: Split, hidden: int, batch_size: int, epochs: int, patience: int, seed: int,
                 with_val: bool = True) -> tuple[Any, float]:
    """Fit PyPOTS 1.5 BRITS with our training settings; returns (model, fit seconds)."""
    _quiet_pypots()
    from pypots.imputation import BRITS as PyPOTSBRITS
    from pypots.optim import Adam
    from pypots.utils.random import set_random_seed

    set_random_seed(seed)
    cfg = BRITSConfig()
    model = PyPOTSBRITS(n_steps=split.train.n_steps, n_features=split.train.n_features, rnn_hidden_size=hidden,
                        batch_size=batch_size, epochs=epochs,
                        patience=min(patience, epochs) if with_val else None,
                        optimizer=Adam(lr=cfg.lr, weight_decay=cfg.weight_decay), device="cpu",
                        saving_path=None, model_saving_strategy=None, verbose=False)
    val = {"X": split.val.X, "X_ori": split.val.X_ori} if with_val else None
    start = time.perf_counter()
    model.fit({"X": split.train.X}, val)
    return model, time.perf_counter() - start


def measure_throughput(split: Split, hidden: int, batch_size: int, rounds: int) -> dict[str, Any]:
    """One training epoch (no validation) of ours and PyPOTS's BRITS-LSTM, alternating; median samples/s."""
    n = len(split.train)
    warm = Split(train=split.train.subset(np.arange(min(n, 2 * batch_size))), val=split.val, test=split.test,
                 standardizer=split.standardizer, protocol=split.protocol, fold=split.fold)
    BRITS(BRITSConfig(hidden_size=hidden, batch_size=batch_size, epochs=1)).fit(warm.train)  # warm-up, not timed
    pypots_brits(warm, hidden, batch_size, epochs=1, patience=1, seed=0, with_val=False)
    ours, theirs = [], []
    for r in range(rounds):
        model = BRITS(BRITSConfig(hidden_size=hidden, batch_size=batch_size, epochs=1, seed=r))
        start = time.perf_counter()
        model.fit(split.train)
        ours.append(n / (time.perf_counter() - start))
        _, seconds = pypots_brits(split, hidden, batch_size, epochs=1, patience=1, seed=r, with_val=False)
        theirs.append(n / seconds)
    result = {"ours_samples_per_second": statistics.median(ours),
              "pypots_samples_per_second": statistics.median(theirs),
              "ours_rounds": ours, "pypots_rounds": theirs, "hidden_size": hidden, "batch_size": batch_size,
              "n_train": n}
    result["ratio"] = result["ours_samples_per_second"] / result["pypots_samples_per_second"]
    return result


def run_pypots_row(split: Split, hidden: int, batch_size: int, epochs: int, patience: int, seed: int,
                   max_minutes: float | None, throughput: dict[str, Any] | None) -> dict[str, Any]:
    """PyPOTS BRITS with early stopping; its epoch count is capped so it fits the same time budget."""
    if max_minutes is not None:
        rate = throughput["pypots_samples_per_second"] if throughput else None
        if rate is None:
            _, seconds = pypots_brits(split, hidden, batch_size, epochs=1, patience=1, seed=seed, with_val=False)
            rate = len(split.train) / seconds
        per_epoch = len(split.train) / rate * 1.1  # + validation
        epochs = max(1, min(epochs, int(max_minutes * 60 / per_epoch)))
    model, fit_seconds = pypots_brits(split, hidden, batch_size, epochs, patience, seed)
    imputation = model.predict({"X": split.test.X})["imputation"]
    mask = split.test.indicating_mask
    target = split.test.X_ori
    return {"mae": masked_mae(imputation, target, mask), "mre": masked_mre(imputation, target, mask),
            "fit_seconds": fit_seconds, "samples_per_second": None, "epochs_budget": epochs,
            "note": "PyPOTS 1.5 BRITS (LSTM), epochs capped to the time budget"}


#: SAITS as PyPOTS 1.5's README applies it to PhysioNet 2012 set-a (its quick-start example); PyPOTS's
#: defaults otherwise (Adam lr 1e-3, batch 32). Trained to early stopping like every other row.
SAITS_PHYSIONET = {"n_layers": 2, "d_model": 256, "n_heads": 4, "d_k": 64, "d_v": 64, "d_ffn": 128, "dropout": 0.1}


def run_saits_row(split: Split, epochs: int, patience: int, seed: int, device: str | None) -> dict[str, Any]:
    """PyPOTS SAITS (:data:`SAITS_PHYSIONET`) on the same split, early stopping on the validation MAE."""
    _quiet_pypots()
    from pypots.imputation import SAITS
    from pypots.utils.random import set_random_seed

    set_random_seed(seed)
    model = SAITS(n_steps=split.train.n_steps, n_features=split.train.n_features, epochs=epochs, patience=patience,
                  device=None if device in (None, "auto") else device, saving_path=None,
                  model_saving_strategy=None, verbose=False, **SAITS_PHYSIONET)
    start = time.perf_counter()
    model.fit({"X": split.train.X}, {"X": split.val.X, "X_ori": split.val.X_ori})
    fit_seconds = time.perf_counter() - start
    imputation = model.predict({"X": split.test.X})["imputation"]
    mask, target = split.test.indicating_mask, split.test.X_ori
    return {"mae": masked_mae(imputation, target, mask), "mre": masked_mre(imputation, target, mask),
            "fit_seconds": fit_seconds, "samples_per_second": None, "epochs_budget": epochs,
            "best_epoch": int(model.best_epoch) if getattr(model, "best_epoch", -1) > 0 else None,
            "note": f"PyPOTS SAITS {json.dumps(SAITS_PHYSIONET)}, PyPOTS README config, early stopping"}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["weight_decay=6e-7", "combination_sigmoid=False"]`` -> config fields (Python literals, else text).

    Every name must be a field of :class:`~gapray.imputation.DEARIConfig` (which holds all of
    BRITS's too), so a typo stops the run before any training.
    """
    known = {f.name for f in dataclasses.fields(DEARIConfig)}
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE, e.g. --set weight_decay=6e-7")
        if key not in known:
            raise SystemExit(f"--set {item!r}: {key!r} is not a DEARIConfig field; known: {', '.join(sorted(known))}")
        try:
            overrides[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[key] = text.strip()
    return overrides


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    options: dict[str, Any] = {}
    if args.dataset == "physionet2012":
        options.update(progress=False, aggregate=args.aggregate)
    if args.dataset == "beijing-air":
        options["per_station"] = args.per_station
    if args.dataset == "traffic":
        options["drop_empty_windows"] = not args.keep_empty_windows
    dataset = load_dataset(args.dataset, args.data_dir, **options)
    batch_size = args.batch_size or BATCH_SIZES.get(args.dataset, 128)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = {m for m in models if depth_of(m) is None} - set(MODEL_NAMES) - set(EXTRA_MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: {MODEL_NAMES + EXTRA_MODELS}")
    model_seed = args.seed if args.model_seed is None else args.model_seed
    overrides = parse_overrides(args.set)
    bayes = {"unfreeze_every": args.unfreeze_every, "n_samples": args.n_samples, "kl_weight": args.kl_weight}
    record: dict[str, Any] = {
        "dataset": dataset.name, "shape": list(dataset.X.shape), "protocol": args.protocol,
        "mask_rate": args.mask_rate, "seed": args.seed, "model_seed": model_seed,
        "delta_convention": args.delta_convention, "epochs": args.epochs, "max_minutes": args.max_minutes,
        "batch_size": batch_size, "hidden_size": args.hidden_size, "threads": args.threads,
        "torch": torch.__version__, "python": stdlib_platform.python_version(), "cpu_count": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
        "patience": args.patience, "drop_empty_windows": options.get("drop_empty_windows"), "overrides": overrides,
        "aggregate": options.get("aggregate"),
        "bayesian": {**BAYESIAN_DEFAULTS, "kl_weight": BRITSConfig.kl_weight,
                     **{k: v for k, v in bayes.items() if v is not None}, "level": args.level},
        "rows": [], "throughput": None,
    }
    out = Path(args.out_dir) / f"imputation_{args.tag}.json"
    checkpoints = run_dir("imputation", args.tag)
    if (args.append or args.resume) and out.exists():
        record = _append_to(json.loads(out.read_text()), record)
    _announce_checkpoints(args, checkpoints)
    for fold in range(args.folds):
        split = imputation_split(dataset, protocol=args.protocol, rate=args.mask_rate, seed=args.seed, fold=fold)
        print(f"fold {fold}: train {len(split.train)} val {len(split.val)} test {len(split.test)}", flush=True)
        for name in models:
            if args.resume and any(r["model"] == name and r["fold"] == fold for r in record["rows"]):
                print(f"{name} fold {fold}: already in {out.name}, skipped (--resume)", flush=True)
                continue
            if name == "throughput":
                record["throughput"] = measure_throughput(split, args.hidden_size, batch_size, args.throughput_rounds)
                print(json.dumps({"throughput": record["throughput"]}), flush=True)
                continue
            row = model_row(name, split, fold, args, batch_size, checkpoints, record["throughput"], overrides)
            record["rows"].append(row)
            print(json.dumps(row, default=_json_default), flush=True)
            write_record(out, record)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_record(out, record)
    return record


def write_record(out: Path, record: dict[str, Any]) -> None:
    """The results file, replaced atomically (a kill while writing leaves the previous version)."""
    text = json.dumps(record, indent=1, default=_json_default).encode()
    atomic_write_bytes(out, lambda handle: handle.write(text))


def depth_of(name: str) -> int | None:
    """``deari-L5`` -> 5 (the Fig. 3(a) depth rows); None for other names."""
    if name.startswith("deari-L") and name[len("deari-L"):].isdigit():
        return int(name[len("deari-L"):])
    return None


def model_row(name: str, split: Split, fold: int, args: argparse.Namespace, batch_size: int, checkpoints: Path,
              throughput: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and score one model on one fold: a gapray model (checkpointed every epoch under
    ``checkpoints``, continued with ``--resume``; ``overrides`` are extra config fields),
    ``deari-L<n>`` (DEARI with n layers), ``pypots-brits`` or ``pypots-saits``."""
    start = time.perf_counter()
    model_seed = args.seed if args.model_seed is None else args.model_seed
    if name == "pypots-brits":
        row = run_pypots_row(split, args.hidden_size, batch_size, args.epochs, args.patience, model_seed,
                             args.max_minutes, throughput)
    elif name == "pypots-saits":
        row = run_saits_row(split, args.epochs, args.patience, model_seed, args.device)
    else:
        bayes = {"unfreeze_every": args.unfreeze_every, "n_samples": args.n_samples, "kl_weight": args.kl_weight}
        depth = depth_of(name)
        fields: dict[str, Any] = {
            "seed": model_seed, "epochs": args.epochs, "batch_size": batch_size, "hidden_size": args.hidden_size,
            "patience": args.patience, "max_seconds": None if args.max_minutes is None else 60.0 * args.max_minutes,
            "delta_convention": args.delta_convention, "device": args.device,
            **({"n_layers": depth} if depth else {}), **({"fast_attention": True} if args.fast else {}),
            **(bayes if name in BAYESIAN_MODEL_NAMES else {}), **(overrides or {})}
        try:
            model = build_model("deari" if depth else name, **fields)
        except TypeError as error:  # a --set field the model's config lacks (e.g. a DEARI field for BRITS)
            raise SystemExit(f"{name}: {error}; drop that --set for this model or run it separately") from None
        checkpoint = checkpoints / f"{name}-fold{fold}.pt"
        if args.continue_from and not checkpoint.exists() and hasattr(model, "state"):  # baselines keep none
            _copy_checkpoint(run_dir("imputation", args.continue_from) / checkpoint.name, checkpoint)
        if checkpoint.exists() and not args.resume:
            raise SystemExit(f"{checkpoint} holds an earlier run of {name} fold {fold} with tag {args.tag!r}: "
                             "pass --resume to continue it, or delete it to start again")
        try:
            row = fit_and_score(model, split, n_samples=args.n_samples, level=args.level,
                                checkpoint_path=checkpoint, show_progress=not args.no_progress)
        except CheckpointMismatch as error:  # --resume / --continue-from with other settings
            raise SystemExit(f"{name} fold {fold}: {error}") from None
        if name in BAYESIAN_MODEL_NAMES:
            row["config"] = {k: getattr(model.config, k) for k in ("unfreeze_every", "n_samples", "kl_weight")}
        if row.get("epochs"):
            row["stopped_by"] = "early stopping" if row["early_stopped"] else (
                "epoch limit" if row["epochs"] >= args.epochs else "time budget")
    row.update({"model": name, "fold": fold, "wall_seconds": time.perf_counter() - start,
                "paper_mae": PAPER_MAE.get(args.dataset.split("-per")[0], {}).get(name)})
    return row


def _copy_checkpoint(source: Path, target: Path) -> None:
    """``--continue-from``: this tag's run starts as a copy of another tag's checkpoint (which is
    left untouched), e.g. an early-stopped run continued to the epoch limit without patience."""
    if not source.exists():
        raise SystemExit(f"--continue-from: no checkpoint {source}; run that tag first or drop this model")
    with source.open("rb") as handle:
        data = handle.read()
    atomic_write_bytes(target, lambda out: out.write(data))
    print(f"{target.name}: continuing a copy of {source}", flush=True)


def _announce_checkpoints(args: argparse.Namespace, checkpoints: Path) -> None:
    """Say where the per-epoch checkpoints go and how to continue an interrupted run."""
    command = " ".join(a for a in sys.argv if a != "--resume")
    print(f"checkpoints after every epoch: {checkpoints}/<model>-fold<k>.pt\n"
          f"resume an interrupted run with: python {command} --resume", flush=True)


_SAME_SETTINGS = ("dataset", "protocol", "mask_rate", "seed", "model_seed", "delta_convention", "epochs",
                  "max_minutes", "batch_size", "hidden_size", "shape", "overrides", "aggregate")


def _setting_defaults(previous: dict[str, Any]) -> dict[str, Any]:
    """What a results file written before a setting existed ran with."""
    physionet = str(previous.get("dataset", "")).startswith("physionet")
    return {"overrides": {}, "aggregate": "last" if physionet else None}


def _append_to(previous: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``previous`` (an existing results file) continued by this run; its settings must match."""
    # files written before a setting existed ran with its default
    previous = {**_setting_defaults(previous), **previous}
    differ = [k for k in _SAME_SETTINGS if previous.get(k) != record.get(k)]
    if differ:
        raise SystemExit(f"--append: settings differ from the existing file: "
                         f"{ {k: (previous.get(k), record.get(k)) for k in differ} }")
    merged = {**record, "rows": previous["rows"], "throughput": previous.get("throughput"),
              "started": previous["started"]}
    merged["command"] = previous["command"] + " ; " + record["command"]
    for key in ("patience", "bayesian", "threads"):
        if key in previous and previous[key] != record[key]:
            merged[f"{key}_earlier_runs"] = previous[key]
    return merged


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# settings that make two results files' test folds the same entries and values, so their rows compare
_SAME_SPLIT = ("dataset", "protocol", "mask_rate", "seed", "delta_convention", "hidden_size", "aggregate")


def _deterministic_deari(record: dict[str, Any], fold: int,
                         others: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any] | None, str | None]:
    """The ``deari`` row a Bayesian row of ``record`` is compared with: the one of the same run,
    else (a Bayesian run of its own tag) that of another results file on the same split, model
    seed, patience and ``--set`` overrides, whose file name is returned with it."""
    row = next((r for r in record["rows"] if r["model"] == "deari" and r["fold"] == fold), None)
    if row is not None:
        return row, None
    mine = {**_setting_defaults(record), **record}
    for name, other in others:
        theirs = {**_setting_defaults(other), **other}  # files written before a setting existed
        if other is record or any(theirs.get(k) != mine.get(k)
                                  for k in (*_SAME_SPLIT, "model_seed", "patience", "overrides")):
            continue
        row = next((r for r in other["rows"] if r["model"] == "deari" and r["fold"] == fold), None)
        if row is not None:
            return row, name
    return None, None


def _bayesian_table(record: dict[str, Any], others: list[tuple[str, dict[str, Any]]] | None = None) -> list[str]:
    """Interval scores of the Bayesian rows and their cost against the deterministic DEARI of the
    same run or, failing that, of another results file on the same split (``others``: file name
    and record of every results file)."""
    rows = [r for r in record["rows"] if "picp" in r]
    if not rows:
        return []
    settings = record.get("bayesian", {})
    references = {row["fold"]: _deterministic_deari(record, row["fold"], others or []) for row in rows}
    sources = sorted({name for _, name in references.values() if name})
    against = "the `deari` row of this run" if not sources else \
        f"the `deari` row of {', '.join(f'`{name}`' for name in sources)} (same split and patience)"
    point = ("the posterior-mean pass (every weight at mu; std and intervals from "
             f"{rows[0].get('n_samples')} Monte Carlo passes)" if rows[0].get("point_estimate") == "posterior_mean"
             else f"the Monte Carlo mean of {rows[0].get('n_samples')} passes")
    lines = ["", f"Bayesian rows: MAE/MRE above are of {point}; "
             f"{100 * rows[0].get('level', 0.9):.0f} % Gaussian intervals (mean +- z std); calibrated = "
             "split-conformal scaling of the std on the validation set's removed entries, gap-cond. = one "
             "scaling per gap length (what `predict` returns); CRPS from the samples "
             "(raw) and Gaussian with the calibrated std; Spearman = rank correlation of the std with the "
             "absolute error (0: the std carries no information); frozen MAE = posterior means only, MC-mean "
             "MAE = mean of the weight samples; "
             f"settings {json.dumps(settings)}. MAE difference and costs are against {against} "
             "(MC s / DEARI inference s: Monte Carlo pass over test vs one deterministic DEARI pass).", "",
             "| model | fold | MAE | frozen MAE | MC-mean MAE | MAE - DEARI | PICP raw | width raw | CRPS raw | "
             "PICP cal. | width cal. | CRPS cal. | PICP gap-cond. | width gap-cond. | Spearman | conformal z | fit s | "
             "fit / DEARI | 1 pass s | MC s | MC / 1 pass | MC / DEARI pass |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        det, _ = references[row["fold"]]
        diff = None if det is None else row["mae"] - det["mae"]
        fit_ratio = None if det is None else row["fit_seconds"] / det["fit_seconds"]
        det_pass = None if det is None else det.get("predict_seconds")
        lines.append(
            f"| {row['model']} | {row['fold']} | {_fmt(row['mae'])} | {_fmt(row.get('frozen_mae'))} | "
            f"{_fmt(row.get('mc_mean_mae', None if row.get('point_estimate') == 'posterior_mean' else row['mae']))} | "
            f"{_fmt(diff) if diff is None else f'{diff:+.4f}'} | {_fmt(row['picp'], 3)} | {_fmt(row['width'])} | "
            f"{_fmt(row.get('crps'))} | {_fmt(row['calibrated_picp'], 3)} | {_fmt(row['calibrated_width'])} | "
            f"{_fmt(row['calibrated_crps'])} | {_fmt(row.get('mondrian_picp'), 3)} | "
            f"{_fmt(row.get('mondrian_width'))} | {_fmt(row.get('spearman'), 3)} | "
            f"{_fmt(row.get('conformal_multiplier'), 2)} | "
            f"{_fmt(row['fit_seconds'], 1)} | {_fmt(fit_ratio, 2)} | {_fmt(row['predict_seconds_1pass'], 2)} | "
            f"{_fmt(row['predict_seconds_mc'], 2)} | {_fmt(row['mc_cost_ratio'], 2)} | "
            f"{_fmt(None if not det_pass else row['predict_seconds_mc'] / det_pass, 2)} |")
    return lines


def write_report(out_dir: Path) -> Path:
    """Markdown table over every ``imputation_*.json`` in ``out_dir``."""
    lines = ["# Imputation benchmark", "",
             "Generated by `benchmarks/imputation.py` from the `imputation_*.json` files beside this one.",
             "MAE/MRE on the held-out entries of the test fold (standardised units); "
             "samples/s = training samples per second (median over epochs, validation excluded).", ""]
    records = [(path.name, json.loads(path.read_text())) for path in sorted(out_dir.glob("imputation_*.json"))]
    for name, record in records:
        lines += [f"## {record['dataset']} `{name}`", "",
                  f"Command: `{record['command']}`  ", f"Started {record['started']}, finished "
                  f"{record.get('finished', '(running or interrupted)')}; protocol {record['protocol']}, "
                  f"mask {record['mask_rate']}, split seed {record['seed']}, model seed "
                  f"{record.get('model_seed', record['seed'])}, deltas {record.get('delta_convention', 'brits')}, "
                  f"batch {record['batch_size']}, hidden "
                  f"{record['hidden_size']}, torch threads {record['threads']}, epoch limit {record['epochs']}, "
                  f"time budget {record['max_minutes']} min per model.", "",
                  "| model | fold | MAE | MRE | paper MAE | epochs run | best epoch | stopped by | fit s | samples/s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in record["rows"]:
            # PyPOTS rows know their budget, not the epochs they ran
            budget = f"<= {row['epochs_budget']}" if "epochs_budget" in row else None
            epochs = row.get("epochs", budget)
            lines.append(f"| {row['model']} | {row['fold']} | {_fmt(row['mae'])} | {_fmt(row['mre'])} | "
                         f"{_fmt(row.get('paper_mae'))} | {_fmt(epochs)} | {_fmt(row.get('best_epoch'))} | "
                         f"{row.get('stopped_by', row.get('note', '-'))} | {_fmt(row['fit_seconds'], 1)} | "
                         f"{_fmt(row.get('samples_per_second'), 1)} |")
        lines += _bayesian_table(record, records)
        if record.get("throughput"):
            t = record["throughput"]
            lines += ["", f"Training throughput, BRITS-LSTM hidden {t['hidden_size']}, batch {t['batch_size']}, "
                          f"{t['n_train']} samples, one epoch each, alternating: ours "
                          f"{t['ours_samples_per_second']:.1f} samples/s, PyPOTS 1.5 "
                          f"{t['pypots_samples_per_second']:.1f} samples/s, **ratio {t['ratio']:.2f}x**."]
        lines.append("")
    report = out_dir / "imputation.md"
    report.write_text("\n".join(lines))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="physionet2012", choices=("physionet2012", "beijing-air", "traffic"))
    parser.add_argument("--per-station", action="store_true", help="Beijing air: one sample per station")
    parser.add_argument("--aggregate", default="last", choices=("last", "mean"),
                        help="PhysioNet: several values in one hour -> the last (BRITS code, default) or their mean "
                             "(CSAI code; docs/deari_reference_audit.md #7)")
    parser.add_argument("--keep-empty-windows", action="store_true",
                        help="traffic: keep the 24-hour windows in which no hour has a row (the default drops them: "
                             "1,859 windows on the full file, the paper's 1,860)")
    parser.add_argument("--models", default="mean,locf,throughput,brits-lstm,brits-gru,pypots-brits,deari,deari-dml")
    parser.add_argument("--protocol", default="deari", choices=("deari", "pypots"))
    parser.add_argument("--mask-rate", type=float, default=0.1)
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="split and masking seed (and model seed by default)")
    parser.add_argument("--model-seed", type=int, default=None, help="model/training seed (default: --seed)")
    parser.add_argument("--delta-convention", default="brits", choices=("brits", "paper"))
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=None, help="training budget per model and fold")
    parser.add_argument("--hidden-size", type=int, default=108)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--throughput-rounds", type=int, default=2)
    parser.add_argument("--unfreeze-every", type=int, default=None,
                        help="Bayesian rows: sample weights every this many steps (default: paper's 100)")
    parser.add_argument("--n-samples", type=int, default=10, help="Bayesian rows: Monte Carlo passes (paper: 10)")
    parser.add_argument("--kl-weight", type=float, default=None, help="Bayesian rows: KL weight (default 1.0)")
    parser.add_argument("--level", type=float, default=0.9, help="Bayesian rows: nominal interval coverage")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run of this tag: rows already in its results file are kept and "
                             "skipped, a model with a checkpoint under $GAPRAY_CACHE_DIR/runs/imputation/<tag>/ "
                             "continues from its last finished epoch")
    parser.add_argument("--continue-from", default=None, metavar="TAG",
                        help="start each model of this run from a copy of its checkpoint under tag TAG (left "
                             "untouched), then continue as with --resume; e.g. an early-stopped run continued to "
                             "--epochs with a larger --patience under a new --tag")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log files)")
    parser.add_argument("--device", default=None, help="auto (default: CUDA when available), cpu or cuda")
    parser.add_argument("--fast", action="store_true",
                        help="DEARIConfig.fast_attention: bf16 encoders, 16-bit dropout masks (deari_speed.md)")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows of an existing results file with this tag (same settings) and add to it")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config field for every gapray model of the run (repeatable), e.g. --set "
                             "weight_decay=6e-7 --set combination_sigmoid=False; use its own --tag")
    parser.add_argument("--tag", default=None, help="results file suffix (default: dataset)")
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--report", action="store_true", help="only rebuild the markdown table")
    args = parser.parse_args()
    if not args.report:
        args.tag = args.tag or args.dataset
        if args.continue_from is not None:
            if args.continue_from == args.tag:
                raise SystemExit(f"--continue-from {args.continue_from!r} is this run's own --tag: give the "
                                 "continued run a new --tag (or use --resume to continue this one)")
            args.resume = True  # the copies are continued like an interrupted run of this tag
        run(args)
    print(write_report(Path(args.out_dir)))


if __name__ == "__main__":
    main()
