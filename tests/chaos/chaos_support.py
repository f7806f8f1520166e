"""Processes and fault schedules of the chaos tests (issues 10 and 18).

Hosts, Redis and the event-log reader come from tests/multihost/multihost_support.py;
the PostgreSQL and Redis access rules (skip, or fail under
WORKERLEDGER_REQUIRE_SERVICES=1) from tests/support/services.py. What is added here:

- `Hosts`: `workerledger serve` processes on fixed ports, so that a SIGKILLed host
  restarts where the SDK workers (which know one URL) reconnect;
- `Fleet`: SDK worker processes (tests/support/worker.py chaos), SIGKILLed and replaced
  at will;
- `Submitter`: submits numbered tasks with an `Idempotency-Key`, retries a lost or
  5xx answer with the same key, and logs every answer;
- `chaos_loop` / `drop_connections`: the seeded fault schedules;
- `drain`, `rebuild_check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from multihost.multihost_support import (
    PREFIX,
    TOKEN,
    HostProcess,
    RedisServer,
    free_port,
)
from support.services import PG_ADMIN_URL
from support.worker_process import WORKER_SCRIPT, WorkerProcess

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = {"completed", "failed", "cancelled"}


def env_number(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def chaos_seed(test: str) -> random.Random:
    """A seeded random source; the seed is printed so that a failing run can be replayed
    with WORKERLEDGER_CHAOS_SEED."""
    seed = int(os.environ.get("WORKERLEDGER_CHAOS_SEED") or random.randrange(2**32))
    print(f"\n{test}: chaos seed {seed} (WORKERLEDGER_CHAOS_SEED={seed} replays it)")
    return random.Random(seed)


def new_room() -> str:
    return f"chaos{uuid.uuid4().hex[:10]}"


def job_name(room: str) -> str:
    return f"{room}:modifiers:Chaos"


class Hosts:
    """Named hosts on fixed loopback ports; `kill_and_restart` is a SIGKILL + restart."""

    def __init__(self, env: dict[str, str], directory: Path, names: list[str]) -> None:
        self.env, self.directory = env, directory
        self.ports = {name: free_port() for name in names}
        self.running: dict[str, HostProcess] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def urls(self) -> list[str]:
        return [self.url(name) for name in self.ports]

    async def start(self, name: str) -> None:
        log = self.directory / f"host-{name}.log"
        host = HostProcess(name, self.env, log, port=self.ports[name])
        self.running[name] = await host.start()

    async def kill_and_restart(self, name: str) -> None:
        host = self.running.pop(name)
        await host.kill()
        await host.stop()  # closes its log file
        await self.start(name)

    async def stop(self) -> None:
        for host in self.running.values():
            await host.stop()


class Fleet:
    """`worker.py chaos` processes; each writes its own log file in `directory`."""

    def __init__(self, room: str, directory: Path) -> None:
        self.room, self.directory = room, directory
        self.live: list[tuple[WorkerProcess, str]] = []
        self.spawned = 0

    async def spawn(self, url: str) -> None:
        index, self.spawned = self.spawned, self.spawned + 1
        log = self.directory / f"worker-{index}.jsonl"
        with open(self.directory / f"worker-{index}.err", "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, WORKER_SCRIPT, "chaos", url, TOKEN, self.room, "--log", str(log),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=err, start_new_session=True,
            )  # fmt: skip
        self.live.append((WorkerProcess(proc), url))

    async def kill_one(self, rng: random.Random) -> str:
        """SIGKILL a random worker; returns the URL it was using."""
        worker, url = self.live.pop(rng.randrange(len(self.live)))
        await worker.kill()
        return url

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the SDK leaves gracefully), SIGKILL after `timeout`."""
        for worker, _ in self.live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.proc.pid, signal.SIGTERM)
        for worker, _ in self.live:
            try:
                await asyncio.wait_for(worker.proc.wait(), timeout)
            except TimeoutError:
                await worker.kill()
        self.live.clear()

    def lines(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("worker-*.jsonl")):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):  # a line cut by SIGKILL
                    out.append(json.loads(line))
        return out


