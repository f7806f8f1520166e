"""Disconnect cleanup end to end: SIGKILL, graceful leave, blip within the grace window."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from workerledger.core import Emission, LeaveRoom

from .conftest import WAIT

JOB = "r1:modifiers:Rotate"


async def submit(api: Any, room: str = "r1", job: str = JOB) -> dict[str, Any]:
    response = await api.post(f"/rooms/{room}/tasks/{job}", json={"payload": {"n": 1}})
    assert response.status_code == 202, response.text
    return dict(response.json())


async def test_sigkill_releases_claimed_and_running_tasks_at_once(
    start_host, watchers, spawn_worker
):
    # Given a watcher of room r1, worker A holding one claimed and one running task,
    # and an idle worker B that serves whatever becomes available
    running = await start_host(disconnect_grace_seconds=0)
    api = running.api()
    watcher = await watchers(running.url, "r1")
    a = await spawn_worker(running.url, "r1", "Rotate")
    first, second = await submit(api), await submit(api)
    await a.send("claim")
    claimed_first = (await a.expect("claimed"))["task"]
    await a.send("claim")
    claimed_second = (await a.expect("claimed"))["task"]
    assert [claimed_first["id"], claimed_second["id"]] == [first["id"], second["id"]]
    await a.send("run", first["id"], claimed_first["attempt"])
    assert (await a.expect("running"))["status"] == 200
    b = await spawn_worker(running.url, "r1", "Rotate", "--serve")
    assert (await b.expect("claimed"))["task"] is None

    # When A is SIGKILLed
    await a.kill()

    # Then the watcher sees the running task fail and the claimed one go back to pending,
    failed = await watcher.next("task_status_event", id=first["id"], status="failed")
    assert failed["worker_id"] == a.worker_id
    requeued = await watcher.next("task_status_event", id=second["id"], status="pending", attempt=1)
    assert requeued["queue_position"] == 1
    # and B claims it (attempt 2) and finishes it
    reclaimed = await watcher.next(
        "task_status_event", id=second["id"], status="claimed", attempt=2
    )
    assert reclaimed["worker_id"] == b.worker_id
    await watcher.next("task_status_event", id=second["id"], status="completed")

    # and nothing stays claimed or running, A is gone and its sid is in no room
    tasks = (await api.get("/rooms/r1/tasks")).json()["items"]
    assert {t["id"]: t["status"] for t in tasks} == {
        first["id"]: "failed",
        second["id"]: "completed",
    }
    workers = (await api.get("/workers")).json()["items"]
    assert [w["id"] for w in workers] == [b.worker_id]
    job = (await api.get(f"/rooms/r1/jobs/{JOB}")).json()
    assert job["workers"] == [b.worker_id]
    assert running.rooms_of(a.sid) == []


async def test_graceful_leave_and_delete_removes_the_worker_without_any_timeout(
    start_host, spawn_worker
):
    # Given a worker with a heartbeat timeout and grace far in the future, and a
    # pending task that keeps its job listed
    running = await start_host(disconnect_grace_seconds=300, heartbeat_timeout_seconds=300)
    api = running.api()
    worker = await spawn_worker(running.url, "r1", "Rotate")
    await submit(api)
    assert set(running.rooms_of(worker.sid)) == {worker.sid, f"jobs:{JOB}"}

    # When it leaves its job room and deletes itself
    await worker.send("leave")
    left = await worker.expect("left")

    # Then both succeed, the worker is gone, its job shows no workers, its sid left the room
    assert (left["ack"], left["status"]) == ({"ok": True}, 204)
    assert (await api.get("/workers")).json()["items"] == []
    assert (await api.get("/rooms/r1/workers")).json()["items"] == []
    jobs = (await api.get("/rooms/r1/jobs")).json()["items"]
    assert [(j["full_name"], j["workers"]) for j in jobs] == [(JOB, [])]
    assert f"jobs:{JOB}" not in running.rooms_of(worker.sid)


class RecordingEmitter:
    def __init__(self) -> None:
        self.left: asyncio.Queue[LeaveRoom] = asyncio.Queue()

    async def deliver(self, emissions: list[Emission]) -> None:
        for emission in emissions:
            if isinstance(emission, LeaveRoom):
                await self.left.put(emission)


async def test_blip_within_grace_window_releases_nothing(start_host):
    # Given a worker (in-process client) holding a claimed task, grace 1 s
    recorder = RecordingEmitter()
    running = await start_host(disconnect_grace_seconds=1, emitters=[recorder])
    api = running.api()
    job = (await api.put("/rooms/r1/jobs", json={"category": "modifiers", "name": "Rotate"})).json()
    worker_id = job["worker_id"]
    task = await submit(api)
    claim = (await api.post("/tasks/claim", json={"worker_id": worker_id})).json()["task"]
    join = {"job_name": JOB, "worker_id": worker_id}
    first = socketio.AsyncClient(reconnection=False)
    await first.connect(running.url, auth={"token": "tok-alice"}, transports=["websocket"])
    assert await first.call("join_job_room", join, timeout=WAIT) == {"ok": True}
    old_sid = first.get_sid()

    # When the socket drops (the server records the disconnect) and a new one re-joins
    await first.disconnect()
    left = await asyncio.wait_for(recorder.left.get(), WAIT)
    assert left.sid == old_sid
    second = socketio.AsyncClient(reconnection=False)
    await second.connect(running.url, auth={"token": "tok-alice"}, transports=["websocket"])
    assert await second.call("join_job_room", join, timeout=WAIT) == {"ok": True}
    await running.host.sockets.idle()  # the grace timer fired: its sweep found the worker back

    # Then the task was never released and the worker goes on with the same attempt
    now = (await api.get(f"/tasks/{task['id']}")).json()
    assert (now["status"], now["worker_id"], now["attempt"]) == ("claimed", worker_id, 1)
    body = {"status": "running", "worker_id": worker_id, "attempt": claim["attempt"]}
    assert (await api.patch(f"/tasks/{task['id']}", json=body)).status_code == 200
    assert [w["id"] for w in (await api.get("/workers")).json()["items"]] == [worker_id]
    assert set(running.rooms_of(second.get_sid())) >= {f"jobs:{JOB}"}
    await second.disconnect()


async def test_one_connection_speaking_for_two_workers_releases_both(start_host, watchers):
    # Given one connection that joined for two workers of two jobs, each holding a task
    running = await start_host(disconnect_grace_seconds=0)
    api = running.api()
    watcher = await watchers(running.url, "r1")
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(running.url, auth={"token": "tok-alice"}, transports=["websocket"])
    held = []
    for name in ("Rotate", "Scale"):
        job = await api.put("/rooms/r1/jobs", json={"category": "modifiers", "name": name})
        worker_id, full_name = job.json()["worker_id"], job.json()["full_name"]
        join = {"job_name": full_name, "worker_id": worker_id}
        assert await client.call("join_job_room", join, timeout=WAIT) == {"ok": True}
        task = await submit(api, job=full_name)
        claim = await api.post("/tasks/claim", json={"worker_id": worker_id})
        assert claim.json()["task"]["id"] == task["id"]
        held.append(task["id"])

    # When the connection drops
    await client.disconnect()

    # Then both workers end and both tasks go back to pending
    for task_id in held:
        await watcher.next("task_status_event", id=task_id, status="pending", attempt=1)
    assert (await api.get("/workers")).json()["items"] == []
