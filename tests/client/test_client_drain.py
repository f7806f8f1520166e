"""The SDK obeys operator commands: a drain (`worker_drain`) stops claiming, lets the
running task finish and report, then leaves and `wait()` returns; an operator requeue
(`task_cancelled`) stops the running attempt, which is then claimed afresh."""

from __future__ import annotations

import threading
from typing import Any

from client_support import ADMIN_TOKEN, Host, wait_until
from support.jobs import Add
from workerledger.client import ClaimedTask, JobManager

WAIT = 15.0  # failure bound, never a measured time


def post(host: Host, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with host.http(ADMIN_TOKEN) as admin:
        answer = admin.post(path, json=body)
    assert answer.status_code in (200, 202), answer.text
    result: dict[str, Any] = answer.json()
    return result


def wait_returns(manager: JobManager) -> None:
    """`manager.wait()` returns (on a thread, so that a hang fails instead of blocking)."""
    waiter = threading.Thread(target=manager.wait, daemon=True)
    waiter.start()
    waiter.join(WAIT)
    assert not waiter.is_alive(), "wait() did not return"


def test_a_drained_worker_finishes_its_task_then_leaves_and_wait_returns(
    host: Host, room: str
) -> None:
    # Given a worker running a task that waits for `release`, and a second task pending
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def execute(task: ClaimedTask[Any]) -> None:
        ran.append(task.task_id)
        started.set()
        assert release.wait(WAIT)

    manager = host.manager(execute=execute)
    manager.register(Add, room=room)
    worker_id = manager.worker_id
    first = manager.submit(Add(a=1), room, job_room=room)
    assert started.wait(WAIT)
    second = manager.submit(Add(a=2), room, job_room=room)

    # When an admin drains it
    drained = post(host, f"/workers/{worker_id}/drain", {"reason": "deploy"})
    assert (drained["status"], drained["draining"]) == ("online", True)
    wait_until(lambda: manager.draining, WAIT, "the drain to reach the SDK")
    release.set()

    # Then wait() returns once the running task completed and the worker left
    wait_returns(manager)
    assert ran == [first]
    assert host.task(first)["status"] == "completed"
    assert host.task(second)["status"] == "pending"  # for another worker
    assert host.get(f"/workers/{worker_id}") is None  # 404: ended
    worker = host.get(f"/workers/{worker_id}/history")["state"]
    assert (worker["status"], worker["end_reason"]) == ("left", "left (by admin): drained: deploy")
    # and it never came back as a new worker
    assert host.job_workers(room, Add.full_name(room)) == []


def test_an_idle_drained_worker_leaves_at_once(host: Host, room: str) -> None:
    manager = host.manager(execute=lambda task: None)
    manager.register(Add, room=room)
    worker_id = manager.worker_id

    ended = post(host, f"/workers/{worker_id}/drain", {"reason": "scale down"})

    assert ended["status"] == "left"  # ended by the host in the drain's decision
    wait_returns(manager)
    assert manager.draining and manager.jobs == []
    assert host.job_workers(room, Add.full_name(room)) == []


def test_an_operator_requeue_stops_the_running_attempt_and_it_runs_again(
    host: Host, room: str
) -> None:
    # Given a worker whose first attempt runs until it is cancelled
    first_attempt = threading.Event()
    attempts: list[int | None] = []

    def execute(task: ClaimedTask[Any]) -> None:
        attempts.append(task.attempt)
        if task.attempt == 1:
            first_attempt.set()
            assert task.wait_cancelled(WAIT)
            task.raise_if_cancelled()

    with host.manager(execute=execute) as manager:
        manager.register(Add, room=room)
        task_id = manager.submit(Add(a=1), room, job_room=room)
        assert first_attempt.wait(WAIT)

        # When an admin requeues it
        post(host, f"/tasks/{task_id}/requeue", {"reason": "move off this node"})

        # Then the attempt stops, unreported, and the task runs again and completes
        info = manager.wait_for_task(task_id, timeout=WAIT)
    assert (info.status, info.attempt) == ("completed", 2)
    assert attempts == [1, 2]
    with host.http(ADMIN_TOKEN) as admin:
        history = admin.get(f"/tasks/{task_id}/history").json()
    assert [a["outcome"] for a in history["attempts"]] == ["requeued", "completed"]
    assert history["attempts"][0]["reason"] == "requeued by admin: move off this node"
    rejected = [e for e in history["timeline"] if e["type"] == "TaskReportRejected"]
    assert rejected == []  # the stopped attempt reported nothing
