"""Event-loop lag while the Ledger runs commands on its worker thread.

    python -m bench --only loop_lag [--quick]

32 coroutines each submit and claim tasks through `Ledger` (the asyncio face of
LedgerService, one executor thread) while a ticker coroutine asks for a 1 ms sleep
and records how late it wakes up. The store libraries are synchronous; this shows
they never run on the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workerledger.adapters.ledger import Ledger
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.url import open_store
from workerledger.core import Actor, ClaimTask, RegisterJob, SubmitTask

OUT = Path(__file__).resolve().parent / "results" / "loop_lag.json"
ALICE = Actor(user="alice")
JOB = "lab:modifiers:noop"


def _now() -> datetime:
    return datetime.now(UTC)


async def _ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - started - 0.001)


async def _client(ledger: Ledger, n: int, per_client: int) -> None:
    worker = f"w{n}"
    for i in range(per_client):
        await ledger.execute(
            SubmitTask(now=_now(), actor=ALICE, task_id=f"t{n}-{i}", job_name=JOB, room_id="lab")
        )
        await ledger.claim_next(ClaimTask(now=_now(), actor=ALICE, task_id="", worker_id=worker))


async def measure(url: str, clients: int, per_client: int) -> dict[str, float]:
    ledger = Ledger(LedgerService(open_store(url)))
    for n in range(clients):
        await ledger.execute(
            RegisterJob(now=_now(), actor=ALICE, room_id="lab", category="modifiers",
                        name="noop", worker_id=f"w{n}", create_worker=True)
        )  # fmt: skip
    stop, lags = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, lags))
    started = time.perf_counter()
    await asyncio.gather(*(_client(ledger, n, per_client) for n in range(clients)))
    elapsed = time.perf_counter() - started
    stop.set()
    await ticker
    ledger.close()
    lags_ms = sorted(lag * 1000 for lag in lags)
    return {
        "commands_per_s": clients * per_client * 2 / elapsed,
        "p50": statistics.median(lags_ms),
        "p99": lags_ms[int(0.99 * (len(lags_ms) - 1))],
        "max": lags_ms[-1],
    }


def _row(figure: str, value: float, unit: str, note: str) -> dict[str, Any]:
    return {"figure": figure, "value": round(value, 3), "unit": unit, "note": note}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    clients, per_client = (4, 5) if args.quick else (32, 40)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, url in (("memory", "memory://"), ("SQLite", f"sqlite:///{tmp}/lag.db")):
            print(f"loop lag: {label}, {clients} clients x {per_client} submit+claim ...")
            figures = asyncio.run(measure(url, clients, per_client))
            note = f"{clients} concurrent clients, {clients * per_client * 2} commands"
            rows += [
                _row(f"{label}: commands/s through Ledger", figures["commands_per_s"], "1/s", note),
                _row(f"{label}: event-loop lag p50", figures["p50"], "ms", "1 ms ticker"),
                _row(f"{label}: event-loop lag p99", figures["p99"], "ms", "1 ms ticker"),
                _row(f"{label}: event-loop lag max", figures["max"], "ms", "1 ms ticker"),
            ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "title": "Event-loop lag under load (Ledger executor)",
                "command": "python -m bench --only loop_lag" + (" --quick" if args.quick else ""),
                "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
                "rows": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
