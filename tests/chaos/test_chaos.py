"""Bounded chaos runs (issue 10, item 5; issue 18, item 5): real hosts, real SDK worker
processes, real faults, then one accounting of the log against what every client saw.

1. SQLite, one host: random SIGKILLs of workers and of the host (restarted on its file
   and port) while tasks keep flowing.
2. PostgreSQL, two hosts sharing a database and a private Redis: worker and host
   SIGKILLs and one Redis restart.
3. PostgreSQL, two hosts under load: the hosts' database connections terminated
   (`pg_terminate_backend` on this test's own database only) again and again.

Each prints one `CHAOS ...` line (visible with -s) and asserts a clean account (see
chaos_accounting.py) and `workerledger rebuild --check` exit 0. Every kind of fault
happens at least once per run. Durations, load and the seed are bounded for the suite
and overridable: WORKERLEDGER_CHAOS_SECONDS (runs 1-2), WORKERLEDGER_CHAOS_SEED,
WORKERLEDGER_CHAOS_DROP_TASKS / _DROPS (run 3); `make soak` runs them long.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from chaos_accounting import Figures, account
from chaos_support import (
    AUTH,
    Fleet,
    Hosts,
    Submitter,
    chaos_loop,
    chaos_seed,
    drain,
    drop_connections,
    env_number,
    job_name,
    new_room,
    rebuild_check,
)
from multihost.multihost_support import PREFIX, RedisServer, host_env, log_events
from support.services import migrated_postgres, redis_prefix, unavailable

SECONDS = env_number("WORKERLEDGER_CHAOS_SECONDS", 10)  # fault schedule of runs 1-2
HOST_KILLS = max(1, round(SECONDS / 12.5))  # each costs a host restart
DROP_TASKS = int(env_number("WORKERLEDGER_CHAOS_DROP_TASKS", 120))  # run 3, at 12 per second
DROPS = int(env_number("WORKERLEDGER_CHAOS_DROPS", 6))
DROP_RATE = 12.0
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(200 + 2 * max(SECONDS, DROP_TASKS / DROP_RATE)),
]

HOST_SETTINGS = {
    "disconnect_grace_seconds": 0,  # a killed worker's tasks are released at once
    "sweep_interval_seconds": 0.5,
    "heartbeat_timeout_seconds": 10,  # longer than a host restart
    "claim_timeout_seconds": 3,  # claim leases (issue 18); ignored by hosts before it
}
WORKERS = 4
DRAIN_SECONDS = 40.0
Load = Callable[[Hosts, Fleet], Awaitable[dict[str, int]]]


async def run(
    name: str,
    tmp_path: Path,
    database_url: str,
    env: dict[str, str],
    load: Load,
    *,
    hosts: list[str],
    per_second: float,
    limit: int | None = None,
) -> Figures:
    """Start the hosts and WORKERS workers (spread over the hosts), submit while `load`
    runs (up to `limit` tasks, or until `load` returns), drain, stop, account."""
    group, fleet = Hosts(env, tmp_path, hosts), Fleet(new_room(), tmp_path)
    room = fleet.room
    submitter = Submitter(group.urls, room, per_second)
    seconds, mark = {}, time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        seconds[name], mark = time.monotonic() - mark, time.monotonic()

    try:
        await asyncio.gather(*(group.start(h) for h in hosts))
        for index in range(WORKERS):
            await fleet.spawn(group.url(hosts[index % len(hosts)]))
        await job_listed(group.urls[0], room)
        phase("start")
        stop = asyncio.Event()
        submitting = asyncio.create_task(submitter.run(stop, limit))
        faults = await load(group, fleet)
        if limit is None:
            stop.set()
        await submitting
        phase("load")
        statuses, drained_at = await drain(group.urls, room, len(submitter.accepted), DRAIN_SECONDS)
        phase("drain")
    finally:
        await fleet.stop()
        await group.stop()
    phase("stop")
    code, output = await rebuild_check(database_url)
    phase("rebuild")
    events = await asyncio.to_thread(log_events, database_url)
    figures = account(
        name,
        room,
        events,
        fleet.lines(),
        submitter.records,
        submitter.accepted,
        statuses,
        drained_at,
    )
    figures.faults, figures.seconds = faults, seconds
    print(figures.line())
    assert not submitter.given_up, f"submissions never accepted: {submitter.given_up[:10]}"
    assert code == 0, output
    assert figures.tasks > 0 and figures.clean, "\n".join(figures.problems)
    return figures


async def job_listed(url: str, room: str, timeout: float = 60.0) -> None:
    """Until the first worker has registered the job (submissions need it)."""
    async with httpx.AsyncClient(headers=AUTH, timeout=5.0) as http:
        for _ in range(int(timeout / 0.1)):
            answer = await http.get(f"{url}{PREFIX}/rooms/{room}/jobs/{job_name(room)}")
            if answer.status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_name(room)} was never registered")


async def test_sqlite_host_and_workers_killed_at_random(tmp_path: Path) -> None:
    rng = chaos_seed("sqlite")
    database_url = f"sqlite:///{tmp_path / 'chaos.db'}"
    env = host_env(database_url, redis_url=None, channel="unused", **HOST_SETTINGS)

    async def load(hosts: Hosts, fleet: Fleet) -> dict[str, int]:
        return dict(await chaos_loop(hosts, fleet, rng, SECONDS, host_kills=HOST_KILLS))

    await run("sqlite", tmp_path, database_url, env, load, hosts=["A"], per_second=10)


@pytest.mark.services
async def test_postgres_two_hosts_with_host_worker_and_redis_kills(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        unavailable("redis-server", FileNotFoundError("redis-server is not on PATH"))
    rng = chaos_seed("postgres")
    redis = await RedisServer().start()
    try:
        with migrated_postgres() as database_url:
            env = host_env(database_url, redis_url=redis.url, channel=new_room(), **HOST_SETTINGS)

            async def load(hosts: Hosts, fleet: Fleet) -> dict[str, int]:
                counts = await chaos_loop(
                    hosts, fleet, rng, SECONDS, host_kills=HOST_KILLS, redis=redis
                )
                return dict(counts)

            await run(
                "postgres", tmp_path, database_url, env, load, hosts=["A", "B"], per_second=10
            )
    finally:
        await redis.stop()


@pytest.mark.services
async def test_postgres_connections_dropped_under_load(tmp_path: Path) -> None:
    rng = chaos_seed("connection drops")
    tasks, drops, per_second = DROP_TASKS, DROPS, DROP_RATE
    terminated: list[int] = []
    with migrated_postgres() as database_url, redis_prefix() as (redis_url, channel):
        env = host_env(database_url, redis_url=redis_url, channel=channel, **HOST_SETTINGS)

        async def load(hosts: Hosts, fleet: Fleet) -> dict[str, int]:
            terminated.extend(await drop_connections(database_url, drops, tasks / per_second, rng))
            return {"rounds": len(terminated), "backends terminated": sum(terminated)}

        await run(
            "connection drops", tmp_path, database_url, env, load,
            hosts=["A", "B"], per_second=per_second, limit=tasks,
        )  # fmt: skip
    assert sum(terminated) > 0, "no database connection was ever dropped: the run tested nothing"
