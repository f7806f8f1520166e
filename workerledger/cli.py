"""The `workerledger` command line. Each group of subcommands lives in its own module
and exposes `add_commands(subparsers)`; the chosen subcommand's `func(args)` returns
the exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = ("workerledger.cli_host", "workerledger.cli_demo", "workerledger.cli_store")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workerledger",
        description="Event-sourced worker lifecycle for job servers.",
        epilog="Settings come from WORKERLEDGER_* environment variables; see the README.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
