"""Multi-host fixtures: a fresh PostgreSQL database prepared by one `workerledger
migrate`, a unique Socket.IO channel on the machine's Redis, and `workerledger serve`
processes sharing both. Everything is stopped, dropped and deleted afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from multihost_support import TOKEN, HostProcess, Watcher, host_env
from room_cluster import Cluster, Published
from support.services import migrated_postgres, redis_prefix
from support.worker_process import WorkerProcess

StartHost = Callable[..., Awaitable[HostProcess]]


@pytest.fixture
def database_url() -> Iterator[str]:
    with migrated_postgres() as url:
        yield url


@pytest.fixture
def redis_channel() -> Iterator[tuple[str, str]]:
    """(Redis URL, a channel of this test's own); keys with its prefix are deleted."""
    with redis_prefix() as (url, prefix):
        yield url, prefix


@pytest.fixture
async def start_host(
    database_url: str, redis_channel: tuple[str, str], tmp_path: Path
) -> AsyncIterator[StartHost]:
    """start_host(name, redis_url=..., sweep_interval_seconds=..., ...) -> HostProcess.

    Defaults: the shared Redis and this test's channel, grace 0, long timeouts."""
    started: list[HostProcess] = []
    redis_url, channel = redis_channel

    async def start(
        name: str, *, redis_url: str | None = redis_url, **settings: Any
    ) -> HostProcess:
        values = {
            "disconnect_grace_seconds": 0,
            "sweep_interval_seconds": 30,
            "heartbeat_timeout_seconds": 60,
        } | settings
        env = host_env(database_url, redis_url=redis_url, channel=channel, **values)
        host = HostProcess(name, env, tmp_path / f"host-{name}-{uuid.uuid4().hex[:6]}.log")
        started.append(host)
        return await host.start()

    try:
        yield start
    finally:
        for host in started:
            await host.stop()


@pytest.fixture
async def watch() -> AsyncIterator[Callable[[str, str], Awaitable[Watcher]]]:
    made: list[Watcher] = []

    async def start(url: str, room_id: str) -> Watcher:
        watcher = Watcher()
        made.append(watcher)
        return await watcher.start(url, room_id)

    yield start
    for watcher in made:
        await watcher.close()


@pytest.fixture
async def spawn_worker() -> AsyncIterator[Callable[..., Awaitable[WorkerProcess]]]:
    made: list[WorkerProcess] = []

    async def spawn(url: str, room: str, name: str) -> WorkerProcess:
        worker = await WorkerProcess.spawn(url, room, name, token=TOKEN)
        made.append(worker)
        return worker

    yield spawn
    for worker in made:
        await worker.kill()


@pytest.fixture
async def cluster(redis_channel: tuple[str, str]) -> AsyncIterator[Cluster]:
    url, channel = redis_channel
    async with contextlib.AsyncExitStack() as stack:
        yield Cluster(url, channel, stack)


@pytest.fixture
async def published(cluster: Cluster) -> AsyncIterator[Published]:
    watcher = await Published(cluster.redis, cluster.channel).start()
    yield watcher
    await watcher.close()
