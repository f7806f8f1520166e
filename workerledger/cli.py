"""The `workerledger` command line. Each group of subcommands lives in its own module
and exposes `add_commands(subparsers)`; the chosen subcommand's `func(args)` returns
the exit code. Every command follows cli_errors.py's rule for start-up errors (one or
two lines naming the setting or flag, exit 2; `--debug` adds the traceback)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from workerledger import __version__

from .cli_errors import run_command

COMMAND_MODULES = (
    "workerledger.cli_host",
    "workerledger.cli_demo",
    "workerledger.cli_state",
    "workerledger.cli_store",
    "workerledger.cli_operator",
)
VERSION = f"workerledger {__version__} (zndraw-joblib 0.1.7 protocol)"
DEBUG_HELP = "on an error, print the traceback too"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workerledger",
        description="Event-sourced worker lifecycle for job servers: run the host, look at "
        "its workers, tasks and jobs, replay histories, manage the database.",
        epilog="Settings come from WORKERLEDGER_* environment variables (README, 'Running "
        "the host'); `workerledger COMMAND --help` describes each command. A mistake in a "
        "setting or flag stops a command with one line naming it (exit code 2).",
    )
    parser.add_argument("-V", "--version", action="version", version=VERSION)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.add_commands(subparsers)
    for command in subparsers.choices.values():  # `workerledger serve --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=DEBUG_HELP)  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments in (["--version"], ["-V"]):  # answered without importing the commands
        print(VERSION)
        return 0
    args = build_parser().parse_args(arguments)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
