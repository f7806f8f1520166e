"""The worker client's graceful exit: `with manager:` exit -> worker gone and room left.

Each run registers a fresh worker (one job, its room joined over Socket.IO, ack
awaited) against one `workerledger serve` host on a fresh SQLite file, then leaves
the `with` block and measures:

- exit -> `disconnect()` returned (leave_job_room acked, DELETE answered, socket closed);
- exit -> the worker absent from `GET /workers` (the first GET after the exit is
  checked, so "gone at once" is verified, not waited for);
- exit -> `RoomLeft` and `WorkerLeft` recorded in the worker's event stream (event
  timestamps from the host's clock, same machine).

Goal: under 100 ms. `python -m bench.bench_client [--quick] [--runs N]` writes
bench/results/client.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
from workerledger.client import Extension, JobManager

from bench.loadgen import ServerProcess, free_port
from bench.report import machine_description, results_dir

TOPIC = "client"
TOKEN = "bench-client-token"
GOAL_MS = 100.0


class Noop(Extension):
    category: ClassVar[str] = "modifiers"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def one_run(url: str, room: str, http: httpx.Client) -> dict[str, Any]:
    manager = JobManager(url, TOKEN, heartbeat_interval=30)
    with manager:
        manager.register(Noop, room=room)
        worker_id = manager.worker_id
        wall_exit = time.time()
        started = time.perf_counter()
    returned = time.perf_counter()
    listed = {w["id"] for w in http.get("/v1/joblib/workers?limit=500").json()["items"]}
    checked = time.perf_counter()
    return {
        "worker_id": worker_id,
        "wall_exit": wall_exit,
        "disconnect_ms": (returned - started) * 1000,
        "gone_ms": (checked - started) * 1000,
        "gone_at_first_get": worker_id not in listed,
    }


def event_lags(env: dict[str, str], run: dict[str, Any]) -> dict[str, float]:
    command = [sys.executable, "-m", "workerledger", "history", run["worker_id"], "--json"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    lags: dict[str, float] = {}
    for entry in json.loads(result.stdout)["timeline"]:
        if entry["type"] in ("RoomLeft", "WorkerLeft"):
            at = datetime.fromisoformat(entry["at"]).timestamp()
            lags[entry["type"]] = (at - run["wall_exit"]) * 1000
    return lags


def row(figure: str, values: list[float], note: str) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": round(statistics.median(values), 2),
        "unit": "ms",
        "note": f"{note}; p99 {percentile(values, 99):.1f} ms, n={len(values)}",
        "runs": [round(v, 2) for v in values],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_client", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 runs instead of 30")
    parser.add_argument("--runs", type=int, help="number of runs (default 30, quick 5)")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 30)
    with tempfile.TemporaryDirectory(prefix="wl-bench-client-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "WORKERLEDGER_DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
            "WORKERLEDGER_AUTH_TOKENS": json.dumps({TOKEN: {"user": "bench", "superuser": False}}),
            "WORKERLEDGER_DISCONNECT_GRACE_SECONDS": "0",
        }
        command = [sys.executable, "-m", "workerledger", "serve", "--port", str(port)]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with (
            ServerProcess(name="workerledger", command=command, env=env, base_url=url),
            httpx.Client(base_url=url, headers=headers, timeout=10) as http,
        ):
            one_run(url, "warmup", http)
            results = [one_run(url, f"bench{i}", http) for i in range(runs)]
            lags = [event_lags(env, run) for run in results]
    report = build_report(argv, results, lags)
    path = results_dir() / f"{TOPIC}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    for item in report["rows"]:
        print(f"{item['figure']}: {item['value']} {item['unit']} ({item['note']})")
    print(f"wrote {path}")
    return 0


def build_report(
    argv: list[str] | None, results: list[dict[str, Any]], lags: list[dict[str, float]]
) -> dict[str, Any]:
    disconnect = [r["disconnect_ms"] for r in results]
    gone = [r["gone_ms"] for r in results]
    room_left = [lag["RoomLeft"] for lag in lags if "RoomLeft" in lag]
    worker_left = [lag["WorkerLeft"] for lag in lags if "WorkerLeft" in lag]
    at_once = sum(r["gone_at_first_get"] for r in results)
    rows = [
        row("with-exit -> RoomLeft recorded (p50)", room_left, "leave_job_room, acknowledged"),
        row("with-exit -> WorkerLeft recorded (p50)", worker_left, "DELETE /workers/{id}"),
        row("with-exit -> disconnect() returned (p50)", disconnect, "incl. Socket.IO close"),
        row("with-exit -> absent from GET /workers (p50)", gone, "first GET after exit"),
        {
            "figure": "worker gone at the first GET after exit",
            "value": at_once,
            "unit": f"of {len(results)} runs",
            "note": "no waiting: the listing already excludes the worker",
        },
    ]
    p99 = max(percentile(worker_left, 99), percentile(room_left, 99))
    return {
        "title": "Worker client: `with manager:` exit -> worker gone and room left",
        "command": " ".join(["python -m bench.bench_client", *(argv or [])]),
        "machine": machine_description(),
        "rows": rows,
        "goals": [
            {
                "goal": f"with-exit -> worker gone and room left under {GOAL_MS:.0f} ms",
                "met": p99 < GOAL_MS and at_once == len(results),
                "detail": f"p99 {p99:.1f} ms; gone at first GET in {at_once}/{len(results)}",
            }
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
