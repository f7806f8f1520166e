"""Processes and clients of the multi-host tests (and bench/bench_multihost.py).

- `HostProcess`: `python -m workerledger serve --port 0` in its own session, settings
  from WORKERLEDGER_* variables; ready once it prints `workerledger listening on URL`.
- `RedisServer`: a private `redis-server` on a free loopback port (no persistence), so
  an outage can be simulated without touching the machine's shared Redis.
- `Watcher`: a python-socketio client in `room:{room_id}` queueing what it receives.
- `log_events(url)`: every event of the shared log (for exactly-once checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import socketio

PREFIX = "/v1/joblib"
TOKEN = "tok-alice"
TOKENS = {TOKEN: {"user": "alice"}, "tok-admin": {"user": "admin", "superuser": True}}
WAIT = 20.0  # failure bound for an awaited step, never a measured time
LISTENING = "workerledger listening on "


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HostProcess:
    """One `workerledger serve` process; `url` once `start()` returned."""

    def __init__(self, name: str, env: Mapping[str, str], log_path: Path, port: int = 0) -> None:
        self.name = name
        self.port = port  # 0: a free one; fixed to restart where clients reconnect
        self.env = dict(env)
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._log: Any = None

    async def start(self, timeout: float = 60.0) -> HostProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workerledger", "serve", "--port", str(self.port),
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=self._log,
            start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not self.url:
            remaining = deadline - time.monotonic()
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), max(remaining, 0.01))
            except TimeoutError:
                raise RuntimeError(f"host {self.name} did not listen: {self.log_tail()}") from None
            if not line:
                await self.proc.wait()
                raise RuntimeError(
                    f"host {self.name} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            text = line.decode().strip()
            if text.startswith(LISTENING):
                self.url = text.removeprefix(LISTENING)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def api(self, token: str = TOKEN) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url + PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=WAIT,
            verify=False,  # plain http: no TLS context to build
        )

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs (no disconnect handler, no checkpoint)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None


def host_env(
    database_url: str,
    *,
    redis_url: str | None,
    channel: str,
    **settings: float | str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
    env.update(
        {
            "WORKERLEDGER_DATABASE_URL": database_url,
            "WORKERLEDGER_AUTH_TOKENS": json.dumps(TOKENS),
            "WORKERLEDGER_SOCKETIO_CHANNEL": channel,
        }
    )
    if redis_url:
        env["WORKERLEDGER_SOCKETIO_MANAGER_URL"] = redis_url
        # a test's channel is a new deployment: its first joins wait out a lease
        env["WORKERLEDGER_SOCKETIO_MIRROR_LEASE_SECONDS"] = "0.5"
    for key, value in settings.items():
        env[f"WORKERLEDGER_{key.upper()}"] = str(value)
    return env


class RedisServer:
    """A private redis-server on a free loopback port; `stop()` kills it (the outage),
    `start()` brings it back on the same port."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisServer:
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            except OSError:
                await asyncio.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


class Watcher:
    """A Socket.IO client in `room:{room_id}`; every event received is queued."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.queue: asyncio.Queue[tuple[float, str, Any]] = asyncio.Queue()
        self.seen: list[tuple[float, str, Any]] = []
        self.client.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        await self.queue.put((time.monotonic(), event, data))

    async def start(self, url: str, room_id: str, token: str = TOKEN) -> Watcher:
        await self.client.connect(url, auth={"token": token}, transports=["websocket"])
        ack = await self.client.call("join_room", {"room_id": room_id}, timeout=WAIT)
        assert ack == {"ok": True}, ack
        return self

    async def next(
        self, event: str, timeout: float = WAIT, since: float = 0.0, **match: Any
    ) -> tuple[float, Any]:
        """(arrival time, payload) of the first `event` whose payload has the `match` items,
        received so far (at or after monotonic time `since`) or later."""

        def fits(at: float, name: str, data: Any) -> bool:
            return (
                at >= since
                and name == event
                and all(isinstance(data, dict) and data.get(k) == v for k, v in match.items())
            )

        for at, name, data in self.seen:
            if fits(at, name, data):
                return at, data
        deadline = time.monotonic() + timeout
        while True:
            at, name, data = await asyncio.wait_for(
                self.queue.get(), max(deadline - time.monotonic(), 0.001)
            )
            self.seen.append((at, name, data))
            if fits(at, name, data):
                return at, data

    def drain(self) -> list[tuple[float, str, Any]]:
        while not self.queue.empty():
            self.seen.append(self.queue.get_nowait())
        return self.seen

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.disconnect()


def log_events(database_url: str) -> list[Any]:
    """Every event in the shared log, in log order (the core's event models)."""
    from workerledger.adapters.store.url import open_store

    store = open_store(database_url)
    try:
        out: list[Any] = []
        position = 0
        while batch := store.read(position, 5000):
            out.extend(record.event for record in batch)
            position = batch[-1].position
        return out
    finally:
        store.close()


def count_by(events: list[Any], event_type: str, key: str) -> Counter[str]:
    """How many `event_type` events name each value of `key` (e.g. worker_id, task_id)."""
    return Counter(str(getattr(e, key)) for e in events if e.type == event_type)
