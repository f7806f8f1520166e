"""A replayed claim is run only while the task is still this worker's claim.

The answer of the claim that took the task is lost, and the SDK's retry (same
Idempotency-Key) is held back until the host's claim lease has requeued the task. The
replay then shows the task pending, not claimed by this worker: the SDK must not run
it on that answer, claim afresh, and run it exactly once under the new claim.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from workerledger.client import ClaimedTask, JobManager

from .fault_host import TOKEN, FaultHost
from .fault_transport import LosingTransport, Rule
from .matrix import Step

WAIT = 15.0  # failure bound for an awaited condition, never a measured time


class HeldRetry(httpx.BaseTransport):
    """Holds the first claim sent after a lost claim answer until `ready()` is true."""

    def __init__(self, inner: LosingTransport, ready: Any) -> None:
        self.inner, self.ready, self.held = inner, ready, threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        lost_once = self.inner.rules[0].lost == 1
        if request.url.path.endswith("/tasks/claim") and lost_once and not self.held.is_set():
            self.held.set()
            deadline = time.monotonic() + WAIT
            while not self.ready():
                assert time.monotonic() < deadline, "the claim lease never requeued the task"
                time.sleep(0.05)
        return self.inner.handle_request(request)


def test_a_replayed_claim_whose_lease_expired_is_not_run(
    fault_host: FaultHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workerledger.client")
    room = "replay"
    runs: Counter[str] = Counter()

    def execute(task: ClaimedTask[Any]) -> None:
        runs[task.task_id] += 1

    submitted: list[str] = []  # the task id, once the submit answered

    def requeued() -> bool:
        task = submitted and fault_host.get(f"/tasks/{submitted[0]}")
        return bool(task and task["status"] == "pending" and task["attempt"] == 1)

    lose_claim = Rule("POST", r"/tasks/claim$", answer=r'"task": ?\{')
    net = LosingTransport([lose_claim])
    options = {"polling_interval": 0.2, "heartbeat_interval": 0.5}
    with (
        JobManager(
            fault_host.url, TOKEN, execute=execute, transport=HeldRetry(net, requeued), **options
        ) as worker,
        JobManager(fault_host.url, TOKEN, sio=False) as submitter,
    ):
        worker.register(Step, room=room)
        task_id = submitter.submit(Step(n=1), room, job_room=room)
        submitted.append(task_id)
        deadline = time.monotonic() + WAIT
        while fault_host.get(f"/tasks/{task_id}")["status"] != "completed":
            assert time.monotonic() < deadline, "the task never completed"
            time.sleep(0.05)
    task = fault_host.get(f"/tasks/{task_id}")
    assert lose_claim.lost == 1 and task["attempt"] == 2
    assert runs == Counter({task_id: 1})
    assert any(x.replayed for x in net.exchanges if x.path.endswith("/tasks/claim"))
    assert f"claim replay: task {task_id} is pending" in caplog.text
