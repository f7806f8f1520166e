"""Claim and run: completion, bad payloads, unknown jobs, server-side cancel, stale
completion and re-registration after the server lost the worker."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from client_support import USER_TOKEN, Host, Recorder, wait_until
from support.jobs import Add, Redo
from workerledger.client import StaleAttemptError


def status_of(host: Host, task_id: str) -> str:
    return str(host.task(task_id)["status"])


def wait_status(host: Host, task_id: str, *statuses: str) -> dict[str, Any]:
    return wait_until(
        lambda: (t := host.task(task_id))["status"] in statuses and t,
        what=f"task {task_id} to be {statuses}",
    )


def test_background_execution_completes_tasks_with_the_attempt(host: Host, room: str) -> None:
    recorder = Recorder()
    with host.manager(execute=recorder) as manager:
        manager.register(Add, room=room)
        task_id = manager.submit(Add(a=1, b=2), room, job_room=room)
        task = wait_status(host, task_id, "completed")
    assert task["attempt"] == 1 and recorder.started == [task_id]


@pytest.mark.parametrize("realtime", [True, False], ids=["socketio", "rest-only"])
def test_invalid_payload_is_failed_on_the_server_with_the_reason(
    host: Host, room: str, realtime: bool
) -> None:
    recorder = Recorder()
    with host.manager(execute=recorder, sio=realtime) as manager:
        manager.register(Add, room=room)
        task_id = host.submit_raw(room, Add.full_name(room), {"a": "not a number"})
        task = wait_status(host, task_id, "failed")
    assert "invalid payload" in task["error"] and "a:" in task["error"]
    assert recorder.started == []


def test_task_for_an_unknown_job_is_failed_not_left_claimed(host: Host, room: str) -> None:
    recorder = Recorder()
    with host.manager(execute=recorder) as manager:
        manager.register(Add, room=room)
        # The worker gets linked to a job its manager never registered.
        body = {"category": "modifiers", "name": "Stranger", "worker_id": manager.worker_id}
        with host.http(USER_TOKEN) as client:
            assert client.put(f"/rooms/{room}/jobs", json=body).status_code in (200, 201)
        task_id = host.submit_raw(room, f"{room}:modifiers:Stranger", {})
        task = wait_status(host, task_id, "failed")
        assert "not registered" in task["error"]
        # ... and the worker keeps working
        good = manager.submit(Add(a=2), room, job_room=room)
        wait_status(host, good, "completed")
    assert recorder.started == [good]


@pytest.mark.parametrize("realtime", [True, False], ids=["socketio", "rest-only"])
def test_server_side_cancel_reaches_the_running_task(host: Host, room: str, realtime: bool) -> None:
    recorder = Recorder(hold=True)
    with host.manager(execute=recorder, sio=realtime) as manager:
        manager.register(Add, room=room)
        task_id = manager.submit(Add(a=1), room, job_room=room)
        wait_status(host, task_id, "running")
        manager.cancel(task_id, "changed my mind")  # the submitter cancels
        wait_until(lambda: recorder.saw_cancel == [task_id], what="the cancel flag")
    task = host.task(task_id)
    assert task["status"] == "cancelled" and task["error"] == "changed my mind"


def test_stale_completion_is_reported_once_and_the_worker_re_registers(
    host: Host, room: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workerledger.client")
    first = host.manager(heartbeat_interval=0.2)
    first.register(Redo, room=room)
    old_id = first.worker_id
    assert old_id is not None
    task_id = first.submit(Redo(a=1), room, job_room=room)
    task = wait_until(first.claim, what="a claim")
    first.start(task)
    # The server loses the worker (as after an expired grace window): the task is
    # released and another worker finishes it.
    with host.http(USER_TOKEN) as client:
        assert client.delete(f"/workers/{old_id}").status_code == 204
    with host.manager(execute=Recorder()) as second:
        second.register(Redo, room=room)
        assert wait_status(host, task_id, "completed")["attempt"] == 2
    with pytest.raises(StaleAttemptError):
        first.complete(task)
    # The heartbeat learns the worker is gone and re-registers, exactly once.
    new_id = wait_until(lambda: first.worker_id != old_id and first.worker_id, what="re-register")
    assert new_id in host.worker_ids() and old_id not in host.worker_ids()
    assert new_id in host.job_workers(room, Redo.full_name(room))
    first.disconnect()
    assert caplog.text.count(f"worker {old_id} is gone on the server") == 1


def test_listen_yields_claims_for_manual_reporting(host: Host, room: str) -> None:
    with host.manager() as manager:
        manager.register(Add, room=room)
        task_id = manager.submit(Add(a=3, b=4), room, job_room=room)
        stop = threading.Event()
        for task in manager.listen(stop_event=stop):
            assert task.task_id == task_id and task.attempt == 1
            assert task.extension.run(task) == 7
            manager.start(task)
            manager.complete(task)
            stop.set()
        assert status_of(host, task_id) == "completed"
