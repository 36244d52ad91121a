"""``gapray sweep``: the DEARI sweep from the installed command line (same flags as tuning/deari_sweep.py)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gapray.sweep.resources import ResourceError
from gapray.sweep.settings import SweepSettings, add_settings_arguments


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "sweep", help="Ray Tune sweep of DEARI (depth, DML margin, Bayesian schedule) tracked in MLflow",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_settings_arguments(parser)
    parser.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from gapray.sweep.runner import SweepError, format_report, run_sweep

    names = {f.name for f in dataclasses.fields(SweepSettings)}
    settings = SweepSettings(**{k: v for k, v in vars(args).items() if k in names})
    try:
        outcome = run_sweep(settings)
    except (SweepError, ResourceError) as error:
        print(f"gapray sweep: error: {error}", file=sys.stderr)
        return 2
    print(format_report(outcome))
    return 0
