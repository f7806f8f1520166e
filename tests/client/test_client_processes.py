"""Whole processes: SIGTERM to a worker in `wait()`, and a host killed and restarted."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from client_support import USER_TOKEN, Host, Recorder, wait_until
from support.jobs import Redo
from support.worker_process import WORKER_SCRIPT

pytestmark = pytest.mark.slow


def test_sigterm_to_a_waiting_worker_takes_the_graceful_path(host: Host, room: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, WORKER_SCRIPT, "hold", host.url, USER_TOKEN, room],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        worker_id = proc.stdout.readline().split()[1]
        task_id = host.submit_raw(room, Redo.full_name(room), {"a": 1})
        assert proc.stdout.readline().split() == ["START", task_id]
        wait_until(lambda: host.task(task_id)["status"] == "running", what="task running")
        # When the worker process gets SIGTERM
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stdout.read().strip() == "LEFT"
    finally:
        proc.kill()
        proc.wait()
    # Then it left gracefully: no task held, worker removed, history says "left"
    assert host.task(task_id)["status"] == "pending"
    assert worker_id not in host.worker_ids()
    assert host.history(worker_id)[-1]["type"] == "WorkerLeft"


def test_client_rides_out_a_host_restart_without_duplicating_work(
    fresh_host: Host, room: str
) -> None:
    recorder = Recorder(hold=True)
    with fresh_host.manager(execute=recorder) as manager:
        manager.register(Redo, room=room)
        first = manager.submit(Redo(a=1), room, job_room=room)
        wait_until(lambda: fresh_host.task(first)["status"] == "running", what="first running")
        # The host dies while the task runs; the task finishes during the outage.
        fresh_host.kill()
        recorder.release.set()
        fresh_host.start()
        # The completion reaches the restarted host; the task ran once.
        wait_until(lambda: fresh_host.task(first)["status"] == "completed", 30, "first done")
        second = manager.submit(Redo(a=2), room, job_room=room)
        wait_until(lambda: fresh_host.task(second)["status"] == "completed", 30, "second done")
        assert recorder.started == [first, second]
        worker_id = manager.worker_id
        assert worker_id is not None
        assert fresh_host.job_workers(room, Redo.full_name(room)) == [worker_id]

        # The same worker resumed: it re-joined its room on the new connection.
        def types() -> list[str]:
            return [e["type"] for e in fresh_host.history(worker_id)]

        wait_until(lambda: types().count("RoomJoined") == 2, 30, "the room re-joined")
        assert "WorkerLost" not in types()
