"""``gapray fit --data TABLE`` and ``gapray impute --model-uri URI --data TABLE --out FILE``: a user's own table.

``fit`` reads a long or wide table (:mod:`gapray.data.table`), fits an imputer in original units
(:func:`gapray.imputation.preprocessing.fit_in_original_units`: the scaler is fitted on the
training series and travels with the model), saves ``DIR/model.pt``, logs the run and the model to
MLflow and, with ``--register NAME``, registers it with the alias ``champion``.

``impute`` loads a model (``models:/NAME@ALIAS``, ``runs:/...``, or a saved ``model.pt``), reads
the table with the model's format, and writes the filled table in the input's layout with
``value``, ``imputed``, ``std``, ``lower`` and ``upper`` through a temporary file and a rename.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from gapray.imputation.experiment import MODEL_NAMES, build_model

TABLE_MODEL_NAMES = tuple(name for name in MODEL_NAMES if name not in ("mean", "locf"))
"""Models ``gapray fit`` trains (the recurrent rows of DEARI Table 1)."""
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def _tracking_uri(value: str | None) -> str:
    from gapray.tracking.store import configure_mlflow_environment, resolve_tracking_uri

    configure_mlflow_environment()
    return resolve_tracking_uri(value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """How to read the table (the fields of :class:`gapray.data.TableFormat`)."""
    group = parser.add_argument_group("table (see gapray.data.table)")
    group.add_argument("--data", required=True, help="the table: .csv (optionally compressed) or .parquet")
    group.add_argument("--id-col", required=True, help="column naming each series (a stay, a sensor)")
    group.add_argument("--time-col", required=True, help="column with timestamps (or numbers, with a numeric --freq)")
    group.add_argument("--freq", required=True,
                       help="bin width: a duration such as 1h, 15min, 1D for timestamps; a number for numeric times")
    group.add_argument("--window", type=int, default=48, help="bins per sample (default: 48)")
    group.add_argument("--aggregate", choices=("last", "mean"), default="last",
                       help="several values of a variable in one bin: the last one (BRITS) or their mean")
    group.add_argument("--windows", choices=("split", "first"), default="split",
                       help="split every series into windows, or keep only its first window")
    group.add_argument("--origin", default=None,
                       help="start of every series (a number or a timestamp); default: each series' first row")
    group.add_argument("--variable-col", default="variable", help="long layout: the variable-name column")
    group.add_argument("--value-col", default="value", help="long layout: the value column")
    group.add_argument("--categorical", default="", help="comma-separated categorical variables (one-hot encoded)")
    group.add_argument("--variables", default=None,
                       help="comma-separated numeric variables to use, in order (default: all)")
    group.add_argument("--time-format", default="ISO8601", help="pandas.to_datetime format of time strings")


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(v.strip() for v in text.split(",") if v.strip())


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``gapray fit``."""
    parser = subparsers.add_parser(
        "fit", help="fit an imputer on your own table (long or wide), log it to MLflow, optionally register it",
        description="Fit an imputer on a table in original units; the model carries its scaler, variable names "
                    "and table format, so `gapray impute --model-uri ... --data ...` fills new tables.")
    add_table_arguments(parser)
    parser.add_argument("--model", default="deari", choices=TABLE_MODEL_NAMES,
                        help="deari (the paper's DEARI-3, default); deari-fast: DEARI-3 with bf16 encoders and "
                             "a 256-wide feed-forward, 3.7x faster per epoch on a CPU with the same 20-epoch "
                             "accuracy (benchmarks/results/deari_speed.md); brits-*, bayes-* for uncertainty")
    parser.add_argument("--out", required=True, help="folder for model.pt and fit.json")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: 300)")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    parser.add_argument("--hidden-size", type=int, default=None, help="RNN hidden units (default: 108)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: 10)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of the series held out for validation")
    parser.add_argument("--mask-rate", type=float, default=0.1,
                        help="share of each validation sample's observed values held out to score early stopping")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    parser.add_argument("--tracking-uri", default=None,
                        help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI})")
    parser.add_argument("--experiment", default="gapray-fit", help="MLflow experiment")
    parser.add_argument("--register", default=None, metavar="NAME",
                        help="register the model under NAME with --alias (default: log it without registering)")
    parser.add_argument("--alias", default="champion", help="registry alias set with --register")
    parser.set_defaults(handler=fit_command)


def add_impute_arguments(parser: argparse.ArgumentParser) -> None:
    """The table flags of ``gapray impute`` (the benchmark flags stay in :mod:`gapray.imputation.cli`)."""
    group = parser.add_argument_group("your own table (instead of --model/--dataset)")
    group.add_argument("--model-uri", default=None,
                       help="models:/NAME@ALIAS, runs:/RUN/model, a logged model's folder, or a model.pt of gapray fit")
    group.add_argument("--data", default=None, help="the table to fill: .csv or .parquet, long or wide")
    group.add_argument("--out", default=None, help="where the filled table goes (.csv or .parquet)")
    group.add_argument("--level", type=float, default=0.9, help="interval level of lower/upper")
    group.add_argument("--layout", choices=("long", "wide"), default=None, help="output layout (default: the input's)")
    group.add_argument("--tracking-uri", default=None,
                       help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI})")


