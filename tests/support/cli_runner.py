"""The `workerledger` command line for tests: in this process or as the real entry point."""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout


def cli(*args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
    """`workerledger ARGS`: its exit code, stdout and stderr.

    By default the command line runs in this process (`workerledger.cli.main`, what
    `python -m workerledger` calls, without the 2-4 s of a fresh interpreter importing
    the package); `process=True` runs the real entry point as a subprocess, which each
    test file keeps for one case of every exit code it checks."""
    command = [sys.executable, "-m", "workerledger", *args]
    if process:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    from workerledger.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())
