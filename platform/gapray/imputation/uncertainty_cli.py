"""``gapray plot-uncertainty``: DEARI Figure 3c for one record and variable of a saved model.

Loads a checkpoint written by ``BRITS.save``/``DEARI.save``, rebuilds the evaluation split of a
dataset (``deari`` protocol: standardised with the training fold, ``--rate`` of each record's
observed values removed as ground truth), runs ``--n-samples`` Monte Carlo passes on one record
and writes the PNG (observations, removed ground truth, imputation, interval band). The band is
the model's calibrated interval (split-conformal on validation, fitted during ``fit`` and saved
with the model); a checkpoint without a calibration, or ``--calibrate``, gets one fitted on this
split's training and validation records; ``--raw`` draws the uncalibrated ``mean +- z std``.
``--feature auto`` (the default) picks a variable of the record with a long gap.
Prints one JSON line: the PNG path, the record, the variable, the record's interval coverage and
mean width, and which calibration was used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``gapray plot-uncertainty``."""
    parser = subparsers.add_parser(
        "plot-uncertainty", help="plot one imputed variable with its Monte Carlo interval (DEARI Fig. 3c)",
        description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a model saved with BRITS.save / DEARI.save")
    parser.add_argument("--dataset", required=True, help="dataset name (gapray data describe lists them)")
    parser.add_argument("--data-dir", default=None, help="data root or the dataset's folder")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--rate", type=float, default=0.1, help="fraction of observed values removed")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", type=int, default=0, help="record index within the split")
    parser.add_argument("--feature", default="auto", help="variable name or index, or auto (a long gap)")
    parser.add_argument("--n-samples", type=int, default=10, help="Monte Carlo passes (Bayesian models)")
    parser.add_argument("--level", type=float, default=0.9, help="interval level")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the calibration on this split's validation records even if the model has one")
    parser.add_argument("--raw", action="store_true", help="draw the uncalibrated interval mean +- z std")
    parser.add_argument("--standardised", action="store_true", help="plot z-scores instead of original units")
    parser.add_argument("--out", required=True, help="PNG path to write")
    parser.set_defaults(handler=_plot)


def load_imputer(path: str | Path) -> Any:
    """The BRITS or DEARI model saved at ``path``."""
    import torch

    from gapray.imputation import BRITS, DEARI

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    name = payload.get("model") if isinstance(payload, dict) else None
    classes = {"BRITS": BRITS, "DEARI": DEARI}
    if name not in classes:
        raise ValueError(f"{path} is not a gapray BRITS/DEARI checkpoint (model field {name!r})")
    return classes[name].load(path, device="cpu")


def _plot(args: argparse.Namespace) -> int:
    from gapray.data.loaders import FILE_LOADERS, load_dataset
    from gapray.data.splits import imputation_split
    from gapray.imputation.plotting import band_feature, plot_imputation_band
    from gapray.imputation.uncertainty import mean_width, picp

    model = load_imputer(args.checkpoint)
    dataset = load_dataset(args.dataset, args.data_dir if args.dataset in FILE_LOADERS else None)
    split = imputation_split(dataset, protocol="deari", rate=args.rate, seed=args.seed, fold=args.fold)
    part = getattr(split, args.split)
    if not 0 <= args.record < len(part):
        raise ValueError(f"--record {args.record} out of range: the {args.split} split has {len(part)} records")
    record = part.subset([args.record])
    feature: int | str
    if args.feature == "auto":
        feature = band_feature(record, 0)
    else:
        feature = int(args.feature) if args.feature.lstrip("-").isdigit() else args.feature
    bayesian = bool(model.config.bayesian)
    n_samples = args.n_samples if bayesian else 0
    calibration = "none"
    if bayesian and not args.raw:
        saved = model.uncertainty is not None and model.uncertainty.calibration is not None
        if args.calibrate or not saved:
            model.fit_uncertainty(split.train, split.val)
        calibration = "fitted now" if args.calibrate or not saved else "saved"
    elif bayesian:
        calibration = "raw"
    if bayesian:
        prediction = model.predict(record, n_samples=n_samples, level=args.level, calibrated=not args.raw)
    else:
        prediction = model.predict(record, n_samples=0)
    coverage = width = None
    if "lower" in prediction and record.indicating_mask.any():
        coverage = picp(prediction["lower"], prediction["upper"], record.X_ori, record.indicating_mask)
        width = mean_width(prediction["lower"], prediction["upper"], record.indicating_mask)
    if not args.standardised:
        inverse = split.standardizer.inverse
        record = record.replace(X=inverse(record.X), X_ori=None if record.X_ori is None else inverse(record.X_ori))
        prediction = {k: inverse(v) for k, v in prediction.items() if k in ("imputation", "lower", "upper")}
    path = plot_imputation_band(record, prediction, 0, feature, args.out,
                                title=f"{dataset.name} {args.split} record {args.record}",
                                label=f"{args.level:.0%} interval ({calibration})")
    print(json.dumps({"png": str(path), "record": args.record, "feature": args.feature if args.feature != "auto"
                      else record.feature_names[int(feature)], "record_coverage": coverage, "record_width": width,
                      "calibration": calibration, "n_samples": n_samples, "level": args.level}))
    return 0