def fit_command(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from gapray.data.table import TableFormat, read_table
    from gapray.imputation.preprocessing import fit_in_original_units
    from gapray.tracking.registry import log_and_register_model
    from gapray.tracking.runs import log_metrics, log_params
    from gapray.tracking.store import ensure_experiment

    fmt = TableFormat(id_col=args.id_col, time_col=args.time_col, freq=args.freq, window=args.window,
                      aggregate=args.aggregate, windows=args.windows, origin=_number_or_text(args.origin),
                      variable_col=args.variable_col, value_col=args.value_col,
                      categorical=_split(args.categorical) or (), variables=_split(args.variables),
                      time_format=args.time_format)
    dataset = read_table(args.data, table_format=fmt)
    overrides = {"epochs": args.epochs, "hidden_size": args.hidden_size, "batch_size": args.batch_size or 64,
                 "patience": args.patience, "seed": args.seed, "device": args.device,
                 "max_seconds": None if args.max_minutes is None else 60.0 * args.max_minutes}
    model = build_model(args.model, **overrides)
    tracking_uri = _tracking_uri(args.tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    run_id = client.create_run(ensure_experiment(tracking_uri, args.experiment),
                               run_name=f"fit-{args.model}-{Path(args.data).stem}").info.run_id
    try:
        resolved = dataset.extra["table"]
        assert isinstance(resolved, TableFormat)
        log_params(client, run_id, {"model": args.model, "data": str(Path(args.data).resolve()),
                                    "config": dataclasses.asdict(model.config),
                                    "table": {k: v for k, v in resolved.to_dict().items()
                                              if k not in ("variables", "categories")},
                                    "n_samples": len(dataset), "n_variables": dataset.n_features})

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            log_metrics(client, run_id, metrics, step=epoch)

        result = fit_in_original_units(model, dataset, val_fraction=args.val_fraction, mask_rate=args.mask_rate,
                                       seed=args.seed, epoch_callback=on_epoch)
        out = Path(args.out)
        model_path = model.save(out / "model.pt")
        summary = {"val_mae": result.val_mae, "n_train": len(result.train_index), "n_val": len(result.val_index),
                   "epochs": len(result.history)}
        log_metrics(client, run_id, {"final/val_mae_original_units": result.val_mae}, step=len(result.history))
        model_class = f"{type(model).__module__}:{type(model).__name__}"
        logged = log_and_register_model(tracking_uri, run_id, model_path, args.register, model_class=model_class,
                                        alias=args.alias)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    report = {**summary, "model_path": str(model_path), "run_id": run_id, "tracking_uri": tracking_uri,
              "model_uri": logged.model_uri, "registered": bool(args.register),
              "variables": list(dataset.feature_names)}
    from gapray.imputation.cli import _clean

    text = json.dumps(_clean(report))
    (out / "fit.json").write_text(text + "\n")
    print(text)
    return 0


def _number_or_text(value: str | None) -> str | float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def load_imputer(model_uri: str, tracking_uri: str | None = None) -> Any:
    """The gapray imputer behind ``model_uri``: an MLflow model URI or folder, or a saved ``model.pt``."""
    path = Path(model_uri)
    if path.is_file():
        return load_saved_imputer(path)
    from gapray.tracking.registry import load_logged_imputer

    return load_logged_imputer(model_uri, _tracking_uri(tracking_uri))


def load_saved_imputer(path: Path) -> Any:
    """A ``model.pt`` written by ``RecurrentImputer.save`` (BRITS or DEARI, read from the file)."""
    import torch

    from gapray.imputation import BRITS, DEARI

    payload = torch.load(path, map_location="cpu", weights_only=True)
    classes = {"BRITS": BRITS, "DEARI": DEARI}
    name = payload.get("model") if isinstance(payload, dict) else None
    if name not in classes:
        raise ValueError(f"{path} is not a gapray BRITS or DEARI model file")
    return classes[name].load(path)


def impute_table_command(args: argparse.Namespace) -> int:
    """``gapray impute --model-uri URI --data TABLE --out FILE``."""
    from gapray.data.table import is_csv_path, load_frame
    from gapray.data.table_output import write_table
    from gapray.imputation.preprocessing import impute_frame

    missing = [flag for flag, value in (("--model-uri", args.model_uri), ("--data", args.data), ("--out", args.out))
               if value is None]
    if missing:
        raise ValueError(f"gapray impute on a table needs --model-uri, --data and --out (missing {', '.join(missing)})")
    model = load_imputer(args.model_uri, args.tracking_uri)
    frame = load_frame(args.data)
    filled = impute_frame(model, frame, source=str(args.data), is_csv=is_csv_path(Path(args.data)),
                          layout=args.layout, level=args.level)
    path = write_table(filled, args.out)
    imputed = filled["imputed"] if "imputed" in filled else filled.filter(like="_imputed")
    print(json.dumps({"out": str(path), "rows": len(filled), "imputed": int(imputed.to_numpy().sum())}))
    print(f"wrote {path}: open it with pandas.read_{'csv' if is_csv_path(path) else 'parquet'}('{path}')",
          file=sys.stderr)
    return 0

