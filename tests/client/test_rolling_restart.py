"""A rolling restart with real processes: a `workerledger serve` host, a steady stream of
tasks (0.2-0.5 s each), three SDK worker processes (tests/support/steady_worker.py)
drained and replaced one by one. No task fails, none runs twice, every one completes.

The figures (tasks run, failed, run twice, longest wait from submit to start, and the
time from each drain to its process's clean exit) are printed for the record; they
are never asserted on.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from client_support import ADMIN_TOKEN, USER_TOKEN, Host, wait_until

SCRIPT = str(Path(__file__).resolve().parents[1] / "support" / "steady_worker.py")
WORKERS = 3
SUBMIT_EVERY = 0.25  # about 4 tasks/s; two workers run about 5.7/s
EXIT_WAIT = 30.0  # failure bound for a drained process to exit, never a measured time


class StreamOfTasks:
    """Submits a `Steady` task every SUBMIT_EVERY seconds from a thread."""

    def __init__(self, host: Host, room: str) -> None:
        self.path = f"/rooms/{room}/tasks/{room}:modifiers:Steady"
        self.http = host.http(USER_TOKEN)
        self.submitted: dict[str, float] = {}  # task id -> submit time (wall clock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(SUBMIT_EVERY):
            body = {"payload": {"seconds": round(random.uniform(0.2, 0.5), 3)}}
            sent = time.time()
            answer = self.http.post(self.path, json=body)
            assert answer.status_code == 202, answer.text
            self.submitted[answer.json()["id"]] = sent

    def __enter__(self) -> StreamOfTasks:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.http.close()


class Workers:
    """Worker processes writing one shared JSON-lines log."""

    def __init__(self, host: Host, room: str, log: Path) -> None:
        self.host, self.room, self.log = host, room, log
        self.procs: dict[str, subprocess.Popen[str]] = {}  # worker id -> process

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def spawn(self) -> str:
        command = [sys.executable, SCRIPT, self.host.url, USER_TOKEN, self.room, str(self.log)]
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)

        def ready() -> str | None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            found = [
                x["worker"] for x in self.lines() if x["ev"] == "ready" and x["pid"] == proc.pid
            ]
            return found[0] if found else None

        worker_id = wait_until(ready, 30, "a worker process to register")
        self.procs[worker_id] = proc
        return worker_id

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(EXIT_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def drain(host: Host, worker_id: str) -> dict[str, Any]:
    with host.http(ADMIN_TOKEN) as admin:
        answer = admin.post(f"/workers/{worker_id}/drain", json={"reason": "rolling restart"})
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_rolling_restart_under_load_fails_and_repeats_nothing(
    fresh_host: Host, room: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given three SDK worker processes and a steady stream of 0.2-0.5 s tasks
    workers = Workers(fresh_host, room, tmp_path / "runs.jsonl")
    originals = [workers.spawn() for _ in range(WORKERS)]
    exits: list[float] = []
    try:
        with StreamOfTasks(fresh_host, room) as stream:
            ended = lambda: sum(x["ev"] == "end" for x in workers.lines()) >= WORKERS  # noqa: E731
            wait_until(ended, 30, "the stream to run on the workers")
            # When each original worker is drained, exits, and is replaced, one by one
            for worker_id in originals:
                proc = workers.procs[worker_id]
                started = time.monotonic()
                drain(fresh_host, worker_id)
                code = proc.wait(EXIT_WAIT)
                exits.append(time.monotonic() - started)
                stderr = proc.stderr.read() if proc.stderr else ""
                assert code == 0, stderr
                assert "re-registered" not in stderr and "Traceback" not in stderr, stderr
                workers.spawn()
        submitted = dict(stream.submitted)

        # Then every task completes (the replacements run what is left)
        def all_done() -> dict[str, str] | None:
            tasks = fresh_host.get(f"/rooms/{room}/tasks?limit=500")["items"]
            statuses = {t["id"]: t["status"] for t in tasks}
            done = all(s in ("completed", "failed", "cancelled") for s in statuses.values())
            return statuses if done and len(statuses) == len(submitted) else None

        statuses = wait_until(all_done, 60, "every task to end")
    finally:
        workers.stop_all()

    runs = workers.lines()
    starts = Counter(x["task"] for x in runs if x["ev"] == "start")
    first_start = {}
    for line in runs:
        if line["ev"] == "start":
            first_start.setdefault(line["task"], line["t"])
    failed = sorted(t for t, s in statuses.items() if s != "completed")
    twice = sorted(t for t, n in starts.items() if n > 1)
    waits = [first_start[t] - at for t, at in submitted.items() if t in first_start]
    with capsys.disabled():
        print(
            f"\nrolling restart: {len(submitted)} tasks submitted, {sum(starts.values())} runs, "
            f"{len(failed)} failed, {len(twice)} run twice, longest wait submit->start "
            f"{max(waits):.2f} s (median {sorted(waits)[len(waits) // 2]:.2f} s); "
            f"drain -> clean exit {', '.join(f'{e:.2f}' for e in exits)} s"
        )
    assert failed == [] and twice == []
    assert set(starts) == set(submitted)  # every task ran exactly once
    # and each drained worker was ended by the host, left by the drainer with the reason
    for worker_id in originals:
        worker = fresh_host.get(f"/workers/{worker_id}/history")["state"]
        assert (worker["status"], worker["end_reason"]) == (
            "left",
            "left (by admin): drained: rolling restart",
        )
    left = [x for x in runs if x["ev"] == "left" and x["worker"] in originals]
    assert len(left) == WORKERS and all(x["drained"] for x in left)
