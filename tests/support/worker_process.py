"""The test side of the scripted worker (tests/support/worker.py): spawn it, read its
JSON lines, write its stdin commands, SIGKILL it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
WAIT = 20.0  # failure bound for an awaited line, never a measured time


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ready: dict[str, Any] = {}
        self.lines: list[dict[str, Any]] = []  # read while looking for another event

    @classmethod
    async def spawn(cls, url: str, room: str, name: str, *flags: str, token: str) -> WorkerProcess:
        """A `protocol` worker for job ROOM:modifiers:NAME, once it said "ready"."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, WORKER_SCRIPT, "protocol", url, token, room, name, *flags,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        worker = cls(proc)
        try:
            worker.ready = await worker.expect("ready")
        except BaseException:
            await worker.kill()
            raise
        assert worker.ready["ack"] == {"ok": True}, worker.ready
        return worker

    @property
    def worker_id(self) -> str:
        return str(self.ready["worker_id"])

    @property
    def sid(self) -> str:
        return str(self.ready["sid"])

    async def expect(self, event: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """The first line of `event` with the `match` items not returned yet, read before
        (and kept) or now."""

        def fits(data: dict[str, Any]) -> bool:
            return data["event"] == event and all(data.get(k) == v for k, v in match.items())

        for data in self.lines:
            if fits(data):
                self.lines.remove(data)
                return data
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(
                self.proc.stdout.readline(), max(deadline - time.monotonic(), 0.001)
            )
            if not line:
                raise AssertionError(f"worker exited before {event!r}")
            data: dict[str, Any] = json.loads(line)
            if fits(data):
                return data
            self.lines.append(data)

    async def send(self, *words: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(map(str, words)) + "\n").encode())
        await self.proc.stdin.drain()

    async def claim(self) -> dict[str, Any]:
        """`claim`, and the task it got (there must be one)."""
        await self.send("claim")
        claimed = await self.expect("claimed")
        assert claimed["task"] is not None, claimed
        task: dict[str, Any] = claimed["task"]
        return task

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
