"""The rest of zndraw-joblib 0.1.7's protocol on a real host: `@internal` jobs run by
the host's internal executor, the host's writable-room policy (423), and the wire
details 0.1.7 clients look for (a lost worker's task says "Worker disconnected",
malformed names and rooms are refused in 0.1.7's words, cancelling the last pending
task of a job without workers tells the room's watchers that the job is gone)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from workerledger.adapters.internal import InProcessExecutor
from workerledger.core import RoomLockedError, TaskState
from workerledger.host_fastapi.app import build_host

from workerledger import Actor

from .conftest import RunningHost, serve, settings

INTERNAL_JOB = "@internal:modifiers:Compute"
WAIT = 15.0


class LockedRooms:
    """A host's room policy: writes to `locked` rooms are refused; `secret` is unwatchable."""

    def __init__(self, *locked: str) -> None:
        self.locked = set(locked)

    async def check_writable(self, room_id: str, actor: Actor) -> None:
        if room_id in self.locked:
            raise RoomLockedError(f"room {room_id} is locked")

    async def may_watch(self, room_id: str, actor: Actor) -> bool:
        return True


class RefusingExecutor:
    def handles(self, job_name: str) -> bool:
        return True

    async def dispatch(self, task: TaskState, report: Any) -> None:
        raise ConnectionError("broker unreachable")


@pytest.fixture
async def host_with(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningHost]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(**options: Any) -> RunningHost:
            host = build_host(settings(tmp_path), **options)
            running = RunningHost(host, await stack.enter_async_context(serve(host.asgi)))

            async def close() -> None:
                for client in running.clients:
                    await client.aclose()

            stack.push_async_callback(close)
            return running

        yield start


async def register_internal(running: RunningHost) -> None:
    admin = running.api("tok-admin")
    put = await admin.put(
        "/rooms/@internal/jobs", json={"category": "modifiers", "name": "Compute"}
    )
    assert put.status_code == 201, put.text


async def wait_for_status(running: RunningHost, task_id: str, status: str) -> dict[str, Any]:
    api = running.api()
    async with asyncio.timeout(WAIT):
        while True:
            got = await api.get(f"/tasks/{task_id}", headers={"Prefer": "wait=5"})
            if got.json()["status"] == status:
                return dict(got.json())


async def test_internal_task_without_an_executor_is_refused_and_not_stored(host_with):
    running = await host_with()
    await register_internal(running)
    api = running.api()
    refused = await api.post(f"/rooms/lab/tasks/{INTERNAL_JOB}", json={"payload": {}})
    assert refused.status_code == 503
    assert refused.json()["type"] == "/v1/problems/internal-job-not-configured"
    assert INTERNAL_JOB in refused.json()["detail"]
    assert (await api.get("/rooms/lab/tasks")).json()["total"] == 0


async def test_internal_task_runs_on_the_executor_and_wakes_no_worker(host_with, watchers):
    ran: list[Mapping[str, Any]] = []

    async def compute(payload: Mapping[str, Any]) -> None:
        ran.append(payload)

    running = await host_with(internal_executor=InProcessExecutor({INTERNAL_JOB: compute}))
    await register_internal(running)
    watcher = await watchers(running.url, "lab")
    submitted = await running.api().post(
        f"/rooms/lab/tasks/{INTERNAL_JOB}", json={"payload": {"n": 3}}
    )
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["id"]
    assert submitted.json()["worker_id"] is None
    done = await wait_for_status(running, task_id, "completed")
    assert done["worker_id"] is None and ran == [{"n": 3}]
    await watcher.next("task_status_event", id=task_id, status="completed")
    assert not [name for name, _ in watcher.seen if name == "task_available"]
    history = (await running.api().get(f"/tasks/{task_id}/history")).json()
    assert [entry["type"] for entry in history["timeline"]] == [
        "TaskSubmitted", "TaskDispatched", "TaskStarted", "TaskCompleted",
    ]  # fmt: skip


async def test_a_failing_internal_handler_and_a_refused_dispatch_fail_the_task(host_with):
    async def broken(payload: Mapping[str, Any]) -> None:
        raise ValueError("bad input")

    running = await host_with(internal_executor=InProcessExecutor({INTERNAL_JOB: broken}))
    await register_internal(running)
    task = (await running.api().post(f"/rooms/lab/tasks/{INTERNAL_JOB}", json={})).json()
    failed = await wait_for_status(running, task["id"], "failed")
    assert failed["error"] == "ValueError: bad input"

    refusing = await host_with(internal_executor=RefusingExecutor())
    await register_internal(refusing)
    answer = await refusing.api().post(f"/rooms/lab/tasks/{INTERNAL_JOB}", json={})
    assert answer.status_code == 202
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"].startswith("Failed to dispatch to internal executor")


async def test_a_locked_room_refuses_registration_and_submit_with_423(host_with):
    running = await host_with(room_policy=LockedRooms("frozen"))
    api = running.api()
    job = {"category": "modifiers", "name": "Rotate"}
    locked = await api.put("/rooms/frozen/jobs", json=job)
    assert locked.status_code == 423
    assert locked.json()["type"] == "/v1/problems/room-locked"
    registered = await api.put("/rooms/lab/jobs", json=job)
    assert registered.status_code == 201
    refused = await api.post("/rooms/frozen/tasks/lab:modifiers:Rotate", json={})
    assert refused.status_code == 423
    assert (await api.get("/rooms/frozen/tasks")).json()["total"] == 0
    assert (await api.post("/rooms/lab/tasks/lab:modifiers:Rotate", json={})).status_code == 202


async def test_wire_details_match_0_1_7(host_with, watchers):
    running = await host_with()
    api = running.api()
    bad_room = await api.get("/rooms/a@b/jobs")
    assert "Room ID 'a@b' contains invalid characters (@ or :)" in bad_room.json()["detail"]
    bad_name = await api.get("/rooms/lab/jobs/nocolons")
    assert bad_name.status_code == 404
    assert "Invalid job name format" in bad_name.json()["detail"]

    worker = (await api.put("/rooms/lab/jobs", json={"category": "modifiers", "name": "R"})).json()
    task = (await api.post("/rooms/lab/tasks/lab:modifiers:R", json={})).json()
    assert (await api.delete(f"/workers/{worker['worker_id']}")).status_code == 204
    watcher = await watchers(running.url, "lab")
    cancel = await api.patch(f"/tasks/{task['id']}", json={"status": "cancelled"})
    assert cancel.status_code == 200, cancel.text
    await watcher.next("jobs_invalidate")
    assert (await api.get("/rooms/lab/jobs")).json()["total"] == 0


async def test_a_running_task_failed_by_its_workers_end_says_worker_disconnected(host_with):
    running = await host_with()
    api = running.api()
    worker = (await api.put("/rooms/lab/jobs", json={"category": "modifiers", "name": "R"})).json()
    task = (await api.post("/rooms/lab/tasks/lab:modifiers:R", json={})).json()
    claim = await api.post("/tasks/claim", json={"worker_id": worker["worker_id"]})
    assert claim.json()["task"]["id"] == task["id"]
    assert (await api.patch(f"/tasks/{task['id']}", json={"status": "running"})).status_code == 200
    assert (await api.delete(f"/workers/{worker['worker_id']}")).status_code == 204
    failed = (await api.get(f"/tasks/{task['id']}")).json()
    assert failed["status"] == "failed"
    assert failed["error"].startswith("Worker disconnected")
