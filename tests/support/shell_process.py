"""A command line run by bash as pasted, in its own process group: its output (stdout and
stderr together) read line by line as it comes, waited for by pattern, and Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

WAIT = 30.0  # failure bound for an awaited line or exit, never a measured time


class ShellProcess:
    """`bash -c COMMAND` in `cwd` with `env`; `lines` is everything it printed so far."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            ["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def output(self) -> str:
        return "\n".join(self.lines)

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first line printed (before or from now on) that `pattern` matches."""
        regex, deadline = re.compile(pattern), time.monotonic() + timeout
        with self._changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    break
                self._changed.wait(left)
        raise AssertionError(f"`{self.command}` printed no line like {pattern!r}:\n{self.output()}")

    def first_lines(self, count: int, timeout: float = WAIT) -> list[str]:
        """Its first `count` lines (fewer if it ends before)."""
        with self._changed:
            self._changed.wait_for(lambda: self._ended or len(self.lines) >= count, timeout)
            return self.lines[:count]

    def finish(self, timeout: float = WAIT) -> int:
        """Its exit code once it ended on its own and all its output was read."""
        code = self.proc.wait(timeout)
        with self._changed:
            self._changed.wait_for(lambda: self._ended, timeout)
        return code

    def interrupt(self, timeout: float = WAIT) -> int:
        """Ctrl-C (SIGINT to its process group), then its exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.finish(timeout)

    def kill(self) -> None:
        """SIGKILL whatever is left of its process group (cleanup after a failure)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(WAIT)


def run(command: str, cwd: Path, env: dict[str, str], timeout: float = WAIT) -> tuple[int, str]:
    """Run a command that ends on its own; its exit code and output."""
    process = ShellProcess(command, cwd, env)
    try:
        return process.finish(timeout), process.output()
    except subprocess.TimeoutExpired:
        message = f"`{command}` still runs after {timeout} s:\n{process.output()}"
        raise AssertionError(message) from None
    finally:
        process.kill()
