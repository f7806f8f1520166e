"""End-to-end fixtures: a real uvicorn on 127.0.0.1 port 0 inside the test's event loop,
real python-socketio clients, and worker subprocesses (tests/support/worker.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
import uvicorn
from support.worker_process import WorkerProcess
from workerledger.adapters.ledger import Emitter
from workerledger.host_fastapi.app import Host, build_host
from workerledger.host_fastapi.settings import Settings

PREFIX = "/v1/joblib"
TOKENS = {
    "tok-alice": {"user": "alice"},
    "tok-bob": {"user": "bob"},
    "tok-admin": {"user": "admin", "superuser": True},
}
WAIT = 15.0  # upper bound for an awaited event; a failure, never a measured time


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def serve(asgi: Any) -> AsyncIterator[str]:
    """Serve `asgi` on 127.0.0.1 port 0 in this loop; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        asgi, lifespan="on", log_level="warning", ws_ping_interval=None, ws_ping_timeout=None
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        raise RuntimeError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def database_url(directory: Path) -> str:
    """memory:// by default; WORKERLEDGER_HOST_TEST_STORE=sqlite runs the same tests on a
    fresh SQLite file per host."""
    if os.environ.get("WORKERLEDGER_HOST_TEST_STORE") == "sqlite":
        return f"sqlite:///{directory / f'host-{uuid.uuid4().hex[:8]}.db'}"
    return "memory://"


def settings(directory: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url(directory),
        "auth_tokens": TOKENS,
        "disconnect_grace_seconds": 0,
        "sweep_interval_seconds": 60,
        "heartbeat_timeout_seconds": 60,
    }
    return Settings(**(values | overrides))


@dataclass
class RunningHost:
    host: Host
    url: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def api(self, token: str | None = "tok-alice") -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # verify=False: plain http, and no TLS context to build (0.1-0.5 s per client)
        client = httpx.AsyncClient(
            base_url=self.url + PREFIX, headers=headers, timeout=WAIT, verify=False
        )
        self.clients.append(client)
        return client

    def rooms_of(self, sid: str) -> list[str]:
        """Every room of the default namespace the server still lists `sid` in."""
        rooms = self.host.sio.manager.rooms.get("/", {})
        return [room for room, members in rooms.items() if room is not None and sid in members]


@pytest.fixture
async def start_host(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningHost]]]:
    stack = contextlib.AsyncExitStack()

    async def start(*, emitters: Sequence[Emitter] = (), **overrides: Any) -> RunningHost:
        host = build_host(settings(tmp_path, **overrides), emitters=emitters)
        url = await stack.enter_async_context(serve(host.asgi))
        running = RunningHost(host, url)
        stack.push_async_callback(_close_clients, running)
        return running

    async with stack:
        yield start


async def _close_clients(running: RunningHost) -> None:
    for client in running.clients:
        await client.aclose()


class Watcher:
    """A Socket.IO client in `room:{room_id}` queueing every event it receives."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.seen: list[tuple[str, Any]] = []
        self.client.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        await self.queue.put((event, data))

    async def start(self, url: str, room_id: str, token: str = "tok-alice") -> Watcher:
        await self.client.connect(url, auth={"token": token}, transports=["websocket"])
        ack = await self.client.call("join_room", {"room_id": room_id}, timeout=WAIT)
        assert ack == {"ok": True}
        return self

    async def next(self, event: str, **match: Any) -> dict[str, Any]:
        """The first `event` received so far or later whose payload has the `match` items
        (emissions of one commit may arrive in any order, so history counts too)."""

        def fits(name: str, data: Any) -> bool:
            return name == event and all(data.get(k) == v for k, v in match.items())

        for name, data in self.seen:
            if fits(name, data):
                return dict(data)
        while True:
            name, data = await asyncio.wait_for(self.queue.get(), WAIT)
            self.seen.append((name, data))
            if fits(name, data):
                return dict(data)


@pytest.fixture
async def watchers() -> AsyncIterator[Callable[[str, str], Awaitable[Watcher]]]:
    made: list[Watcher] = []

    async def watch(url: str, room_id: str) -> Watcher:
        watcher = Watcher()
        made.append(watcher)
        return await watcher.start(url, room_id)

    yield watch
    for watcher in made:
        await watcher.client.disconnect()


@pytest.fixture
async def spawn_worker() -> AsyncIterator[Callable[..., Awaitable[WorkerProcess]]]:
    made: list[WorkerProcess] = []

    async def spawn(
        url: str, room: str, name: str, *flags: str, token: str = "tok-alice"
    ) -> WorkerProcess:
        worker = await WorkerProcess.spawn(url, room, name, *flags, token=token)
        made.append(worker)
        return worker

    yield spawn
    for worker in made:
        await worker.kill()
