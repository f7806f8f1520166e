"""Many hosts, one truth (issue 6): throughput on 1 and 2 hosts, and a host SIGKILL.

(a) Task throughput: 8 REST workers drain N pre-submitted no-op tasks, each loop
    claim -> PATCH running -> PATCH completed (bench/loadgen.py's driver), timed from
    the first claim to the last completion; every task must be completed exactly once.
    Configurations: 1 host on PostgreSQL, 2 hosts on PostgreSQL (workers alternate
    between the hosts; Socket.IO through the machine's Redis on a channel of its own),
    1 host on SQLite. Each run gets a fresh database. On PostgreSQL also commits per
    second (`xact_commit` of the bench's database in pg_stat_database, read before and
    after the drain once the statistics settled) and events per commit (rows appended to
    the events table over those commits).
(b) Host SIGKILL: 2 hosts on PostgreSQL with short settings (heartbeat timeout 2 s,
    sweep interval 0.5 s). Workers attached to host A over Socket.IO each hold a claimed
    task; A is SIGKILLed (no disconnect handler runs anywhere) and the time until B
    shows every task `pending` again (GET /tasks/{id} on B every 20 ms) is measured
    against the configured bound, heartbeat timeout + sweep interval.

    python -m bench.bench_multihost [--quick] [--tasks N] [--kills N]
    python -m bench.bench_multihost --label L [--runs 3] [--workerledger-python PY]

`--workerledger-python` serves (and migrates with) another installation of workerledger
(e.g. a venv of an older commit). `--label` measures only the PostgreSQL throughput (1 and
2 hosts alternating, `--runs` times) into bench/results/multihost_<label>.json, which
report.py shows next to the other labels.

Needs PostgreSQL (WORKERLEDGER_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/test,
a database the bench may create others from) and Redis (WORKERLEDGER_BENCH_REDIS, default
redis://127.0.0.1:6379/0; without it the 2-host run uses no Socket.IO manager, which REST
workers do not need). Writes bench/results/multihost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import socketio

from bench.loadgen import (
    Api,
    ServerProcess,
    Target,
    _check_exactly_once,
    _DrainState,
    _worker_loop,
    free_port,
    heartbeating,
    submit_many,
)
from bench.report import machine_description, results_dir

TOPIC = "multihost"
TOKEN = "bench-multihost-token"
TOKENS = json.dumps({TOKEN: {"user": "bench"}})
PG_ADMIN = os.environ.get("WORKERLEDGER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("WORKERLEDGER_BENCH_REDIS", "redis://127.0.0.1:6379/0")
WORKERS = 8
KILL_TIMEOUT, KILL_INTERVAL = 2.0, 0.5
EVENTS_TABLE = "workerledger_events"
PYTHON = [sys.executable]  # the workerledger installation served; --workerledger-python


# --- services ------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database prepared by `workerledger migrate`; dropped afterwards."""
    import psycopg

    name = f"wl_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        try:
            migrate(url)
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    done = subprocess.run(
        [PYTHON[0], "-m", "workerledger", "migrate", "--database-url", url],
        capture_output=True, text=True, timeout=120, check=False, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"workerledger migrate failed: {done.stderr.strip()}")


def redis_available() -> bool:
    try:
        import redis

        client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def hosts(
    database_url: str, count: int, workdir: Path, *, redis: str | None, **settings: float
) -> Iterator[list[ServerProcess]]:
    channel = f"wlbench-{uuid.uuid4().hex[:10]}"
    with contextlib.ExitStack() as stack:
        started: list[ServerProcess] = []
        for index in range(count):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
            env |= {
                "WORKERLEDGER_DATABASE_URL": database_url,
                "WORKERLEDGER_AUTH_TOKENS": TOKENS,
                "WORKERLEDGER_SOCKETIO_CHANNEL": channel,
            }
            if redis:
                env["WORKERLEDGER_SOCKETIO_MANAGER_URL"] = redis
            env |= {f"WORKERLEDGER_{key.upper()}": str(value) for key, value in settings.items()}
            command = [PYTHON[0], "-m", "workerledger", "serve", "--port", str(port)]
            server = ServerProcess(
                name=f"host-{index}",
                command=command,
                env=env,
                base_url=f"http://127.0.0.1:{port}",
                log_path=workdir / f"host-{index}.log",
                cwd=workdir,  # not the repository root: its workerledger/ would shadow PYTHON's
            )
            started.append(stack.enter_context(server))
        yield started


