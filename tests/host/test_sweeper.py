"""The sweeper: reaps silent REST-only workers, keeps this host's Socket.IO workers alive."""

from __future__ import annotations

import socketio

from .conftest import WAIT

JOB = "r1:modifiers:Rotate"


async def test_sweeper_reaps_a_silent_rest_worker_but_not_an_attached_one(start_host, watchers):
    # Given short settings, a Socket.IO-attached worker that never heartbeats over REST,
    # and then a REST-only worker holding a claimed task
    running = await start_host(heartbeat_timeout_seconds=1, sweep_interval_seconds=0.2)
    api = running.api()
    watcher = await watchers(running.url, "r1")
    body = {"category": "modifiers", "name": "Rotate"}
    attached = (await api.put("/rooms/r1/jobs", json=body)).json()["worker_id"]
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(running.url, auth={"token": "tok-alice"}, transports=["websocket"])
    join = {"job_name": JOB, "worker_id": attached}
    assert await client.call("join_job_room", join, timeout=WAIT) == {"ok": True}
    rest_only = (await api.put("/rooms/r1/jobs", json=body)).json()["worker_id"]
    task = (await api.post(f"/rooms/r1/tasks/{JOB}", json={})).json()
    claim = (await api.post("/tasks/claim", json={"worker_id": rest_only})).json()["task"]
    assert claim["id"] == task["id"]

    # When the REST-only worker stays silent past the heartbeat timeout
    requeued = await watcher.next("task_status_event", id=task["id"], status="pending", attempt=1)

    # Then the sweeper ended it and released its claim; the older, attached worker
    # (just as silent over REST) was kept alive by its host
    assert requeued["worker_id"] is None
    workers = (await api.get("/workers")).json()["items"]
    assert [w["id"] for w in workers] == [attached]
    assert (await api.patch(f"/workers/{rest_only}")).status_code == 404
    await client.disconnect()


async def test_sweep_once_is_a_no_op_when_everyone_is_alive(start_host):
    running = await start_host()
    api = running.api()
    await api.put("/rooms/r1/jobs", json={"category": "modifiers", "name": "Rotate"})
    assert await running.host.sweeper.sweep_once() == []
    assert (await api.get("/workers")).json()["total"] == 1
