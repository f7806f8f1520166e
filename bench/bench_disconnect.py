"""SIGKILL of a worker process -> its cleanup event observed by a watcher.

One `workerledger serve` host per configuration (fresh SQLite file). Each worker is a
subprocess (httpx + python-socketio, no SDK) that registers a job in room `bench`,
joins the job room over Socket.IO (websocket), claims one task and waits. The bench
SIGKILLs it and measures, in the bench process (monotonic clock), the time from the
kill to the `task_status_event` that puts its task back to `pending`, as received by
a watcher client in `room:bench`. The kill is seen by the host through TCP at once;
the release happens at once with grace 0, or when the grace window expires.

Goals (issue 4): grace 0 -> p99 under 100 ms; default grace -> grace + 100 ms.
zndraw-joblib 0.1.7 needs its sweeper: 60-90 s after the last heartbeat.

    python -m bench.bench_disconnect [--quick] [--kills N] [--grace S]

writes bench/results/disconnect.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import socketio

from bench.loadgen import ServerProcess, free_port
from bench.report import machine_description, results_dir

TOPIC = "disconnect"
TOKEN = "bench-disconnect-token"
ROOM, NAME = "bench", "Hold"
JOB = f"{ROOM}:modifiers:{NAME}"
PREFIX = "/v1/joblib"
WAIT = 60.0  # failure bound only


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# --- the worker process ----------------------------------------------------------------


async def worker(url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url + PREFIX, headers=headers, timeout=WAIT) as http:
        body = {"category": "modifiers", "name": NAME}
        worker_id = (await http.put(f"/rooms/{ROOM}/jobs", json=body)).json()["worker_id"]
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(url, auth={"token": TOKEN}, transports=["websocket"])
        ack = await sio.call("join_job_room", {"job_name": JOB, "worker_id": worker_id})
        print(json.dumps({"joined": ack}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "claim"
        task = (await http.post("/tasks/claim", json={"worker_id": worker_id})).json()["task"]
        line = {"worker_id": worker_id, "ack": ack, "task": task["id"], "attempt": task["attempt"]}
        print(json.dumps(line), flush=True)
        await asyncio.Event().wait()


# --- the measuring side ------------------------------------------------------------------


class Watcher:
    """Resolves a future per (task id, attempt) when that claim's task is requeued."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.waiting: dict[tuple[str, int], asyncio.Future[float]] = {}
        self.client.on("task_status_event", self.on_status)

    async def on_status(self, data: dict[str, Any]) -> None:
        arrived = time.perf_counter()
        if data.get("status") != "pending":
            return
        future = self.waiting.pop((data["id"], data["attempt"]), None)
        if future is not None and not future.done():
            future.set_result(arrived)

    def expect(self, task_id: str, attempt: int) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[(task_id, attempt)] = future
        return future


async def spawn(url: str) -> asyncio.subprocess.Process:
    """A worker that registered and joined its job room (it claims on `claim`)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_disconnect", "--worker", url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert proc.stdout is not None
    joined = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))
    assert joined == {"joined": {"ok": True}}, joined
    return proc


async def claim(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"claim\n")
    await proc.stdin.drain()
    ready: dict[str, Any] = json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT))
    return ready


async def kill_and_wait(
    watcher: Watcher,
    proc: asyncio.subprocess.Process,
    ready: dict[str, Any],
    delay: float,
    grace: float,
) -> float:
    await asyncio.sleep(delay)  # staggers kills of one batch; not a synchronisation
    released = watcher.expect(ready["task"], ready["attempt"])
    started = time.perf_counter()
    os.kill(proc.pid, signal.SIGKILL)
    arrived = await asyncio.wait_for(released, WAIT + grace)
    await proc.wait()
    return (arrived - started) * 1000


async def measure(url: str, kills: int, grace: float) -> list[float]:
    """Grace 0: one kill at a time. Otherwise batches of 25 workers killed 50 ms apart,
    so that their grace windows run concurrently."""
    batch, stagger = (10, 0.0) if grace == 0 else (25, 0.05)
    watcher = Watcher()
    await watcher.client.connect(url, auth={"token": TOKEN}, transports=["websocket"])
    assert await watcher.client.call("join_room", {"room_id": ROOM}) == {"ok": True}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url + PREFIX, headers=headers, timeout=WAIT) as http:
        while len(latencies) < kills:
            size = min(batch, kills - len(latencies))
            procs = await asyncio.gather(*(spawn(url) for _ in range(size)))
            for _ in range(size):
                submitted = await http.post(f"/rooms/{ROOM}/tasks/{JOB}", json={"payload": {}})
                assert submitted.status_code == 202, submitted.text
            workers = [(proc, await claim(proc)) for proc in procs]
            if stagger == 0:  # one kill at a time
                for proc, ready in workers:
                    latencies.append(await kill_and_wait(watcher, proc, ready, 0, grace))
            else:  # concurrent grace windows
                runs = [
                    kill_and_wait(watcher, p, r, i * stagger, grace)
                    for i, (p, r) in enumerate(workers)
                ]
                latencies += await asyncio.gather(*runs)
    await watcher.client.disconnect()
    return latencies


def run_config(grace: float, kills: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="wl-bench-disconnect-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "WORKERLEDGER_DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
            "WORKERLEDGER_AUTH_TOKENS": json.dumps({TOKEN: {"user": "bench"}}),
            "WORKERLEDGER_DISCONNECT_GRACE_SECONDS": str(grace),
        }
        command = [sys.executable, "-m", "workerledger", "serve", "--port", str(port)]
        log = Path(tmp) / "host.log"
        with ServerProcess(name="workerledger", command=command, env=env, base_url=url,
                           log_path=log):  # fmt: skip
            return asyncio.run(measure(url, kills, grace))


def row(name: str, values: list[float], grace: float, q: float) -> dict[str, Any]:
    value = round(percentile(values, q), 2)
    note = f"grace {grace:g} s; n={len(values)} kills"
    if grace:
        note += f"; {value - grace * 1000:.1f} ms beyond the grace window"
    return {"figure": name, "value": value, "unit": "ms", "note": note}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_disconnect", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 kills, grace 0 and 1 s")
    parser.add_argument("--kills", type=int, help="kills per configuration (default 50)")
    parser.add_argument("--grace", type=float, help="the non-zero grace (default: host default)")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker(args.worker))
        return 0
    from workerledger.host_fastapi.settings import Settings

    kills = args.kills or (3 if args.quick else 50)
    grace = args.grace if args.grace is not None else (1.0 if args.quick else 0.0)
    grace = grace or Settings.model_fields["disconnect_grace_seconds"].default
    rows: list[dict[str, Any]] = []
    for g in (0.0, grace):
        values = run_config(g, kills)
        label = "grace 0" if g == 0 else f"grace {g:g} s"
        rows.append(row(f"SIGKILL -> task requeued at watcher, {label} (p50)", values, g, 50))
        rows.append(row(f"SIGKILL -> task requeued at watcher, {label} (p99)", values, g, 99))
        rows[-1]["runs"] = [round(v, 2) for v in values]
    report = {
        "title": "Disconnect cleanup: SIGKILL of a worker -> cleanup event at a watcher",
        "command": "python -m bench.bench_disconnect" + (" " + " ".join(argv) if argv else ""),
        "machine": machine_description(),
        "rows": rows,
    }
    path = results_dir() / f"{TOPIC}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    for item in rows:
        print(f"{item['figure']}: {item['value']} {item['unit']} ({item['note']})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