# --- (a) throughput ------------------------------------------------------------------------


class CommitProbe:
    """Committed transactions of one PostgreSQL database and rows in its events table.

    `xact_commit` is read from pg_stat_database over a connection to another database
    (PG_ADMIN's), so that reading adds nothing; backends report their counts with a
    delay (at most once a second; an idle backend's last second up to 10 s later,
    PostgreSQL's PGSTAT_IDLE_INTERVAL), so a reading waits until the count held still
    for `still` s (at most `settle` s: the hosts' own background work, liveness and
    sweeps, keeps committing; waiting for the 10 s changed the counts by under 4 % in a
    trial and adds that background instead). It counts every committed
    transaction of the database, read-only ones included. The events are counted over a
    connection of their own, opened before the commits are read at the start and after
    they are read at the end, so its own transaction falls outside the window."""

    def __init__(self, url: str, still: float = 2.0, settle: float = 6.0) -> None:
        self.url = url
        self.name = url.rsplit("/", 1)[1]
        self.still = still
        self.settle = settle
        self.waited: list[float] = []

    def commits(self) -> int:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            query = "SELECT xact_commit FROM pg_stat_database WHERE datname = %s"
            last, still_since, started = -1, time.monotonic(), time.monotonic()
            while True:
                admin.execute("SELECT pg_stat_clear_snapshot()")
                row = admin.execute(query, (self.name,)).fetchone()
                value = int(row[0]) if row else 0
                now = time.monotonic()
                if value != last:
                    last, still_since = value, now
                elif now - still_since >= self.still or now - started >= self.settle:
                    self.waited.append(round(now - started, 1))
                    return value
                time.sleep(0.25)

    def events(self) -> int:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()
            return int(row[0]) if row else 0

    def before(self) -> tuple[int, int]:
        events = self.events()
        return self.commits(), events

    def after(self) -> tuple[int, int]:
        commits = self.commits()
        return commits, self.events()


async def appended(urls: list[str]) -> tuple[float, float] | None:
    """(committed appends, events they carried) over the hosts, from their /metrics
    (`workerledger_store_append_events`); None when a host does not export it (older)."""
    appends = events = 0.0
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for url in urls:
            text = (await client.get(f"{url}/metrics")).text
            found = dict(re.findall(r"^workerledger_store_append_events_(count|sum) (\S+)$",
                                    text, re.MULTILINE))  # fmt: skip
            if len(found) < 2:
                return None
            appends += float(found["count"])
            events += float(found["sum"])
    return appends, events


