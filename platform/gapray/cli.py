"""The ``gapray`` command line: each area adds its own sub-commands.

Every module in :data:`COMMAND_MODULES` exposes ``add_commands(subparsers)``; the parsed
arguments carry a ``handler`` that returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "gapray.data.cli",
    "gapray.gil.cli",
    "gapray.sweep.cli",
    "gapray.imputation.cli",
    "gapray.imputation.table_cli",
    "gapray.imputation.uncertainty_cli",
    "gapray.imputation.runs_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gapray", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"gapray: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
