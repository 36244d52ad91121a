"""``gapray plot-uncertainty``: DEARI Figure 3c for one record and variable of a saved model.

Loads a checkpoint written by ``BRITS.save``/``DEARI.save``, rebuilds the evaluation split of a
dataset (``deari`` protocol: standardised with the training fold, ``--rate`` of each record's
observed values removed as ground truth), runs ``--n-samples`` Monte Carlo passes on one record
and writes the PNG (observations, removed ground truth, imputation, interval band). With
``--calibrate`` the band is scaled by split-conformal calibration on the validation split.
Prints one JSON line: the PNG path, the record, the variable and the record's interval coverage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


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
    parser.add_argument("--feature", default="0", help="variable name or index")
    parser.add_argument("--n-samples", type=int, default=10, help="Monte Carlo passes (Bayesian models)")
    parser.add_argument("--level", type=float, default=0.9, help="interval level")
    parser.add_argument("--calibrate", action="store_true", help="conformal scaling on the validation split")
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
    from gapray.imputation.plotting import plot_imputation_band
    from gapray.imputation.uncertainty import ConformalScaler, picp

    model = load_imputer(args.checkpoint)
    dataset = load_dataset(args.dataset, args.data_dir if args.dataset in FILE_LOADERS else None)
    split = imputation_split(dataset, protocol="deari", rate=args.rate, seed=args.seed, fold=args.fold)
    part = getattr(split, args.split)
    if not 0 <= args.record < len(part):
        raise ValueError(f"--record {args.record} out of range: the {args.split} split has {len(part)} records")
    record = part.subset([args.record])
    feature: int | str = int(args.feature) if args.feature.lstrip("-").isdigit() else args.feature
    n_samples = args.n_samples if model.config.bayesian else 0
    prediction = model.predict(record, n_samples=n_samples, level=args.level)
    if "std" not in prediction:  # a deterministic model: no band
        prediction["std"] = np.zeros_like(prediction["imputation"])
    if args.calibrate and model.config.bayesian:
        assert split.val.X_ori is not None  # the protocol removed ground truth from every split
        val = model.predict(split.val, n_samples=n_samples, level=args.level)
        scaler = ConformalScaler.fit(val["imputation"], val["std"], split.val.X_ori, split.val.indicating_mask,
                                     args.level)
        prediction["lower"], prediction["upper"] = scaler.interval(prediction["imputation"], prediction["std"])
    coverage = None
    if "lower" in prediction and record.indicating_mask.any():
        coverage = picp(prediction["lower"], prediction["upper"], record.X_ori, record.indicating_mask)
    if not args.standardised:
        inverse = split.standardizer.inverse
        record = record.replace(X=inverse(record.X), X_ori=None if record.X_ori is None else inverse(record.X_ori))
        prediction = {k: inverse(v) for k, v in prediction.items() if k in ("imputation", "lower", "upper")}
    path = plot_imputation_band(record, prediction, 0, feature, args.out,
                                title=f"{dataset.name} {args.split} record {args.record}")
    print(json.dumps({"png": str(path), "record": args.record, "feature": args.feature,
                      "record_coverage": coverage, "n_samples": n_samples, "level": args.level}))
    return 0