class Submitter:
    """Submits tasks {"n": i} with `Idempotency-Key: <prefix>-<i>` round-robin over the
    hosts; a lost answer, a 5xx or a 404 (job briefly without workers) is retried with
    the same key on the next host. Every answer is kept in `records`."""

    def __init__(self, urls: list[str], room: str, per_second: float) -> None:
        self.urls, self.room, self.interval = urls, room, 1.0 / per_second
        self.prefix = uuid.uuid4().hex[:8]
        self.records: list[dict[str, Any]] = []
        self.accepted: dict[int, str] = {}  # n -> task id of its 202 answer
        self.given_up: list[int] = []

    async def run(self, stop: asyncio.Event, limit: int | None = None, lanes: int = 3) -> None:
        """Task n is due `n * interval` after the start; `lanes` submit concurrently, so a
        slow answer delays the load less."""
        started = time.monotonic()
        async with httpx.AsyncClient(headers=AUTH, timeout=5.0) as http:

            async def lane(n: int) -> None:
                while not stop.is_set() and (limit is None or n < limit):
                    due = started + n * self.interval - time.monotonic()
                    await asyncio.sleep(max(due, 0))  # the load's pace
                    await self.submit(http, n)
                    n += lanes

            await asyncio.gather(*(lane(n) for n in range(lanes)))

    async def submit(self, http: httpx.AsyncClient, n: int) -> None:
        key, path = f"{self.prefix}-{n}", f"{PREFIX}/rooms/{self.room}/tasks/{job_name(self.room)}"
        deadline = time.monotonic() + 60
        for attempt in range(10_000):
            record: dict[str, Any] = {"n": n, "key": key, "t0": time.time()}
            try:
                answer = await http.post(
                    self.urls[(n + attempt) % len(self.urls)] + path,
                    json={"payload": {"n": n}},
                    headers={"Idempotency-Key": key},
                )
            except httpx.HTTPError as error:
                record |= {"status": None, "error": type(error).__name__, "t1": time.time()}
            else:
                body = answer.json() if answer.content else {}
                record |= {"status": answer.status_code, "t1": time.time(), "body": body}
                record["replayed"] = answer.headers.get("idempotent-replayed")
            self.records.append(record)
            if record["status"] == 202:
                self.accepted[n] = record["body"]["id"]
                return
            if record["status"] not in (None, 404) and record["status"] < 500:
                break  # a refusal: retrying would not change it
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
        self.given_up.append(n)


async def room_statuses(urls: list[str], room: str) -> dict[str, str] | None:
    """{task id: status} of every task in the room, from the first host that answers."""
    async with httpx.AsyncClient(headers=AUTH, timeout=5.0) as http:
        for url in urls:
            out: dict[str, str] = {}
            try:
                while True:
                    page = await http.get(
                        f"{url}{PREFIX}/rooms/{room}/tasks",
                        params={"limit": 500, "offset": len(out)},
                    )
                    page.raise_for_status()
                    body = page.json()
                    out |= {item["id"]: item["status"] for item in body["items"]}
                    if not body["items"] or len(out) >= body["total"]:
                        return out
            except httpx.HTTPError:
                continue
    return None


async def drain(
    urls: list[str], room: str, expected: int, timeout: float
) -> tuple[dict[str, str], float]:
    """Poll the REST API until the room holds at least `expected` tasks, all terminal, or
    `timeout` passed; returns the last {task id: status} seen and when (time.time())."""
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while True:
        last = await room_statuses(urls, room) or last
        done = len(last) >= expected and all(s in TERMINAL for s in last.values())
        if done or time.monotonic() > deadline:
            return last, time.time()
        await asyncio.sleep(0.25)


async def chaos_loop(
    hosts: Hosts,
    fleet: Fleet,
    rng: random.Random,
    seconds: float,
    *,
    host_kills: int = 2,
    redis: RedisServer | None = None,
) -> Counter[str]:
    """Rounds 1-2.5 s apart for `seconds`: a round SIGKILLs a random worker (a replacement
    starts on its host), or runs the next scheduled fault once its time came: SIGKILL of
    a random host (restarted on its port at once) or a Redis restart after a 1 s outage.
    Scheduled faults still pending when the time is up run then, and a short run goes on
    until it has killed a worker too: every kind of fault happens at least once."""
    counts: Counter[str] = Counter()
    faults = [(rng.uniform(0.15, 0.85) * seconds, "host") for _ in range(host_kills)]
    if redis is not None:
        faults.append((rng.uniform(0.3, 0.7) * seconds, "redis"))
    faults.sort()
    started = time.monotonic()
    while time.monotonic() - started < seconds or faults or not counts["worker kills"]:
        await asyncio.sleep(rng.uniform(1.0, 2.5))  # the fault schedule's pace
        counts["rounds"] += 1
        if faults and time.monotonic() - started >= faults[0][0]:
            kind = faults.pop(0)[1]
            if kind == "host":
                await hosts.kill_and_restart(rng.choice(sorted(hosts.ports)))
                counts["host kills"] += 1
            else:
                assert redis is not None
                await redis.stop()
                await asyncio.sleep(1.0)  # the outage
                await redis.start()
                counts["redis restarts"] += 1
        else:
            await fleet.spawn(await fleet.kill_one(rng))
            counts["worker kills"] += 1
    return counts


async def drop_connections(
    database_url: str, times: int, seconds: float, rng: random.Random
) -> list[int]:
    """`times` rounds spread over `seconds`: terminate every backend of the test's own
    database (never another's). Returns how many backends each round terminated."""
    import psycopg

    database = database_url.rsplit("/", 1)[1]
    terminated: list[int] = []
    async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for _ in range(times):
            await asyncio.sleep(rng.uniform(0.5, 1.5) * seconds / times)  # the schedule
            cursor = await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            terminated.append(sum(1 for (done,) in await cursor.fetchall() if done))
    return terminated


async def rebuild_check(database_url: str) -> tuple[int, str]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workerledger", "rebuild", "--check",
         "--database-url", database_url],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    return done.returncode, (done.stdout + done.stderr)[-3000:]