async def drain(urls: list[str], tasks: int, probe: CommitProbe | None = None) -> dict[str, Any]:
    """8 workers, alternating over `urls`, drain `tasks` tasks; returns the figures."""
    targets = [Target(f"host-{i}", url, TOKEN) for i, url in enumerate(urls)]
    clients = [Api.client_for(targets[i % len(targets)]) for i in range(WORKERS + 1)]
    try:
        apis = [Api(targets[i % len(targets)], c) for i, c in enumerate(clients[:WORKERS])]
        ids = [await api.create_worker() for api in apis]
        room = f"bench{uuid.uuid4().hex[:8]}"
        async with heartbeating(Api(targets[0], clients[-1]), ids):
            job = ""
            for api, worker_id in zip(apis, ids, strict=True):
                job = await api.register_job(room, "Noop", worker_id)
            submitted = await submit_many(apis[0], room, job, tasks)
            state = _DrainState(total=tasks)
            deadline = time.monotonic() + 1800
            first = await asyncio.to_thread(probe.before) if probe else (0, 0)
            appends_before = await appended(urls)
            started = time.perf_counter()
            await asyncio.gather(
                *(_worker_loop(a, w, state, deadline) for a, w in zip(apis, ids, strict=True))
            )
            seconds = time.perf_counter() - started
            appends_after = await appended(urls)
            last = await asyncio.to_thread(probe.after) if probe else (0, 0)
            ok, detail = await _check_exactly_once(apis[0], room, job, submitted, state)
        if state.errors or not ok:
            raise RuntimeError(f"not exactly once: {state.errors[:3]} {detail}")
        figures: dict[str, Any] = {
            "tasks_per_second": tasks / seconds,
            "seconds": seconds,
            "claim_p50_ms": 1000 * statistics.median(state.latencies),
            "empty_claims": state.empty_claims,
        }
        if appends_before is not None and appends_after is not None:
            appends = appends_after[0] - appends_before[0]
            figures |= {
                "appends_per_second": appends / seconds,
                "events_per_append": (appends_after[1] - appends_before[1]) / appends
                if appends
                else float("nan"),
            }
        if probe:
            commits, events = last[0] - first[0], last[1] - first[1]
            figures |= {
                "commits": commits,
                "events": events,
                "commits_per_second": commits / seconds,
                "events_per_commit": events / commits if commits else float("nan"),
                "settle_seconds": probe.waited,
            }
        return figures
    finally:
        for client in clients:
            await client.aclose()


def throughput(kind: str, host_count: int, tasks: int, workdir: Path) -> dict[str, Any]:
    redis = REDIS if host_count > 1 and redis_available() else None
    database: contextlib.AbstractContextManager[str]
    if kind == "sqlite":
        database = contextlib.nullcontext(f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex}.db'}")
    else:
        database = postgres_database()
    with database as url, hosts(url, host_count, workdir, redis=redis) as servers:
        probe = CommitProbe(url) if kind == "postgres" else None
        result = asyncio.run(drain([s.base_url for s in servers], tasks, probe))
    result["redis"] = bool(redis)
    return result


# --- (b) host SIGKILL ----------------------------------------------------------------------


async def kill_host_once(a: ServerProcess, b: ServerProcess, holders: int) -> float:
    """Workers on A hold one task each; SIGKILL A; seconds until B shows all pending."""
    room = f"bench{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    http_a = httpx.AsyncClient(base_url=a.base_url + "/v1/joblib", headers=headers, timeout=30)
    http_b = httpx.AsyncClient(base_url=b.base_url + "/v1/joblib", headers=headers, timeout=30)
    sockets: list[Any] = []
    try:
        task_ids = []
        for index in range(holders):
            body = {"category": "modifiers", "name": f"Hold{index}", "schema": {}}
            job = (await http_a.put(f"/rooms/{room}/jobs", json=body)).json()
            sio = socketio.AsyncClient(reconnection=False)
            await sio.connect(a.base_url, auth={"token": TOKEN}, transports=["websocket"])
            sockets.append(sio)
            payload = {"job_name": job["full_name"], "worker_id": job["worker_id"]}
            ack = await sio.call("join_job_room", payload, timeout=10)
            if ack != {"ok": True}:
                raise RuntimeError(f"join_job_room: {ack}")
            submitted = await http_b.post(f"/rooms/{room}/tasks/{job['full_name']}", json={})
            task_ids.append(submitted.json()["id"])
            claim = await http_a.post("/tasks/claim", json={"worker_id": job["worker_id"]})
            if claim.json().get("task") is None:
                raise RuntimeError(f"claim failed: {claim.text}")
        await asyncio.sleep(2 * KILL_INTERVAL)  # A refreshes its workers' liveness
        assert a.process is not None
        killed = time.monotonic()
        os.killpg(a.process.pid, signal.SIGKILL)
        pending: set[str] = set(task_ids)
        while pending:
            if time.monotonic() - killed > 60:
                raise RuntimeError(f"{len(pending)} tasks still held 60 s after the kill")
            for task_id in list(pending):
                if (await http_b.get(f"/tasks/{task_id}")).json()["status"] == "pending":
                    pending.discard(task_id)
            await asyncio.sleep(0.02)
        return time.monotonic() - killed
    finally:
        for sio in sockets:
            with contextlib.suppress(Exception):
                await sio.disconnect()
        await http_a.aclose()
        await http_b.aclose()


