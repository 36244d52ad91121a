"""``gapray data describe NAME`` and ``gapray data fetch NAME``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gapray.data.dataset import TimeSeriesDataset
from gapray.data.download import REMOTE_FILES, DataUnavailableError, DownloadError, fetch, missing_data_message
from gapray.data.loaders import DATASET_NAMES, FILE_LOADERS, load_dataset
from gapray.data.loaders._common import download_dir


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``data describe`` and ``data fetch`` under ``gapray``."""
    data = subparsers.add_parser("data", help="describe or download the datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    describe = commands.add_parser("describe", help="print shape, missing rate and label balance")
    describe.add_argument("name", choices=DATASET_NAMES)
    describe.add_argument("--data-dir", default=None,
                          help="data root or the dataset's folder (default: $GAPRAY_DATA_DIR, ../shared/data, "
                               "then the download cache)")
    describe.add_argument("--subset", default="a", help="PhysioNet 2012 set: a, b or c")
    describe.add_argument("--per-station", action="store_true", help="Beijing air: one sample per station")
    describe.add_argument("--download", action="store_true", help="fetch from the publisher when not on disk")
    describe.add_argument("--json", action="store_true", help="print only the JSON summary")
    describe.set_defaults(handler=_describe)

    fetch_parser = commands.add_parser("fetch", help="download from the publisher (SHA-256 verified, resumable)")
    fetch_parser.add_argument("name", choices=tuple(REMOTE_FILES))
    fetch_parser.add_argument("--dest", default=None, help="target folder (default: the download cache)")
    fetch_parser.add_argument("--subset", default=None, help="PhysioNet 2012: fetch only set a, b or c")
    fetch_parser.add_argument("--files", nargs="+", default=None, help="file names to fetch instead of the defaults")
    fetch_parser.add_argument("--base-url", default=None,
                              help="mirror laid out like shared/data (default: $GAPRAY_DATA_URL or the publisher)")
    fetch_parser.set_defaults(handler=_fetch)


def _loader_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.name == "physionet2012":
        return {"subset": args.subset}
    if args.name == "beijing-air":
        return {"per_station": args.per_station}
    return {}


def summary_text(summary: dict[str, Any]) -> str:
    """The readable lines printed above the JSON."""
    lines = [
        f"dataset       {summary['name']}",
        f"shape         {summary['n_samples']} samples x {summary['n_steps']} steps x {summary['n_features']} features",
        f"missing rate  {100 * summary['missing_rate']:.2f} %",
    ]
    labels = summary.get("labels")
    if labels:
        total = sum(labels.values())
        balance = ", ".join(f"{k}: {v} ({100 * v / total:.2f} %)" for k, v in labels.items())
        lines.append(f"labels        {balance}")
    return "\n".join(lines)


def describe_dataset(dataset: TimeSeriesDataset) -> dict[str, Any]:
    """:meth:`TimeSeriesDataset.describe` with the labels' keys as strings (JSON-ready)."""
    summary: dict[str, Any] = dataset.describe()
    labels = summary.get("labels")
    if isinstance(labels, dict):
        summary["labels"] = {str(k): v for k, v in labels.items()}
    return summary


def _describe(args: argparse.Namespace) -> int:
    root = args.data_dir if args.name in FILE_LOADERS else None
    kwargs = _loader_options(args)
    if args.name in FILE_LOADERS:
        kwargs["download"] = args.download
    dataset = load_dataset(args.name, root, **kwargs)
    summary = describe_dataset(dataset)
    if not args.json:
        print(summary_text(summary))
    print(json.dumps(summary, sort_keys=True))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    files = args.files
    if args.subset is not None:
        if args.name != "physionet2012":
            raise ValueError("--subset applies to physionet2012 only")
        files = [f"set-{args.subset}.tar.gz", f"Outcomes-{args.subset}.txt"]
    try:
        paths = fetch(args.name, dest=args.dest, files=files, base_url=args.base_url)
    except DownloadError as error:
        folder = Path(args.dest) if args.dest else download_dir(args.name)
        raise DataUnavailableError(missing_data_message(args.name, folder, str(error), files)) from error
    for path in paths:
        print(path)
    return 0
