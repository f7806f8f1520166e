"""Store benchmarks: lifecycle commands/s per backend, 10,000-event worker loads with and
without snapshots, rebuild of 100,000 events, host start from the read-model tables.

    python bench/bench_store.py [--quick] [--out bench/results/store.json]

PostgreSQL figures use a fresh database on WORKERLEDGER_TEST_PG (dropped afterwards)
and are left out with a note when PostgreSQL is not reachable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workerledger.adapters.ports import EventStore, StoredEvent
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.read_models import ReadModelTables, fold_log, open_service
from workerledger.adapters.store.recorder import RecorderEventStore
from workerledger.adapters.store.snapshots import fold_stream
from workerledger.adapters.store.url import migrate, open_store
from workerledger.core import (
    SYSTEM,
    Actor,
    ClaimTask,
    DisconnectWorker,
    Event,
    JoinJobRoom,
    RegisterJob,
    RoomJoined,
    RoomLeft,
    SubmitTask,
    TaskStatus,
    UpdateTask,
)

PG_ADMIN_URL = os.environ.get("WORKERLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2025, 6, 1, tzinfo=UTC)
ALICE = Actor(user="alice")
JOB = "lab:modifiers:relax"
Row = dict[str, Any]


def lifecycle(service: LedgerService, n: int) -> int:
    """One worker's life in 9 commands (register .. lost); returns the command count."""
    now = T0 + timedelta(seconds=n)
    w, sid = f"w{n}", f"s{n}"
    service.execute(
        RegisterJob(now=now, actor=ALICE, room_id="lab", category="modifiers", name="relax",
                    worker_id=w, create_worker=True)
    )  # fmt: skip
    service.execute(JoinJobRoom(now=now, actor=ALICE, worker_id=w, sid=sid, job_name=JOB))
    for suffix in "ab":
        service.execute(
            SubmitTask(now=now, actor=ALICE, task_id=f"t{n}{suffix}", job_name=JOB, room_id="lab")
        )
    service.execute(ClaimTask(now=now, actor=ALICE, task_id=f"t{n}a", worker_id=w))
    for status in (TaskStatus.RUNNING, TaskStatus.COMPLETED):
        service.execute(UpdateTask(now=now, actor=ALICE, task_id=f"t{n}a", status=status))
    service.execute(ClaimTask(now=now, actor=ALICE, task_id=f"t{n}b", worker_id=w))
    service.execute(
        DisconnectWorker(now=now, actor=SYSTEM, worker_id=w, sid=sid, reason="transport close",
                         grace_seconds=0)
    )  # fmt: skip
    return 9


def commands_per_second(url: str, lifecycles: int) -> float:
    store = open_store(url)
    service = LedgerService(store)
    started = time.perf_counter()
    commands = sum(lifecycle(service, n) for n in range(lifecycles))
    elapsed = time.perf_counter() - started
    store.close()
    return commands / elapsed


def copy_events(source: list[StoredEvent], store: EventStore, chunk: int = 1000) -> None:
    """Append `source` to `store` in chunks (one transaction each), keeping versions."""
    for start in range(0, len(source), chunk):
        part = source[start : start + chunk]
        expected: dict[str, int] = {}
        for record in part:
            expected.setdefault(record.stream, record.version - 1)
        store.append([r.event for r in part], expected)


