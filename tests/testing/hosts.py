"""Host processes for the workerledger.testing suite: `workerledger serve` (one, or two
sharing PostgreSQL + Redis) and the README's embedded host under uvicorn's factory mode,
each on a free loopback port, stopped with SIGTERM (SIGKILL if it hangs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from hypothesis import settings

from workerledger.testing import Token, machine_settings

ALICE = Token("tok-alice", "alice")
BOB = Token("tok-bob", "bob")
ADMIN = Token("tok-admin", "admin", superuser=True)
TOKENS = {t.token: {"user": t.user, "superuser": t.superuser} for t in (ALICE, BOB, ADMIN)}
START_WAIT = 60.0  # a failure bound for a host to listen, never a measured time
SOAK = os.environ.get("WORKERLEDGER_TESTING_SOAK") == "1"  # `make soak`: the long runs


def budget(examples: int, steps: int) -> settings:
    """`examples` runs of at most `steps` steps; under `make soak` (WORKERLEDGER_TESTING_SOAK=1)
    ten times the runs, twice the steps, and shrinking. CI reports a failure as found:
    shrinking replays it many times against the host."""
    if SOAK:
        return machine_settings(examples * 10, steps * 2, shrink=True)
    return machine_settings(examples, steps, shrink=False)


class Server:
    """A host process whose stdout/stderr lines are read until one names its URL."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: Path, pattern: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        self._found = threading.Event()
        self.url = ""
        self._pattern = re.compile(pattern)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._found.wait(START_WAIT) or not self.url:
            self.stop()
            raise RuntimeError(f"{argv} did not listen:\n" + "\n".join(self.lines[-30:]))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if not self.url and (found := self._pattern.search(line)):
                self.url = found.group(1)
                self._found.set()
        self._found.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def output(self) -> str:
        return "\n".join(self.lines)


def clean_env(**settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in settings.items():
        env[f"WORKERLEDGER_{key.upper()}"] = str(value)
    return env


@contextmanager
def serve(directory: Path, **settings: object) -> Iterator[Server]:
    """`workerledger serve --port 0` with the test tokens and `settings`."""
    env = clean_env(auth_tokens=json.dumps(TOKENS), **settings)
    argv = [sys.executable, "-m", "workerledger", "serve", "--port", "0"]
    server = Server(argv, env, directory, r"workerledger listening on (http://\S+)")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serve_module(directory: Path, source: str, module: str) -> Iterator[Server]:
    """`source` saved as `<module>.py` and served by uvicorn's factory mode
    (`<module>:build_app`), as the README serves its host app."""
    (directory / f"{module}.py").write_text(source)
    argv = [sys.executable, "-m", "uvicorn", f"{module}:build_app", "--factory", "--port", "0"]
    server = Server(argv, clean_env(), directory, r"Uvicorn running on (http://\S+)")
    try:
        yield server
    finally:
        server.stop()