def host_kill(kills: int, holders: int, workdir: Path) -> list[float]:
    settings = {
        "heartbeat_timeout_seconds": KILL_TIMEOUT,
        "sweep_interval_seconds": KILL_INTERVAL,
        "disconnect_grace_seconds": 5,
    }
    redis = REDIS if redis_available() else None
    runs = []
    for _ in range(kills):
        with (
            postgres_database() as url,
            hosts(url, 2, workdir, redis=redis, **settings) as (a, b),
        ):
            runs.append(asyncio.run(kill_host_once(a, b, holders)))
    return runs


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_multihost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="400 tasks, 1 kill")
    parser.add_argument("--tasks", type=int, help="tasks per throughput run (default 2000)")
    parser.add_argument("--kills", type=int, help="host kills (default 3)")
    parser.add_argument("--holders", type=int, default=4, help="workers on the killed host")
    parser.add_argument(
        "--workerledger-python",
        default=sys.executable,
        help="python of the workerledger installation to serve (default: this one)",
    )
    parser.add_argument(
        "--label", help="only PostgreSQL throughput, into bench/results/multihost_<label>.json"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (--label)")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    tasks = args.tasks or (400 if args.quick else 2000)
    kills = args.kills or (1 if args.quick else 3)
    PYTHON[0] = os.path.abspath(args.workerledger_python)  # a venv's python: no resolve()
    if args.label:
        return labelled(args.label, args.runs, tasks, argv)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wl-bench-multihost-") as tmp:
        workdir = Path(tmp)
        for label, kind, count in (
            ("1 host, PostgreSQL", "postgres", 1),
            ("2 hosts, PostgreSQL", "postgres", 2),
            ("1 host, SQLite", "sqlite", 1),
        ):
            result = throughput(kind, count, tasks, workdir)
            print(
                f"throughput {label}: {result['tasks_per_second']:.0f} tasks/s "
                f"({tasks} tasks in {result['seconds']:.1f} s)",
                flush=True,
            )
            note = (
                f"{WORKERS} REST workers, {tasks} no-op tasks, claim -> running -> completed, "
                f"each exactly once; claim p50 {result['claim_p50_ms']:.1f} ms"
            )
            if count > 1:
                note += "; workers alternate between the hosts"
                note += "; Socket.IO via Redis" if result["redis"] else "; no Redis"
            if "commits" in result:
                note += (
                    f"; {result['commits_per_second']:.0f} commits/s, "
                    f"{result['events_per_commit']:.2f} events per commit"
                )
            rows.append(
                {
                    "figure": f"task throughput, {label}, {WORKERS} workers",
                    "value": round(result["tasks_per_second"], 1),
                    "unit": "tasks/s",
                    "note": note,
                }
            )
        runs = host_kill(kills, args.holders, workdir)
    bound = KILL_TIMEOUT + KILL_INTERVAL
    print(f"host SIGKILL -> tasks released: {[round(r, 2) for r in runs]} s (bound {bound} s)")
    note = (
        f"2 hosts on PostgreSQL, {args.holders} Socket.IO workers on the killed host each "
        f"holding a task; heartbeat timeout {KILL_TIMEOUT} s + sweep interval {KILL_INTERVAL} s "
        f"= bound {bound} s; n={kills}"
    )
    rows.append(
        {
            "figure": "host SIGKILL -> its workers' tasks released (max)",
            "value": round(max(runs), 2),
            "unit": "s",
            "note": note,
            "runs": [round(r, 3) for r in runs],
        }
    )
    rows.append(
        {
            "figure": "host SIGKILL -> released, configured bound",
            "value": bound,
            "unit": "s",
            "note": "heartbeat timeout + sweep interval",
        }
    )
    command = "python -m bench.bench_multihost" + (" --quick" if args.quick else "")
    data = {
        "title": "Several hosts: task throughput on 1 and 2 hosts, host SIGKILL",
        "command": command,
        "machine": machine_description(),
        "rows": rows,
    }
    out = results_dir() / f"{TOPIC}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if max(runs) <= bound + 0.5 else 1


def labelled(label: str, runs: int, tasks: int, argv: list[str]) -> int:
    """PostgreSQL throughput on 1 and 2 hosts, alternating, with commits per second and
    events per commit, into multihost_<label>.json."""
    from bench.bench_pinned import describe_python, load_average, slug

    served = describe_python(PYTHON[0])
    configs = [("1 host", 1), ("2 hosts", 2)]
    results: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    loadavg = load_average()
    with tempfile.TemporaryDirectory(prefix="wl-bench-multihost-") as tmp:
        for run in range(1, runs + 1):
            for name, count in configs:
                result = throughput("postgres", count, tasks, Path(tmp))
                result["loadavg"] = load_average()
                results[count].append(result)
                print(
                    f"[multihost] {label} run {run} {name}: "
                    f"{result['tasks_per_second']:.0f} tasks/s, "
                    f"{result['commits_per_second']:.0f} commits/s, "
                    f"{result['events_per_commit']:.2f} events/commit "
                    f"({result['commits']} commits, {result['events']} events, "
                    f"{result['seconds']:.1f} s)"
                    + (
                        f"; {result['appends_per_second']:.0f} appends/s, "
                        f"{result['events_per_append']:.2f} events/append"
                        if "appends_per_second" in result
                        else ""
                    ),
                    flush=True,
                )
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for name, count in configs:
        found = results[count]
        entry: dict[str, Any] = {"hosts": count}
        for key, figure, unit in (
            ("tasks_per_second", "task throughput", "tasks/s"),
            ("commits_per_second", "commits per second", "commits/s"),
            ("events_per_commit", "events per commit", "events"),
            ("appends_per_second", "event-store appends per second (host /metrics)", "appends/s"),
            ("events_per_append", "events per append (host /metrics)", "events"),
        ):
            if not all(key in r for r in found):
                continue  # an older workerledger exports no append sizes
            values = [r[key] for r in found]
            median = statistics.median(values)
            entry[key] = {"median": median, "min": min(values), "max": max(values)}
            rows.append(
                {
                    "figure": f"{figure}, PostgreSQL, {name}, {WORKERS} workers",
                    "value": median,
                    "unit": unit,
                    "note": f"{tasks} tasks per run"
                    + ("; workers alternate between the hosts" if count > 1 else ""),
                    "runs": values,
                }
            )
        summary.append(entry)
    data = {
        "title": "PostgreSQL: task throughput, commits per second, events per commit",
        "label": label,
        "command": " ".join(["python -m bench.bench_multihost", *argv]),
        "machine": machine_description(),
        "workerledger": served,
        "tasks": tasks,
        "summary": summary,
        "rows": rows,
        "samples": {str(count): found for count, found in results.items()},
        "loadavg": {"start": loadavg, "end": load_average()},
        "notes": [
            f"workerledger: {served}. {WORKERS} REST workers drain {tasks} pre-submitted "
            "no-op tasks (claim -> running -> completed, each exactly once) through 1 host or "
            "2 hosts on one fresh PostgreSQL database per run; runs alternate 1 host, 2 hosts.",
            "Commits: `xact_commit` of the bench's database (pg_stat_database) read before and "
            "after the drain, each time once the count held still for 2 s (at most 6 s: the "
            "hosts' background work keeps committing); every committed "
            "transaction of the hosts counts, read-only ones included. Events per commit = "
            "rows added to the events table / those commits.",
            "Appends: the hosts' own count of committed event-store appends and the events "
            "they carried (`workerledger_store_append_events` on /metrics, summed over the "
            "hosts; from the commit that added it on): with group commit one append carries "
            "the events of several commands.",
        ],
    }
    out = results_dir() / f"{TOPIC}_{slug(label)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"[multihost] wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
