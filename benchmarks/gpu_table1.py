"""DEARI Table 1 (PhysioNet, 10 %) and Fig. 3(a) on one GPU: every row, all 5 folds, in concurrent processes.

How to run this script::

    # on a CUDA machine: mean, LOCF, BRITS-LSTM/GRU, DEARI-3, DEARI-3 DML, Bayesian DEARI, SAITS,
    # DEARI depths 1, 2, 5, 10 (depth 3 is the `deari` row) x 5 folds, 16 processes on one device
    python benchmarks/gpu_table1.py --data-dir ../shared/data --out-dir OUT
    # the same wiring on a CPU in a minute: 96 records, tiny models, 1 epoch, 2 folds, 2 processes
    python benchmarks/gpu_table1.py --data-dir ../shared/data --dry-run --out-dir /tmp/table1

The lent H200 (16 CPU cores, 15 minutes of device time in all) is driven by
``benchmarks/gpu/run_table1.sh``, which carries the data and the wheels the device image lacks;
its header has the exact device call. Each (model, fold) job runs in its own process
(``spawn``), with one torch thread, on the one CUDA device; the longest jobs start first. The
parent writes ``imputation_<tag>.json`` in ``benchmarks/imputation.py``'s format after every
finished job (atomically) and ``imputation.md`` at the end, so the rows sit beside the CPU runs.
A per-job wall-clock budget (``--max-minutes``) keeps the whole run inside the lease; a row cut
by it says "time budget" in the table. Checkpoints go to ``$GAPRAY_CACHE_DIR`` as in every run.

Results to expect: DEARI Table 1, PhysioNet 10 %: BRITS-LSTM 0.2629, BRITS-GRU 0.2564, DEARI
0.2412, DEARI-DML 0.2408, Bayesian DEARI 0.2415; 10-layer DEARI 0.23745 (Fig. 3(a) ablation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
TABLE1_MODELS = ("deari-L10", "bayes-deari", "deari-dml", "deari-L5", "deari", "deari-L2", "pypots-saits",
                 "brits-lstm", "brits-gru", "deari-L1", "locf", "mean")  # longest first
DRY_RUN_MODELS = ("deari-L2", "bayes-deari", "deari-dml", "deari", "brits-gru", "locf", "mean")


def job_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """The ``benchmarks/imputation.py`` settings every job runs under."""
    return argparse.Namespace(
        dataset="physionet2012", data_dir=args.data_dir, protocol="deari", mask_rate=0.1, seed=0, model_seed=None,
        delta_convention="brits", epochs=args.epochs, patience=args.patience, max_minutes=args.max_minutes,
        hidden_size=args.hidden_size, unfreeze_every=None, n_samples=10, kl_weight=None, level=0.9,
        device=args.device, fast=args.fast, resume=args.resume, no_progress=True, tag=args.tag,
        per_station=False, continue_from=None)


def run_job(name: str, fold: int, settings: argparse.Namespace, n_records: int | None,
            overrides: dict[str, Any]) -> dict[str, Any]:
    """One (model, fold) row in a worker process (one torch thread)."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(BENCHMARKS))
    import imputation as bench  # benchmarks/imputation.py
    from gapray.data.loaders import load_dataset
    from gapray.data.splits import imputation_split
    from gapray.imputation.checkpoint import run_dir

    dataset = load_dataset("physionet2012", settings.data_dir, progress=False)
    if n_records is not None:
        dataset = dataset.subset(range(n_records))
    split = imputation_split(dataset, protocol="deari", rate=settings.mask_rate, seed=settings.seed, fold=fold)
    return bench.model_row(name, split, fold, settings, bench.BATCH_SIZES["physionet2012"],
                           run_dir("imputation", settings.tag), overrides=overrides)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(BENCHMARKS))
    import torch

    import imputation as bench
    from gapray.data.loaders import load_dataset

    settings = job_arguments(args)
    models = [m for m in (args.models.split(",") if args.models else
                          (DRY_RUN_MODELS if args.dry_run else TABLE1_MODELS)) if m]
    n_records = 96 if args.dry_run else None
    overrides = {"hidden_size": 8, "attention_feedforward": 16, "n_samples": 2} if args.dry_run else {}
    dataset = load_dataset("physionet2012", args.data_dir, progress=False)  # fills the parse cache once
    record: dict[str, Any] = {
        "dataset": dataset.name, "shape": list(dataset.X.shape), "protocol": "deari", "mask_rate": 0.1, "seed": 0,
        "model_seed": 0, "delta_convention": "brits", "epochs": args.epochs, "max_minutes": args.max_minutes,
        "batch_size": bench.BATCH_SIZES["physionet2012"], "hidden_size": args.hidden_size, "threads": 1,
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "patience": args.patience,
        "device": args.device, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "workers": args.workers, "dry_run": args.dry_run, "fast": args.fast,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
        "rows": [], "throughput": None,
    }
    out = Path(args.out_dir) / f"imputation_{args.tag}.json"
    jobs = [(name, fold) for name in models for fold in range(args.folds)]
    print(f"{len(jobs)} jobs ({len(models)} models x {args.folds} folds) on {args.workers} processes, "
          f"device {args.device}", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        pending: dict[Future[dict[str, Any]], tuple[str, int]] = {
            pool.submit(run_job, name, fold, settings, n_records, overrides): (name, fold) for name, fold in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                name, fold = pending.pop(future)
                try:
                    row = future.result()
                except Exception as error:  # a failed job is reported, the others go on
                    row = {"model": name, "fold": fold, "mae": None, "mre": None, "fit_seconds": None,
                           "error": f"{type(error).__name__}: {error}"}
                record["rows"].append(row)
                print(f"[{time.perf_counter() - started:6.0f} s] {name} fold {fold}: MAE {row.get('mae')} "
                      f"epochs {row.get('epochs')} {row.get('error', '')}", flush=True)
                bench.write_record(out, record)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record["rows"].sort(key=lambda r: (models.index(r["model"]), r["fold"]))
    bench.write_record(out, record)
    print(bench.write_report(Path(args.out_dir)), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default=None, help="comma-separated (default: every Table 1 / Fig. 3(a) row)")
    parser.add_argument("--folds", type=int, default=None, help="folds 0..N-1 (default 5; dry run 2)")
    parser.add_argument("--workers", type=int, default=None, help="processes on the device (default 16; dry run 2)")
    parser.add_argument("--device", default=None, help="default cuda (dry run: cpu)")
    parser.add_argument("--epochs", type=int, default=None, help="epoch cap (default 300; dry run 1)")
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--max-minutes", type=float, default=None, help="training budget per job")
    parser.add_argument("--hidden-size", type=int, default=108)
    parser.add_argument("--fast", action="store_true", help="DEARIConfig.fast_attention for the DEARI rows")
    parser.add_argument("--resume", action="store_true", help="continue jobs from their checkpoints")
    parser.add_argument("--dry-run", action="store_true", help="tiny CPU run of the same wiring")
    parser.add_argument("--tag", default=None, help="results file suffix (default gpu_table1, dry run dry_table1)")
    parser.add_argument("--out-dir", default=str(BENCHMARKS / "results"))
    args = parser.parse_args()
    dry = args.dry_run
    args.folds = args.folds or (2 if dry else 5)
    args.workers = args.workers or (2 if dry else 16)
    args.device = args.device or ("cpu" if dry else "cuda")
    args.epochs = args.epochs or (1 if dry else 300)
    args.tag = args.tag or ("dry_table1" if dry else "gpu_table1")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here: run with --dry-run (CPU, tiny) or --device cpu")
    print(json.dumps({"models": args.models, "folds": args.folds, "workers": args.workers, "device": args.device}))
    run(args)


if __name__ == "__main__":
    main()