def long_worker(store: EventStore, events: int) -> str:
    """A worker stream of `events` events (room joins and leaves), appended 100 at a time."""
    service = LedgerService(store)
    lifecycle(service, 0)  # w0 exists, then gets a long history
    version = service.view.version("worker:w0")
    batch: list[Event] = []
    for i in range(events - version):
        kind = RoomLeft if i % 2 == 0 else RoomJoined
        batch.append(kind(worker_id="w0", sid="s0", job_name=JOB, at=T0 + timedelta(seconds=i)))
        if len(batch) == 100:
            store.append(batch, {"worker:w0": version})
            version += len(batch)
            batch = []
    if batch:
        store.append(batch, {"worker:w0": version})
    return "worker:w0"


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def load_figures(url: str, label: str, events: int, repeat: int) -> list[Row]:
    store = open_store(url, snapshot_interval=100)
    assert isinstance(store, RecorderEventStore)
    stream = long_worker(store, events)
    with_snap = median_ms(lambda: store.load_entity(stream), repeat)

    def full_fold() -> object:
        return fold_stream(stream, None, (r.event for r in store.read_stream(stream)))

    without = median_ms(full_fold, max(3, repeat // 5))
    store.close()
    note = f"{events:,} events in one worker stream; median of {repeat} loads"
    return [
        row(f"load worker, {label}, with snapshots", with_snap, "ms", note + ", snapshot/100"),
        row(f"load worker, {label}, without snapshots", without, "ms", note + ", full fold"),
    ]


def rebuild_figures(url: str, label: str, log: list[StoredEvent]) -> list[Row]:
    store = open_store(url, snapshot_interval=0)
    copy_events(log, store)
    tables = ReadModelTables.for_store(store)
    started = time.perf_counter()
    view = tables.rebuild(store)
    rebuild_s = time.perf_counter() - started
    started = time.perf_counter()
    fold_log(store)
    fold_s = time.perf_counter() - started
    started = time.perf_counter()
    open_service(store)
    start_s = time.perf_counter() - started
    started = time.perf_counter()
    problems = tables.check(store)
    check_s = time.perf_counter() - started
    store.close()
    assert problems == [], problems[:3]
    entities = f"{len(view.workers):,} workers, {len(view.tasks):,} tasks"
    n = f"{len(log):,} events"
    return [
        row(f"rebuild, {label}", rebuild_s, "s", f"{n} ({entities}): fold + rewrite tables"),
        row(f"rebuild --check, {label}", check_s, "s", f"{n}: load tables + fold + compare"),
        row(f"host start by folding the log, {label}", fold_s, "s", n),
        row(f"host start from read-model tables, {label}", start_s, "s", f"{n}: rows + catch-up"),
    ]


def row(figure: str, value: float, unit: str, note: str) -> Row:
    return {
        "figure": figure,
        "value": round(value, 3 if value < 100 else 1),
        "unit": unit,
        "note": note,
    }


@contextmanager
def postgres_database() -> Iterator[str | None]:
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception:
        yield None
        return
    name = f"wl_bench_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
            migrate(url)
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", default="bench/results/store.json", help="JSON result file")
    args = parser.parse_args(argv)
    lifecycles = 10 if args.quick else 400
    worker_events = 300 if args.quick else 10_000
    log_events = 2_000 if args.quick else 100_000
    repeat = 5 if args.quick else 50
    rows: list[Row] = []
    note = f"{lifecycles * 9:,} commands through LedgerService, one process"

    memory = LedgerService(open_store("memory://"))
    count = 0
    while memory.view.position < log_events:
        lifecycle(memory, count)
        count += 1
    log = memory.store.read(0, log_events)

    with tempfile.TemporaryDirectory() as tmp:
        backends = {"memory": "memory://", "SQLite": f"sqlite:///{tmp}/cmd.db"}
        for label, url in backends.items():
            rate = commands_per_second(url, lifecycles)
            rows.append(row(f"lifecycle commands/s, {label}", rate, "commands/s", note))
        rows += load_figures(f"sqlite:///{tmp}/load.db", "SQLite", worker_events, repeat)
        rows += rebuild_figures(f"sqlite:///{tmp}/rebuild.db", "SQLite", log)
    with postgres_database() as pg:
        if pg is None:
            rows.append(row("PostgreSQL figures", 0, "-", "PostgreSQL not reachable: left out"))
        else:
            rate = commands_per_second(pg, lifecycles)
            rows.insert(2, row("lifecycle commands/s, PostgreSQL", rate, "commands/s", note))
    for figures in (
        lambda url: load_figures(url, "PostgreSQL", worker_events, repeat),
        lambda url: rebuild_figures(url, "PostgreSQL", log),
    ):
        with postgres_database() as pg:
            if pg is not None:
                rows += figures(pg)

    result = {
        "title": "Event store (eventsourcing 9.5 recorders): throughput, loads, rebuild",
        "command": "python bench/bench_store.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['figure']:<52} {r['value']:>12,} {r['unit']:<11} {r['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
