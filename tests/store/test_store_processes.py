"""Several processes on one database: conflicts land exactly once; SIGKILL loses nothing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from store_support import all_events, claim_all, register, submit
from support.cli_runner import cli
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.read_models import fold_log
from workerledger.adapters.store.url import open_store
from workerledger.core import TaskStatus

HERE = Path(__file__).parent
TASKS = 120
pytestmark = pytest.mark.slow


def test_two_processes_claiming_from_one_queue_claim_every_task_once(sql_url: str) -> None:
    # given one queue of tasks and two workers of the same job
    store = open_store(sql_url)
    service = LedgerService(store)
    register(service, "wa")
    register(service, "wb")
    for i in range(TASKS):
        submit(service, f"t{i:03}")
    # when two processes drain the queue at the same time
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=claim_all, args=(sql_url, w, barrier, out), daemon=True)
        for w in ("wa", "wb")
    ]
    for proc in procs:
        proc.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0
    finally:  # a failed child must not leave its sibling waiting at the barrier
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
    # then every task was claimed exactly once, by the process that was told so
    claimed = {worker: tasks for worker, tasks, _ in results}
    assert sorted(claimed["wa"] + claimed["wb"]) == [f"t{i:03}" for i in range(TASKS)]
    events = all_events(store)
    claims = Counter(s.event.task_id for s in events if s.event.type == "TaskClaimed")
    assert set(claims.values()) == {1} and len(claims) == TASKS
    view = fold_log(store)
    for worker, tasks in claimed.items():
        assert view.workers[worker].tasks == frozenset(tasks)
        assert all(view.tasks[t].worker_id == worker for t in tasks)
    store.close()


def test_a_writer_killed_mid_stream_leaves_only_whole_committed_commands(sql_url: str) -> None:
    # given a writer issuing commands as fast as it can
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "store_writer.py"), sql_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged = 0
    for line in writer.stdout:
        acknowledged = int(line.split()[1])
        if acknowledged >= 60:
            break
    # when it is killed in the middle of the stream
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    # then reopening shows every acknowledged command, each one whole
    store = open_store(sql_url)
    view = fold_log(store)
    worker = view.workers["w"]
    tasks = sorted(view.tasks.values(), key=lambda t: int(t.id[1:]))
    commands = 1 + sum(
        {TaskStatus.PENDING: 1, TaskStatus.CLAIMED: 2, TaskStatus.RUNNING: 3,
         TaskStatus.COMPLETED: 4}[t.status]
        for t in tasks
    )  # fmt: skip
    assert commands >= acknowledged
    assert all(t.status is TaskStatus.COMPLETED for t in tasks[:-1])
    held = {t.id for t in tasks if t.status.is_held}
    assert worker.tasks == held  # a claim is never half stored (task without worker side)
    assert all(t.worker_id == "w" for t in tasks if t.status is not TaskStatus.PENDING)
    store.close()
    # and the read-model tables it checkpointed match the log
    check = cli("rebuild", "--check", "--database-url", sql_url)
    assert check.returncode == 0, check.stdout + check.stderr
