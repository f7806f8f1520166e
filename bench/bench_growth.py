"""How costs grow: claim latency against queue length, a worker's cleanup against the
number of tasks in the whole system, history load against history length (SQLite).

    python -m bench --only growth [--quick]

Queues are built by appending TaskSubmitted events in bulk (1,000 per transaction);
every measured operation then goes through LedgerService, the host's decision path.
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.history import worker_history
from workerledger.adapters.store.url import open_store
from workerledger.core import Actor, ClaimTask, RegisterJob, RemoveWorker, TaskSubmitted

from bench.bench_store import long_worker

OUT = Path(__file__).resolve().parent / "results" / "growth.json"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = Actor(user="alice")
JOB = "lab:modifiers:noop"
Row = dict[str, Any]


def _service_with_queue(url: str, pending: int) -> LedgerService:
    service = LedgerService(open_store(url))
    service.execute(
        RegisterJob(now=T0, actor=ALICE, room_id="lab", category="modifiers", name="noop",
                    worker_id="w0", create_worker=True)
    )  # fmt: skip
    for start in range(0, pending, 1000):
        batch = [
            TaskSubmitted(task_id=f"t{i}", job_name=JOB, room_id="lab", by="alice",
                          at=T0 + timedelta(microseconds=i))
            for i in range(start, min(start + 1000, pending))
        ]  # fmt: skip
        service.store.append(batch, {event.stream: 0 for event in batch})
    service.catch_up()
    return service


def timed_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _row(figure: str, times: list[float], note: str) -> Row:
    return {
        "figure": figure,
        "value": round(statistics.median(times), 3),
        "unit": "ms",
        "note": f"{note}; min {min(times):.3f}, max {max(times):.3f}, n={len(times)}",
    }


def claim_and_cleanup(tmp: str, sizes: list[int], repeat: int) -> list[Row]:
    rows: list[Row] = []
    for pending in sizes:
        print(f"growth: queue of {pending:,} pending tasks ...", flush=True)
        service = _service_with_queue(f"sqlite:///{tmp}/q{pending}.db", pending)
        claim = ClaimTask(now=T0 + timedelta(hours=1), actor=ALICE, task_id="", worker_id="w0")
        times = timed_ms(lambda s=service, c=claim: s.claim_next(c), repeat)
        rows.append(_row(f"claim latency, {pending:,} pending tasks", times, "claim_next"))
        cleanup: list[float] = []
        for n in range(repeat // 10 or 1):
            worker = f"c{n}"
            service.execute(
                RegisterJob(now=T0, actor=ALICE, room_id="lab", category="modifiers",
                            name="noop", worker_id=worker, create_worker=True)
            )  # fmt: skip
            for _ in range(10):
                service.claim_next(claim.model_copy(update={"worker_id": worker}))
            remove = RemoveWorker(now=T0 + timedelta(hours=2), actor=ALICE, worker_id=worker)
            cleanup += timed_ms(lambda s=service, r=remove: s.execute(r), 1)
        note = "RemoveWorker of a worker holding 10 claimed tasks (requeued)"
        rows.append(_row(f"worker cleanup, {pending:,} tasks in the system", cleanup, note))
        service.close()
    return rows


def history_growth(tmp: str, lengths: list[int], repeat: int) -> list[Row]:
    rows: list[Row] = []
    for length in lengths:
        print(f"growth: history of {length:,} events ...", flush=True)
        store = open_store(f"sqlite:///{tmp}/h{length}.db")
        long_worker(store, length)
        times = timed_ms(lambda store=store: worker_history(store, "w0"), repeat)
        note = "worker_history (timeline + state), snapshots every 100 versions"
        rows.append(_row(f"history load, {length:,} events", times, note))
        store.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    queues = [10, 100, 1_000] if args.quick else [10, 1_000, 10_000, 100_000]
    lengths = [100, 300] if args.quick else [100, 1_000, 10_000]
    repeat = 10 if args.quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        rows = claim_and_cleanup(tmp, queues, repeat)
        rows += history_growth(tmp, lengths, max(repeat // 10, 3))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "title": "How costs grow (SQLite, LedgerService)",
                "command": "python -m bench --only growth" + (" --quick" if args.quick else ""),
                "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    for r in rows:
        print(f"{r['figure']:<48} {r['value']:>10} ms  {r['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
